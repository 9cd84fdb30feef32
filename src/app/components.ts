// The service's components, in the order they start (and, reversed, stop):
// telemetry, listeners, database, API keys, JWT keys, change feed, engine,
// rate-limit store, housekeeping, serving. Each is a small adapter from a
// part (src/app/parts.ts) to the Component interface.

import { JwtVerifier } from "../auth/jwt.js";
import { deriveHealth, ServingStatus } from "../rpc/health.js";
import { listenGrpc } from "../rpc/grpc-server.js";
import { listenHttp } from "../rpc/http-server.js";
import { expirePendingTransfers } from "../store/ownership.js";
import { pruneHistory } from "../store/retention.js";
import { type Component, component } from "./lifecycle.js";
import type { Parts } from "./parts.js";

/** How often health is re-derived from the data path (staleness grows with time, not with events). */
const HEALTH_TICK_MS = 100;

/** Traces and the decision log: flushed last on the way down. */
export function telemetryComponent(p: Parts): Component {
  const log = p.logger.child({ module: "main" });
  return component(
    "telemetry",
    () => {
      if (p.tracing.enabled) log.info({ otlp: p.config.otlpTracesEndpoint }, "tracing: OTLP export on");
      if (p.decisionLog.enabled) log.info({ destination: p.config.decisionLog, sample: p.config.decisionLogSample }, "decision log on");
    },
    async () => {
      await p.tracing.shutdown().catch((err: unknown) => log.warn({ err }, "flushing traces failed"));
      await p.decisionLog.flush().catch(() => {});
    },
  );
}

/** Both listeners: bound first (health answers NOT_SERVING while the rest starts), closed last. */
export function listenersComponent(p: Parts): Component & { readonly ports: { grpcPort: number; httpPort: number } | undefined } {
  const log = p.logger.child({ module: "main" });
  let ports: { grpcPort: number; httpPort: number } | undefined;
  return {
    name: "listeners",
    get ports() {
      return ports;
    },
    async start() {
      const [grpcPort, httpPort] = await Promise.all([
        listenGrpc(p.grpcServer, p.config.host, p.config.grpcPort, p.tls),
        listenHttp(p.http, p.config.host, p.config.httpPort),
      ]);
      ports = { grpcPort, httpPort };
      const tls = p.tls ? (p.tls.clientCa ? "mutual" : "server") : "off";
      log.info({ grpcPort, httpPort, host: p.config.host, tls }, "listening (NOT_SERVING until the store is ready)");
    },
    async stop() {
      // The serving component drained the calls; what is left is closed.
      const graceful = Promise.all([new Promise<void>((resolve) => p.grpcServer.tryShutdown(() => resolve())), p.http.close()]);
      const late = new Promise<"late">((r) => setTimeout(() => r("late"), 1000).unref());
      if ((await Promise.race([graceful, late])) === "late") p.grpcServer.forceShutdown();
    },
  };
}

/** API keys: the file at once; the table loads in the background with retries (health waits for it). */
export function apiKeysComponent(p: Parts): Component {
  return component(
    "api keys",
    async () => {
      await p.keys.start();
      p.keys.attach(p.db);
    },
    () => p.keys.stop(),
  );
}

/** The JWT verifier, when a JWKS is configured. */
export function jwtComponent(p: Parts): Component {
  const c = p.config.jwt;
  return component("jwt", async () => {
    if (!c.jwksUrl && !c.jwksFile) return;
    p.jwt.verifier = await JwtVerifier.create({
      ...(c.jwksUrl ? { jwksUrl: c.jwksUrl } : {}),
      ...(c.jwksFile ? { jwksFile: c.jwksFile } : {}),
      ...(c.issuer ? { issuer: c.issuer } : {}),
      ...(c.audience ? { audience: c.audience } : {}),
      scopeClaim: c.scopeClaim,
      tenantClaim: c.tenantClaim,
    });
  });
}

/** The rate-limit counter store connects on its own; closed on the way down. */
export function rateLimitComponent(p: Parts): Component {
  return component(
    "rate-limit store",
    () => {},
    () => p.rateLimit.close(),
  );
}

/** Expiry of pending transfers, and history retention about every tenth tick. */
export function housekeepingComponent(p: Parts): Component {
  const log = p.logger.child({ module: "housekeeping" });
  const c = p.config;
  let timer: NodeJS.Timeout | undefined;
  const tick = (n: number) => {
    expirePendingTransfers(p.db).then(
      (expired) => expired > 0 && log.info({ expired }, "pending ownership transfers expired"),
      (err: unknown) => log.warn({ err }, "ownership transfer expiry sweep failed"),
    );
    if (n % 10 !== 0) return;
    pruneHistory(p.db, { changeLogHours: c.changeLogRetentionHours, idempotencyHours: c.idempotencyRetentionHours }).then(
      (pruned) => (pruned.changes > 0 || pruned.idempotency > 0) && log.info(pruned, "old change-log rows and idempotency records deleted"),
      (err: unknown) => log.warn({ err }, "history retention sweep failed"),
    );
  };
  return component(
    "housekeeping",
    () => {
      let n = 0;
      timer = setInterval(() => tick(n++), c.transferSweepMs);
      timer.unref();
    },
    () => clearInterval(timer),
  );
}

/**
 * Serving: health re-derived from the data path every tick (and when the
 * database's reachability changes); on the way down NOT_SERVING at once,
 * new calls refused, the calls in progress drained.
 */
export function servingComponent(p: Parts, stopping: () => boolean): Component {
  const log = p.logger.child({ module: "main" });
  let started = false;
  let ticker: NodeJS.Timeout | undefined;
  const signals = {
    started: () => started && !stopping(),
    databaseReachable: () => p.db.reachable,
    stalenessMs: () => p.live.stalenessMs(),
    maxStalenessMs: p.config.maxStalenessMs,
    credentialsLoaded: () => !p.config.authRequired || p.keys.loaded,
  };
  const update = (): void => {
    const changed = p.health.apply(
      deriveHealth(
        p.health.entries().map(([name]) => name),
        signals,
      ),
    );
    if (changed.length === 0) return;
    const statusOf = (name: string) => ServingStatus[p.health.get(name) ?? ServingStatus.SERVICE_UNKNOWN];
    const detail = { databaseReachable: p.db.reachable, stalenessMs: p.live.stalenessMs(), apiKeysLoaded: p.keys.loaded };
    log.warn({ changed: Object.fromEntries(changed.map((name) => [name || "(server)", statusOf(name)])), ...detail }, `health: ${statusOf("")}`);
  };
  return component(
    "serving",
    async () => {
      log.info({ revision: p.live.revision.toString() }, "following the change log");
      if (p.config.authRequired && !p.keys.loaded) {
        log.info("waiting for the API keys to load before turning SERVING");
        await p.keys.whenLoaded();
      }
      p.db.onReachability(() => update());
      started = true;
      ticker = setInterval(update, HEALTH_TICK_MS);
      ticker.unref();
      update();
      log.info({ serving: p.health.serving }, p.health.serving ? "SERVING" : "started; NOT_SERVING until every signal is healthy");
    },
    async () => {
      clearInterval(ticker);
      p.health.setAll(ServingStatus.NOT_SERVING);
      log.info({ inFlight: p.admission.inFlight }, "shutting down: NOT_SERVING, draining calls");
      await p.admission.drain(Math.max(100, p.config.shutdownTimeoutMs - 2000));
    },
  );
}
