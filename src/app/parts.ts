// The parts of the service, built from the configuration without any I/O:
// every part exists from the start (the database, the change feed and the
// engine answer UNAVAILABLE until their component has started), so each is
// handed to the parts that use it as a plain object.

import { readFileSync } from "node:fs";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type * as grpc from "@grpc/grpc-js";
import { createAuthenticator, type Authenticator } from "../auth/authenticator.js";
import type { JwtVerifier } from "../auth/jwt.js";
import { KeySource } from "../auth/key-source.js";
import { callerFromCertificate, loadMtlsIdentities } from "../auth/mtls.js";
import type { Config } from "../config.js";
import { consoleRoutes } from "../console/serve.js";
import { createDecisionLog, type DecisionLog, DISABLED_DECISION_LOG } from "../decision-log.js";
import type { Logger } from "../logger.js";
import { loadMeshConfig, type MeshConfig } from "../mesh/config.js";
import { Metrics } from "../metrics.js";
import { projectPath } from "../paths.js";
import { authzenRoutes } from "../rpc/authzen.js";
import { type CallLog, createCallLog } from "../rpc/call-log.js";
import { createGrpcServer, type PeerIdentity, type TlsFiles } from "../rpc/grpc-server.js";
import { type Admission, createAdmission, guard } from "../rpc/guard.js";
import { HealthState } from "../rpc/health.js";
import { createHttpListener, type HttpListener } from "../rpc/http-server.js";
import type { ServiceBinding } from "../rpc/handler-types.js";
import type { DecisionEvent } from "../rpc/permission-handlers.js";
import { createRateLimitService, type RateLimitServing } from "../rpc/rate-limit-handlers.js";
import { addReflection } from "../rpc/reflection.js";
import { createBindings, SERVED_SERVICES } from "../rpc/services.js";
import { ChangeFeedFollower } from "../store/change-feed.js";
import { createDatabase, type Database } from "../store/database.js";
import { LiveEngineFollower } from "../store/live-engine.js";
import { NO_TRACING, startTracing, type Tracing } from "../tracing.js";

const VERSION: string = (JSON.parse(readFileSync(projectPath("package.json"), "utf8")) as { version: string }).version;

export interface Parts {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly health: HealthState;
  readonly tracing: Tracing;
  readonly decisionLog: DecisionLog;
  readonly mesh: MeshConfig;
  readonly db: Database;
  readonly feed: ChangeFeedFollower;
  readonly live: LiveEngineFollower;
  readonly keys: KeySource;
  /** The JWT verifier, once its component has loaded the key set. */
  readonly jwt: { verifier: JwtVerifier | undefined };
  readonly authenticator: Authenticator;
  readonly admission: Admission;
  readonly rateLimit: RateLimitServing;
  readonly grpcServer: grpc.Server;
  readonly http: HttpListener;
  readonly tls: TlsFiles | undefined;
}

function readTls(config: Config): TlsFiles | undefined {
  if (!config.tls) return undefined;
  return {
    cert: readFileSync(config.tls.certFile),
    key: readFileSync(config.tls.keyFile),
    clientCa: config.tls.clientCaFile ? readFileSync(config.tls.clientCaFile) : undefined,
  };
}

function peerIdentityOf(config: Config): PeerIdentity | undefined {
  const identities = config.mtlsIdentitiesFile ? loadMtlsIdentities(config.mtlsIdentitiesFile) : undefined;
  return identities ? (cert) => callerFromCertificate(cert, identities) : undefined;
}

/** Per decision: the metrics and, when on, the decision log. */
function decisionSink(metrics: Metrics, decisionLog: DecisionLog): (e: DecisionEvent) => void {
  return (e) => {
    metrics.decision(e.method, e.decision.allowed);
    if (!decisionLog.enabled) return;
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
  };
}

/** The data path: database, change feed, engine, rate limits, credentials. */
function dataParts(config: Config, logger: Logger, metrics: Metrics) {
  const db = createDatabase(config, logger.child({ module: "store" }));
  const feed = new ChangeFeedFollower(db, logger.child({ module: "change-feed" }), config.revisionPollMs);
  const live = new LiveEngineFollower(db, feed, logger.child({ module: "engine" }), { maxStalenessMs: config.maxStalenessMs });
  const rateLimit = createRateLimitService(
    config,
    logger.child({ module: "ratelimit" }),
    () => live,
    () => db,
    { onDecision: (source) => metrics.rateLimitSource(source) },
  );
  const keys = new KeySource(config.apiKeysFile, logger.child({ module: "auth" }));
  const jwt: { verifier: JwtVerifier | undefined } = { verifier: undefined };
  const authenticator = createAuthenticator({ required: config.authRequired, keys: keys.ring, jwt: () => jwt.verifier });
  return { db, feed, live, rateLimit, keys, jwt, authenticator };
}

/** The two listeners over one set of guarded handlers. */
function servers(
  config: Config,
  logger: Logger,
  p: ReturnType<typeof dataParts>,
  shared: { metrics: Metrics; health: HealthState; callLog: CallLog; mesh: MeshConfig; onDecision: (e: DecisionEvent) => void; admission: Admission },
) {
  const bindings = guard(
    createBindings(shared.health, {
      onDecision: shared.onDecision,
      mesh: shared.mesh,
      rateLimitStore: p.rateLimit.store,
      onRateLimitDecision: (source) => shared.metrics.rateLimitSource(source),
      logger: logger.child({ module: "mesh" }),
      maxWaitMs: config.maxWaitMs,
      rateLimit: p.rateLimit.handlers,
      transferTtlMs: config.transferTtlSeconds * 1000,
      live: () => p.live,
      db: () => p.db,
      feed: () => p.feed,
      closing: shared.admission.closing,
    }),
    p.authenticator,
    shared.admission,
  );
  const tls = readTls(config);
  const peerIdentity = peerIdentityOf(config);
  const grpcServer = createGrpcServer(bindings, {
    logger,
    callLog: shared.callLog,
    maxMessageBytes: config.maxMessageBytes,
    ...(peerIdentity ? { peerIdentity } : {}),
    lean: config.grpcLean,
  });
  addReflection(grpcServer);
  const authzen = authzenRoutes({
    live: () => p.live,
    authenticator: p.authenticator,
    callLog: shared.callLog,
    logger: logger.child({ module: "authzen" }),
    onDecision: shared.onDecision,
    baseUrl: config.authzenBaseUrl,
    maxBodyBytes: config.maxMessageBytes,
    maxWaitMs: config.maxWaitMs,
    peerIdentity,
    admission: shared.admission,
  });
  const http = createHttpListener(bindings, {
    logger,
    callLog: shared.callLog,
    isReady: () => shared.health.serving,
    maxMessageBytes: config.maxMessageBytes,
    tls,
    peerIdentity,
    extraRoutes: config.console ? withConsole(bindings, logger, authzen) : authzen,
    metrics: { contentType: shared.metrics.registry.contentType, text: () => shared.metrics.registry.metrics() },
  });
  return { grpcServer, http, tls };
}

type HttpReq = http.IncomingMessage | http2.Http2ServerRequest;
type HttpRes = http.ServerResponse | http2.Http2ServerResponse;

/** The web console's files at /console (AUTHZ_CONSOLE), then the other plain HTTP routes. */
function withConsole(bindings: readonly ServiceBinding[], logger: Logger, next: (req: HttpReq, res: HttpRes) => boolean) {
  const methods = bindings.flatMap((b) => b.service.methods.map((m) => `/${b.service.typeName}/${m.name}`));
  const served = consoleRoutes({ methods, logger: logger.child({ module: "console" }) });
  return (req: HttpReq, res: HttpRes) => served(req, res) || next(req, res);
}

/** Builds every part; nothing connects or listens yet. */
export function buildParts(config: Config, logger: Logger): Parts {
  const metrics = new Metrics();
  const health = new HealthState(SERVED_SERVICES);
  const tracing = config.otlpTracesEndpoint ? startTracing(config.otlpTracesEndpoint, VERSION) : NO_TRACING;
  const decisionLog =
    config.decisionLog === "off" ? DISABLED_DECISION_LOG : createDecisionLog({ destination: config.decisionLog, sampleRate: config.decisionLogSample });
  const mesh = loadMeshConfig(config.meshConfigFile);
  const data = dataParts(config, logger, metrics);
  const shared = {
    metrics,
    health,
    callLog: createCallLog(logger.child({ module: "rpc" }), metrics, tracing, { okSample: config.rpcLogSample }),
    mesh,
    onDecision: decisionSink(metrics, decisionLog),
    // One count of calls in progress for every entry point (RPCs and AuthZEN).
    admission: createAdmission(config.maxConcurrentCalls),
  };
  const { grpcServer, http, tls } = servers(config, logger, data, shared);
  return { config, logger, metrics, health, tracing, decisionLog, mesh, ...data, admission: shared.admission, grpcServer, http, tls };
}
