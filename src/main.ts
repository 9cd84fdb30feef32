import { pathToFileURL } from "node:url";
import {
  apiKeysComponent,
  housekeepingComponent,
  jwtComponent,
  listenersComponent,
  rateLimitComponent,
  servingComponent,
  telemetryComponent,
} from "./app/components.js";
import { Lifecycle } from "./app/lifecycle.js";
import { buildParts, type Parts } from "./app/parts.js";
import { type Config, ConfigError, loadConfig, redactUrl } from "./config.js";
import { createLogger, type Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import type { HealthState } from "./rpc/health.js";
import type { LeanStats } from "./rpc/grpc-lean.js";
import { leanStats } from "./rpc/grpc-server.js";
import type { ChangeFeed } from "./store/change-feed.js";
import type { LiveEngine } from "./store/live-engine.js";
import type { SqlClient } from "./store/sql.js";

export interface App {
  readonly config: Config;
  readonly metrics: Metrics;
  readonly health: HealthState;
  /** Listens on both ports; resolves with the bound ports once listening (health may still be NOT_SERVING). */
  listen(): Promise<{ grpcPort: number; httpPort: number }>;
  /** Resolves once every component has started: the database reachable, migrated and followed. */
  readonly ready: Promise<void>;
  db(): SqlClient;
  feed(): ChangeFeed;
  live(): LiveEngine;
  /** Graceful shutdown: every component stopped in reverse order, bounded by AUTHZ_SHUTDOWN_TIMEOUT_MS. */
  stop(): Promise<void>;
  /** What the lean gRPC path has served (AUTHZ_GRPC_LEAN); undefined when it is off. */
  grpcLean(): LeanStats | undefined;
}

/** The start-up lines that say which backends and protections this process runs with. */
function describeBackends(p: Parts, log: Logger): void {
  const c = p.config;
  for (const w of [...c.warnings, ...p.mesh.warnings]) log.warn(w);
  if (c.databaseUrl) log.info({ database: redactUrl(c.databaseUrl) }, "database: PostgreSQL");
  else log.warn("database: EMBEDDED in-process PGlite, in memory; data is lost on exit. For development only: set DATABASE_URL for production");
  if (c.redisUrl) log.info({ redis: redactUrl(c.redisUrl) }, "rate limits: Redis");
  else log.warn("rate limits: IN-PROCESS store, per replica and lost on exit. For development only: set REDIS_URL for production");
  describeHost(c, log);
  if (c.authRequired) {
    const sources = { apiKeysFile: c.apiKeysFile !== undefined, apiKeysTable: true, jwt: Boolean(c.jwt.jwksUrl ?? c.jwt.jwksFile) };
    log.info(sources, "authentication: required for every RPC but health");
  } else {
    log.warn("authentication: OFF. Every caller is trusted with every scope. For development only: set AUTHZ_AUTH=on (the default with DATABASE_URL)");
  }
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Which network the listeners face: loopback only (the embedded default), or every interface. */
function describeHost(c: Config, log: Logger): void {
  if (LOOPBACK.test(c.host)) {
    log.info({ host: c.host }, `listening on ${c.host} (loopback) only: other machines cannot connect; set AUTHZ_HOST=0.0.0.0 to change that`);
  } else if (!c.authRequired) {
    log.warn({ host: c.host }, `listening on ${c.host} with authentication OFF: anyone who reaches this address may call every RPC, the admin ones included`);
  } else {
    log.info({ host: c.host }, `listening on ${c.host}`);
  }
}

/** Builds the service from its configuration; nothing listens until listen(). */
export function createApp(config: Config, logger: Logger = createLogger(config.logLevel)): App {
  const log = logger.child({ module: "main" });
  const p = buildParts(config, logger);
  const listeners = listenersComponent(p);
  const lifecycle: Lifecycle = new Lifecycle(
    [
      telemetryComponent(p),
      listeners,
      p.db,
      apiKeysComponent(p),
      jwtComponent(p),
      p.feed,
      p.live,
      rateLimitComponent(p),
      housekeepingComponent(p),
      servingComponent(p, () => lifecycle.stopping),
    ],
    log,
  );
  p.metrics.attach(metricSources(p));
  let resolveReady: () => void = () => {};
  let rejectReady: (err: unknown) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {});
  return {
    config,
    metrics: p.metrics,
    health: p.health,
    ready,
    async listen() {
      describeBackends(p, log);
      await lifecycle.start(2); // telemetry and the listeners: health answers while the rest starts
      lifecycle.start().then(resolveReady, (err: unknown) => {
        log.error({ err }, "start-up failed");
        rejectReady(err);
      });
      return listeners.ports as { grpcPort: number; httpPort: number };
    },
    db: () => p.db,
    feed: () => p.feed,
    live: () => p.live,
    grpcLean: () => leanStats(p.grpcServer),
    async stop() {
      if (lifecycle.stopping) return;
      await lifecycle.stop(config.shutdownTimeoutMs - 500);
      log.info("stopped");
    },
  };
}

function metricSources(p: Parts): Parameters<Metrics["attach"]>[0] {
  return {
    engineRevision: () => p.live.revision,
    databaseRevision: () => p.feed.revision,
    listener: () => p.feed.stats,
    listening: () => p.feed.listening,
    engine: () => p.live.stats,
    engineStalenessMs: () => p.live.stalenessMs(),
    maxStalenessMs: () => p.config.maxStalenessMs,
    databaseReachable: () => p.db.reachable,
    apiKeysLoaded: () => (p.config.authRequired ? p.keys.loaded : undefined),
    serving: () => p.health.serving,
    rateLimitStore: () => p.rateLimit.redisState(),
  };
}

/** Runs the server until SIGTERM/SIGINT. */
export async function runServer(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`authz: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  let app: App;
  try {
    app = createApp(config, logger);
  } catch (err) {
    // Files named by the configuration (mesh mapping, TLS, identities) are read here.
    process.stderr.write(`authz: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const shutdown = (signal: string) => {
    logger.info({ signal }, "signal received");
    const hard = setTimeout(() => {
      logger.error("shutdown bound exceeded; exiting");
      process.exit(1);
    }, config.shutdownTimeoutMs);
    hard.unref();
    void app.stop().then(() => process.exit(0));
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
  await app.listen();
  app.ready.catch(() => {
    logger.fatal("could not start; exiting");
    process.exit(1);
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void runServer();
}
