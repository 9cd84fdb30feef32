import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { pathToFileURL } from "node:url";
import type * as grpc from "@grpc/grpc-js";
import { type Config, ConfigError, loadConfig, redactUrl } from "./config.js";
import { unavailable } from "./errors.js";
import { createLogger, type Logger } from "./logger.js";
import { Metrics } from "./metrics.js";
import { NO_TRACING, startTracing } from "./tracing.js";
import { projectPath } from "./paths.js";
import { createCallLog } from "./rpc/call-log.js";
import { createAuthenticator } from "./auth/authenticator.js";
import { JwtVerifier } from "./auth/jwt.js";
import { KeySource } from "./auth/key-source.js";
import { createDecisionLog, DISABLED_DECISION_LOG } from "./decision-log.js";
import { callerFromCertificate, loadMtlsIdentities } from "./auth/mtls.js";
import { createGrpcServer, listenGrpc, type PeerIdentity, type TlsFiles } from "./rpc/grpc-server.js";
import { createAdmission, guard } from "./rpc/guard.js";
import { addReflection } from "./rpc/reflection.js";
import { deriveHealth, HealthState, ServingStatus } from "./rpc/health.js";
import { createHttpListener, type HttpListener, listenHttp } from "./rpc/http-server.js";
import { createBindings, SERVED_SERVICES } from "./rpc/services.js";
import type { DecisionEvent } from "./rpc/permission-handlers.js";
import { authzenRoutes } from "./rpc/authzen.js";
import { loadMeshConfig } from "./mesh/config.js";
import { type ChangeFeed, startChangeFeed } from "./store/change-feed.js";
import { importDocument } from "./store/import.js";
import { type LiveEngine, startLiveEngine } from "./store/live-engine.js";
import { expirePendingTransfers } from "./store/ownership.js";
import { pruneHistory } from "./store/retention.js";
import { createRateLimitService } from "./rpc/rate-limit-handlers.js";
import { migrate } from "./store/migrate.js";
import { checkPostgresDriver } from "./store/driver-check.js";
import { openDatabase } from "./store/open.js";
import type { SqlClient } from "./store/sql.js";

const VERSION: string = (JSON.parse(readFileSync(projectPath("package.json"), "utf8")) as { version: string }).version;

/** How often health is re-derived from the data path (staleness grows with time, not with events). */
const HEALTH_TICK_MS = 100;

function notReady(): never {
  throw unavailable("authz is starting: the store is not loaded yet; retry shortly");
}

export interface App {
  readonly config: Config;
  readonly metrics: Metrics;
  readonly health: HealthState;
  /** Listens on both ports; resolves with the bound ports once listening (health may still be NOT_SERVING). */
  listen(): Promise<{ grpcPort: number; httpPort: number }>;
  /** Resolves once the database is reachable, migrated and followed: health turns SERVING. */
  readonly ready: Promise<void>;
  /** The database, once ready. */
  db(): SqlClient;
  feed(): ChangeFeed;
  /** The live decision engine, once ready. */
  live(): LiveEngine;
  /** Graceful shutdown, bounded by AUTHZ_SHUTDOWN_TIMEOUT_MS. */
  stop(): Promise<void>;
}

/** Builds the service from its configuration; nothing listens until listen(). */
export function createApp(config: Config, logger: Logger = createLogger(config.logLevel)): App {
  const log = logger.child({ module: "main" });
  const health = new HealthState(SERVED_SERVICES);
  const metrics = new Metrics();
  const tracing = config.otlpTracesEndpoint ? startTracing(config.otlpTracesEndpoint, VERSION) : NO_TRACING;
  const callLog = createCallLog(logger.child({ module: "rpc" }), metrics, tracing);
  let db: SqlClient | undefined;
  let feed: ChangeFeed | undefined;
  let live: LiveEngine | undefined;
  const rateLimit = createRateLimitService(
    config,
    logger.child({ module: "ratelimit" }),
    () => live ?? notReady(),
    () => db ?? notReady(),
    {
      onDecision: (source) => metrics.rateLimitSource(source),
    },
  );
  const keys = new KeySource(config.apiKeysFile, logger.child({ module: "auth" }));
  let jwt: JwtVerifier | undefined;
  const authenticator = createAuthenticator({ required: config.authRequired, keys: keys.ring, jwt: () => jwt });
  const decisionLog =
    config.decisionLog === "off" ? DISABLED_DECISION_LOG : createDecisionLog({ destination: config.decisionLog, sampleRate: config.decisionLogSample });
  const mesh = loadMeshConfig(config.meshConfigFile);
  const onDecision = (e: DecisionEvent) => {
    metrics.decision(e.method, e.decision.allowed);
    if (decisionLog.enabled) {
      decisionLog.record({
        callId: e.ctx.requestId,
        caller: e.ctx.caller?.id ?? "anonymous",
        method: e.method,
        subject: e.subject,
        permission: e.permission,
        resource: e.resource,
        allowed: e.decision.allowed,
        reason: e.decision.reason,
        revision: e.revision.toString(),
      });
    }
  };
  // One count of calls in progress for every entry point (RPCs and AuthZEN).
  const admission = createAdmission(config.maxConcurrentCalls);
  const bindings = guard(
    createBindings(health, {
      onDecision,
      mesh,
      rateLimitStore: rateLimit.store,
      onRateLimitDecision: (source) => metrics.rateLimitSource(source),
      logger: logger.child({ module: "mesh" }),
      maxWaitMs: config.maxWaitMs,
      rateLimit: rateLimit.handlers,
      transferTtlMs: config.transferTtlSeconds * 1000,
      live: () => live ?? notReady(),
      db: () => db ?? notReady(),
    }),
    authenticator,
    admission,
  );
  const tls: TlsFiles | undefined = config.tls
    ? {
        cert: readFileSync(config.tls.certFile),
        key: readFileSync(config.tls.keyFile),
        clientCa: config.tls.clientCaFile ? readFileSync(config.tls.clientCaFile) : undefined,
      }
    : undefined;
  const identities = config.mtlsIdentitiesFile ? loadMtlsIdentities(config.mtlsIdentitiesFile) : undefined;
  const peerIdentity: PeerIdentity | undefined = identities ? (cert) => callerFromCertificate(cert, identities) : undefined;
  const grpcServer: grpc.Server = createGrpcServer(bindings, {
    logger,
    callLog,
    maxMessageBytes: config.maxMessageBytes,
    ...(peerIdentity ? { peerIdentity } : {}),
  });
  addReflection(grpcServer);
  const http: HttpListener = createHttpListener(bindings, {
    logger,
    callLog,
    isReady: () => health.serving,
    maxMessageBytes: config.maxMessageBytes,
    tls,
    peerIdentity,
    extraRoutes: authzenRoutes({
      live: () => live ?? notReady(),
      authenticator,
      callLog,
      logger: logger.child({ module: "authzen" }),
      onDecision,
      baseUrl: config.authzenBaseUrl,
      maxBodyBytes: config.maxMessageBytes,
      maxWaitMs: config.maxWaitMs,
      peerIdentity,
      admission,
    }),
    metrics: { contentType: metrics.registry.contentType, text: () => metrics.registry.metrics() },
  });
  metrics.attach({
    engineRevision: () => live?.revision,
    databaseRevision: () => feed?.revision,
    listener: () => feed?.stats,
    listening: () => feed?.listening,
    engine: () => live?.stats,
    engineStalenessMs: () => live?.stalenessMs(),
    maxStalenessMs: () => config.maxStalenessMs,
    databaseReachable: () => db?.reachable,
    apiKeysLoaded: () => (config.authRequired ? keys.loaded : undefined),
    serving: () => health.serving,
    rateLimitStore: () => rateLimit.redisState(),
  });
  let stopping = false;
  let started = false;
  let healthTicker: NodeJS.Timeout | undefined;
  /** Re-derives every service's status from the data path (database, engine staleness, credentials); logs each change. */
  const updateHealth = (): void => {
    const next = deriveHealth(
      health.entries().map(([name]) => name),
      {
        started: () => started && !stopping,
        databaseReachable: () => db?.reachable ?? false,
        stalenessMs: () => live?.stalenessMs() ?? Number.POSITIVE_INFINITY,
        maxStalenessMs: config.maxStalenessMs,
        credentialsLoaded: () => !config.authRequired || keys.loaded,
      },
    );
    const changed = health.apply(next);
    if (changed.length === 0) return;
    const statusOf = (name: string) => ServingStatus[health.get(name) ?? ServingStatus.SERVICE_UNKNOWN];
    log.warn(
      {
        changed: Object.fromEntries(changed.map((name) => [name || "(server)", statusOf(name)])),
        databaseReachable: db?.reachable ?? false,
        stalenessMs: live?.stalenessMs(),
        apiKeysLoaded: keys.loaded,
      },
      `health: ${statusOf("")}`,
    );
  };
  let sweeper: NodeJS.Timeout | undefined;
  let resolveReady: () => void = () => {};
  let rejectReady: (e: unknown) => void = () => {};
  const ready = new Promise<void>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  ready.catch(() => {});

  const describeBackends = () => {
    for (const w of config.warnings) log.warn(w);
    for (const w of mesh.warnings) log.warn(w);
    if (config.databaseUrl) log.info({ database: redactUrl(config.databaseUrl) }, "database: PostgreSQL");
    else log.warn("database: EMBEDDED in-process PGlite, in memory; data is lost on exit. For development only: set DATABASE_URL for production");
    if (config.redisUrl) log.info({ redis: redactUrl(config.redisUrl) }, "rate limits: Redis");
    else log.warn("rate limits: IN-PROCESS store, per replica and lost on exit. For development only: set REDIS_URL for production");
    if (config.authRequired) {
      log.info(
        { apiKeysFile: config.apiKeysFile !== undefined, apiKeysTable: true, jwt: Boolean(config.jwt.jwksUrl ?? config.jwt.jwksFile) },
        "authentication: required for every RPC but health",
      );
    } else {
      log.warn("authentication: OFF. Every caller is trusted with every scope. For development only: set AUTHZ_AUTH=on (the default with DATABASE_URL)");
    }
    if (tracing.enabled) log.info({ otlp: config.otlpTracesEndpoint }, "tracing: OTLP export on");
    if (decisionLog.enabled) log.info({ destination: config.decisionLog, sample: config.decisionLogSample }, "decision log on");
  };

  const bringUp = async (): Promise<void> => {
    await keys.start();
    if (config.jwt.jwksUrl || config.jwt.jwksFile) {
      jwt = await JwtVerifier.create({
        ...(config.jwt.jwksUrl ? { jwksUrl: config.jwt.jwksUrl } : {}),
        ...(config.jwt.jwksFile ? { jwksFile: config.jwt.jwksFile } : {}),
        ...(config.jwt.issuer ? { issuer: config.jwt.issuer } : {}),
        ...(config.jwt.audience ? { audience: config.jwt.audience } : {}),
        scopeClaim: config.jwt.scopeClaim,
        tenantClaim: config.jwt.tenantClaim,
      });
    }
    if (config.databaseUrl) {
      const driver = checkPostgresDriver();
      if (!driver.patched) {
        throw new Error(
          `postgres.js at ${driver.file} lacks the patch in patches/ (a terminated backend could crash the process); ` +
            "install with npm ci (its postinstall runs patch-package), or run npx patch-package",
        );
      }
    }
    let attempt = 0;
    for (;;) {
      try {
        db = await openDatabase(config, logger.child({ module: "store" }));
        break;
      } catch (err) {
        if (!config.databaseUrl || stopping) throw err;
        attempt++;
        const wait = Math.min(10_000, 250 * 2 ** Math.min(attempt, 6));
        log.warn({ err: (err as Error).message, attempt, retryInMs: wait }, "database unreachable; retrying");
        await new Promise((r) => setTimeout(r, wait).unref());
        if (stopping) throw new Error("stopped while waiting for the database");
      }
    }
    if (config.migrate || !config.databaseUrl) {
      const m = await migrate(db);
      log.info({ applied: m.applied, version: m.current }, m.applied.length ? "migrations applied" : "schema up to date");
      if (m.newer.length) log.warn({ newer: m.newer }, "the database has migrations this build does not know (a newer version ran)");
    }
    if (!config.databaseUrl && config.embeddedImportFile) {
      const file = isAbsolute(config.embeddedImportFile) ? config.embeddedImportFile : projectPath(config.embeddedImportFile);
      const summary = await importDocument(db, JSON.parse(await readFile(file, "utf8")));
      log.info({ file: config.embeddedImportFile, revision: summary.revisionAfter }, "embedded database loaded with demo data");
    }
    // Keys load in the background with retries: health stays NOT_SERVING until they are loaded.
    keys.attach(db);
    feed = await startChangeFeed(db, logger.child({ module: "change-feed" }), config.revisionPollMs);
    live = await startLiveEngine(db, feed, logger.child({ module: "engine" }), { maxStalenessMs: config.maxStalenessMs });
    db.onReachability(() => updateHealth());
    const sweepDb = db;
    let sweeps = 0;
    sweeper = setInterval(() => {
      expirePendingTransfers(sweepDb).then(
        (n) => n > 0 && log.info({ expired: n }, "pending ownership transfers expired"),
        (err: unknown) => log.warn({ err }, "ownership transfer expiry sweep failed"),
      );
      // History retention, about every ten sweeps (every ten minutes by default).
      if (sweeps++ % 10 === 0) {
        pruneHistory(sweepDb, { changeLogHours: config.changeLogRetentionHours, idempotencyHours: config.idempotencyRetentionHours }).then(
          (n) => (n.changes > 0 || n.idempotency > 0) && log.info(n, "old change-log rows and idempotency records deleted"),
          (err: unknown) => log.warn({ err }, "history retention sweep failed"),
        );
      }
    }, config.transferSweepMs);
    sweeper.unref();
    log.info({ revision: live.revision.toString() }, "following the change log");
    if (config.authRequired && !keys.loaded) {
      log.info("waiting for the API keys to load before turning SERVING");
      await keys.whenLoaded();
    }
  };

  return {
    config,
    metrics,
    health,
    ready,
    async listen() {
      describeBackends();
      const [grpcPort, httpPort] = await Promise.all([
        listenGrpc(grpcServer, config.host, config.grpcPort, tls),
        listenHttp(http, config.host, config.httpPort),
      ]);
      log.info(
        { grpcPort, httpPort, host: config.host, tls: tls ? (tls.clientCa ? "mutual" : "server") : "off" },
        "listening (NOT_SERVING until the store is ready)",
      );
      bringUp().then(
        () => {
          if (stopping) return;
          started = true;
          healthTicker = setInterval(updateHealth, HEALTH_TICK_MS);
          healthTicker.unref();
          updateHealth();
          log.info({ serving: health.serving }, health.serving ? "SERVING" : "started; NOT_SERVING until every signal is healthy");
          resolveReady();
        },
        (err) => {
          log.error({ err }, "start-up failed");
          rejectReady(err);
        },
      );
      return { grpcPort, httpPort };
    },
    db() {
      if (!db) throw new Error("database not ready");
      return db;
    },
    feed() {
      if (!feed) throw new Error("change feed not ready");
      return feed;
    },
    live() {
      if (!live) throw new Error("engine not ready");
      return live;
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      clearInterval(healthTicker);
      health.setAll(ServingStatus.NOT_SERVING);
      log.info("shutting down: NOT_SERVING, draining calls");
      const bound = config.shutdownTimeoutMs;
      const drain = Promise.all([new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve())), http.close()]);
      const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), Math.max(100, bound - 1000)).unref());
      if ((await Promise.race([drain, timer])) === "timeout") {
        log.warn({ boundMs: bound }, "calls still running at the shutdown bound; closing them");
        grpcServer.forceShutdown();
      }
      clearInterval(sweeper);
      await keys.stop();
      await tracing.shutdown().catch((err: unknown) => log.warn({ err }, "flushing traces failed"));
      await decisionLog.flush().catch(() => {});
      live?.stop();
      await rateLimit.close().catch((err: unknown) => log.warn({ err }, "closing the rate-limit store failed"));
      await feed?.stop();
      await db?.close().catch((err: unknown) => log.warn({ err }, "closing the database failed"));
      log.info("stopped");
    },
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
