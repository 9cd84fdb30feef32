// loadConfig reads the environment once, validates every variable, reports
// every problem at once and returns a frozen Config. No other module reads
// process.env.

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  /** Postgres connection string; undefined = embedded in-process PGlite (development only). */
  readonly databaseUrl: string | undefined;
  /** Redis connection string; undefined = in-process rate-limit store (development only). */
  readonly redisUrl: string | undefined;
  readonly host: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly logLevel: LogLevel;
  /** Apply migrations at start-up. */
  readonly migrate: boolean;
  /** JSON import file loaded at start-up in embedded mode (the demo dataset by default). */
  readonly embeddedImportFile: string | undefined;
  readonly databasePoolMax: number;
  readonly shutdownTimeoutMs: number;
  /** How often the change feed asks the database for its newest revision, as a safety net (while the listener is up). */
  readonly revisionPollMs: number;
  /** Staleness bound: beyond it token-less reads are counted and logged, and decision services report NOT_SERVING. */
  readonly maxStalenessMs: number;
  /** REDIS_URL is a seed node of a Redis Cluster (ioredis Cluster) rather than a single Redis. */
  readonly redisCluster: boolean;
  /** Longest Redis may take to answer a rate-limit command, from when it is sent, before its policy's failure mode answers. */
  readonly redisCommandTimeoutMs: number;
  /** Rate-limit commands sent to Redis and not answered yet, at most; later ones wait in order. */
  readonly redisMaxInFlight: number;
  /** Longest a rate-limit decision waits for one of those slots before its failure mode answers. */
  readonly redisQueueTimeoutMs: number;
  /** Longest a (re)connection to Redis may take. */
  readonly redisConnectTimeoutMs: number;
  /** Consecutive Redis failures that open the circuit breaker. */
  readonly redisBreakerFailures: number;
  /** How long the open breaker skips Redis before one probe call tries it again. */
  readonly redisBreakerCooldownMs: number;
  /** Prefix of every rate-limit counter key in Redis. */
  readonly redisKeyPrefix: string;
  /** How long a requested (not immediate) ownership transfer stays open. */
  readonly transferTtlSeconds: number;
  /** How often pending ownership transfers past their expiry are marked expired. */
  readonly transferSweepMs: number;
  /** Callers must authenticate (API key, JWT or client certificate). */
  readonly authRequired: boolean;
  /** JSON file of API keys (hashes only), e.g. a mounted Kubernetes Secret. */
  readonly apiKeysFile: string | undefined;
  readonly jwt: {
    readonly jwksUrl: string | undefined;
    readonly jwksFile: string | undefined;
    readonly issuer: string | undefined;
    readonly audience: string | undefined;
    readonly scopeClaim: string;
    readonly tenantClaim: string;
  };
  readonly tls:
    | {
        readonly certFile: string;
        readonly keyFile: string;
        /** CA bundle that client certificates must chain to; set = mutual TLS required. */
        readonly clientCaFile: string | undefined;
      }
    | undefined;
  /** JSON file mapping client-certificate common names to scopes and tenant. */
  readonly mtlsIdentitiesFile: string | undefined;
  readonly maxMessageBytes: number;
  readonly maxConcurrentCalls: number;
  /** Longest any call waits for freshness or a backend, whatever deadline the caller set. */
  readonly maxWaitMs: number;
  /** "off", "stdout" or a file path. */
  readonly decisionLog: string;
  readonly decisionLogSample: number;
  /** Share of successful calls logged at info (failed calls always are; at debug every call is). */
  readonly rpcLogSample: number;
  /** Serve the hot unary RPCs on the gRPC port through the lean node:http2 path (src/rpc/grpc-lean.ts) instead of grpc-js. */
  readonly grpcLean: boolean;
  /** OTLP/HTTP traces endpoint (…/v1/traces); tracing is off when unset. */
  readonly otlpTracesEndpoint: string | undefined;
  /** JSON file mapping sidecar (Envoy) requests to decisions; undefined = built-in defaults. */
  readonly meshConfigFile: string | undefined;
  /** Base URL published in /.well-known/authzen-configuration; undefined = the request's scheme and Host. */
  readonly authzenBaseUrl: string | undefined;
  /** Serve the web console at /console on the HTTP port (docs/console.md). */
  readonly console: boolean;
  /** How long change-log rows are kept (replicas further behind reload a snapshot). */
  readonly changeLogRetentionHours: number;
  /** How long a write's idempotency key replays its first answer. */
  readonly idempotencyRetentionHours: number;
  /** Non-fatal findings (unknown AUTHZ_* names), logged at start-up. */
  readonly warnings: readonly string[];
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Every variable loadConfig reads, with its meaning and default, for the README and --help. */
export const CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "DATABASE_URL", default: "(unset: embedded PGlite)", meaning: "Postgres connection string (postgres://user:pass@host:5432/db)." },
  { name: "REDIS_URL", default: "(unset: in-process store)", meaning: "Redis connection string for rate limits (redis://host:6379)." },
  {
    name: "AUTHZ_HOST",
    default: "127.0.0.1 embedded, 0.0.0.0 with DATABASE_URL",
    meaning: "Address both listeners bind to. The embedded mode (authentication off) stays on loopback unless this says otherwise.",
  },
  { name: "AUTHZ_GRPC_PORT", default: "50051", meaning: "gRPC listener (HTTP/2, h2c)." },
  { name: "AUTHZ_HTTP_PORT", default: "8080", meaning: "Connect, gRPC-Web and gRPC over HTTP/1.1 and HTTP/2; /healthz and /readyz." },
  { name: "AUTHZ_LOG_LEVEL", default: "info", meaning: "fatal, error, warn, info, debug, trace or silent." },
  {
    name: "AUTHZ_MIGRATE",
    default: "true",
    meaning:
      "Apply pending migrations at start-up (false when a migration job does it; a server then refuses to start on a schema older than its build, naming the migrations not applied).",
  },
  { name: "AUTHZ_EMBEDDED_IMPORT", default: "examples/demo.json", meaning: "Embedded mode only: JSON file imported at start-up; 'none' imports nothing." },
  { name: "AUTHZ_DATABASE_POOL_MAX", default: "10", meaning: "Maximum Postgres connections per process." },
  { name: "AUTHZ_SHUTDOWN_TIMEOUT_MS", default: "10000", meaning: "Bound on graceful shutdown after SIGTERM." },
  {
    name: "AUTHZ_REVISION_POLL_MS",
    default: "1000",
    meaning: "Safety poll of the newest revision while the change listener is up (every 200 ms while it is down).",
  },
  {
    name: "AUTHZ_MAX_STALENESS_MS",
    default: "5000",
    meaning:
      "Staleness bound: an engine not confirmed fresh for longer turns the decision services NOT_SERVING; token-less reads it still answers are counted and logged.",
  },
  { name: "AUTHZ_REDIS_CLUSTER", default: "false", meaning: "true: REDIS_URL is one seed node of a Redis Cluster (the others are discovered)." },
  {
    name: "AUTHZ_REDIS_COMMAND_TIMEOUT_MS",
    default: "50",
    meaning: "Longest Redis may take to answer a rate-limit command, from when it is sent; then the policy's failure mode answers.",
  },
  {
    name: "AUTHZ_REDIS_MAX_IN_FLIGHT",
    default: "512",
    meaning: "Rate-limit commands sent to Redis and not answered yet, at most; further decisions wait in order.",
  },
  {
    name: "AUTHZ_REDIS_QUEUE_TIMEOUT_MS",
    default: "5000",
    meaning: "Longest a decision waits for such a slot (local overload, not a Redis failure); then the failure mode answers.",
  },
  { name: "AUTHZ_REDIS_CONNECT_TIMEOUT_MS", default: "1000", meaning: "Longest one (re)connection attempt to Redis may take; reconnection never stops." },
  { name: "AUTHZ_REDIS_BREAKER_FAILURES", default: "5", meaning: "Consecutive Redis failures that open the circuit breaker (calls then skip Redis)." },
  { name: "AUTHZ_REDIS_BREAKER_COOLDOWN_MS", default: "1000", meaning: "How long the open breaker skips Redis before a probe tries it again." },
  {
    name: "AUTHZ_AUTH",
    default: "on with DATABASE_URL, off embedded",
    meaning: "on: every RPC but health needs a credential with the right scope; off: open (development only, logged loudly).",
  },
  {
    name: "AUTHZ_API_KEYS_FILE",
    default: "(unset)",
    meaning: "JSON array of API keys {id, name, sha256, scopes, tenant_id} (hashes only), e.g. a mounted Secret; keys in the api_keys table work too.",
  },
  { name: "AUTHZ_JWT_JWKS_URL", default: "(unset)", meaning: "Verify Bearer JWTs against this JWKS URL." },
  { name: "AUTHZ_JWT_JWKS_FILE", default: "(unset)", meaning: "Verify Bearer JWTs against the keys in this JWKS file." },
  { name: "AUTHZ_JWT_ISSUER", default: "(unset)", meaning: "Required iss claim of JWTs." },
  { name: "AUTHZ_JWT_AUDIENCE", default: "(unset)", meaning: "Required aud claim of JWTs." },
  {
    name: "AUTHZ_JWT_SCOPE_CLAIM",
    default: "scope",
    meaning: "JWT claim holding the scopes (check, ratelimit, admin, directory), space-separated or an array.",
  },
  { name: "AUTHZ_JWT_TENANT_CLAIM", default: "tenant_id", meaning: "JWT claim binding the caller to one tenant." },
  { name: "AUTHZ_TLS_CERT_FILE", default: "(unset: cleartext)", meaning: "PEM certificate chain for both listeners (with AUTHZ_TLS_KEY_FILE)." },
  { name: "AUTHZ_TLS_KEY_FILE", default: "(unset)", meaning: "PEM private key for AUTHZ_TLS_CERT_FILE." },
  { name: "AUTHZ_TLS_CLIENT_CA_FILE", default: "(unset)", meaning: "PEM CA bundle: clients must present a certificate signed by it (mutual TLS)." },
  { name: "AUTHZ_MTLS_IDENTITIES_FILE", default: "(unset)", meaning: "JSON object mapping a client certificate's common name to {scopes, tenant_id}." },
  { name: "AUTHZ_MAX_MESSAGE_BYTES", default: "4194304", meaning: "Largest request or response message on either listener." },
  { name: "AUTHZ_MAX_CONCURRENT_CALLS", default: "2048", meaning: "Calls in progress per process beyond which new calls get RESOURCE_EXHAUSTED." },
  { name: "AUTHZ_MAX_WAIT_MS", default: "5000", meaning: "Cap on how long a call waits for freshness, whatever deadline the caller set." },
  {
    name: "AUTHZ_DECISION_LOG",
    default: "off",
    meaning:
      "Decision log: off, stdout, or a file path (one JSON line per decision; never credentials). A file that cannot be written stops the start (exit 2).",
  },
  { name: "AUTHZ_DECISION_LOG_SAMPLE", default: "1", meaning: "Share of decisions the decision log records, between 0 and 1." },
  {
    name: "AUTHZ_RPC_LOG_SAMPLE",
    default: "0",
    meaning: "Share of successful calls that get a per-call log line at level info, between 0 and 1; failed calls always do, and at debug every call does.",
  },
  {
    name: "AUTHZ_GRPC_LEAN",
    default: "on",
    meaning:
      "on: the gRPC port answers the hot unary RPCs (Check, CheckBulk, ConsumeRateLimit, Envoy Check, ShouldRateLimit) on a lean node:http2 path beside grpc-js; off: grpc-js answers every call.",
  },
  {
    name: "AUTHZ_OTLP_ENDPOINT",
    default: "(unset: no tracing)",
    meaning: "OTLP/HTTP endpoint for traces, e.g. http://otel-collector:4318/v1/traces (OTEL_EXPORTER_OTLP_ENDPOINT is honoured too).",
  },
  {
    name: "AUTHZ_CHANGE_LOG_RETENTION_HOURS",
    default: "168",
    meaning: "Change-log rows older than this are deleted; a replica further behind reloads a snapshot.",
  },
  { name: "AUTHZ_IDEMPOTENCY_RETENTION_HOURS", default: "24", meaning: "How long an idempotency key of a write replays its first answer." },
  {
    name: "AUTHZ_TRANSFER_TTL_SECONDS",
    default: "604800",
    meaning: "How long a requested ownership transfer waits for the target before it expires (request_ttl overrides).",
  },
  { name: "AUTHZ_TRANSFER_SWEEP_MS", default: "60000", meaning: "How often pending ownership transfers past their expiry are recorded as expired." },
  {
    name: "AUTHZ_MESH_CONFIG",
    default: "(unset: built-in defaults)",
    meaning: "JSON file mapping Envoy ext_authz requests (routes, subject sources, rate limits) and ShouldRateLimit descriptors to decisions (docs/mesh.md).",
  },
  {
    name: "AUTHZ_AUTHZEN_BASE_URL",
    default: "(unset: from the request's Host)",
    meaning: "Base URL (https://...) published as policy_decision_point in /.well-known/authzen-configuration.",
  },
  { name: "AUTHZ_REDIS_KEY_PREFIX", default: "authz:rl", meaning: 'Prefix of the rate-limit counter keys in Redis (letters, digits and "._:-").' },
  {
    name: "AUTHZ_CONSOLE",
    default: "off with DATABASE_URL, on embedded",
    meaning: "on: serve the web console at /console on the HTTP port (every call it makes passes the normal credential and scope checks).",
  },
];

const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const KNOWN = new Set(CONFIG_VARIABLES.map((v) => v.name));

/** Reads typed values from the environment and collects every problem instead of stopping at the first. */
class EnvReader {
  readonly problems: string[] = [];
  constructor(private readonly env: Readonly<Record<string, string | undefined>>) {}

  read(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  }

  url(name: string, protocols: readonly string[]): string | undefined {
    const raw = this.read(name);
    if (raw === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      // Never echo the value: it may hold a password.
      this.problems.push(`${name} is not a valid URL (expected ${protocols.map((p) => `${p}//...`).join(" or ")})`);
      return undefined;
    }
    if (!protocols.includes(parsed.protocol)) {
      this.problems.push(`${name} must start with ${protocols.map((p) => `${p}//`).join(" or ")}, got ${parsed.protocol}//`);
      return undefined;
    }
    return raw;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.read(name);
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw)) {
      this.problems.push(`${name} must be a whole number between ${min} and ${max}, got "${raw}"`);
      return fallback;
    }
    const n = Number(raw);
    if (n < min || n > max) {
      this.problems.push(`${name} must be between ${min} and ${max}, got ${n}`);
      return fallback;
    }
    return n;
  }

  bool(name: string, fallback: boolean): boolean {
    const raw = this.read(name);
    if (raw === undefined) return fallback;
    const v = raw.toLowerCase();
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off"].includes(v)) return false;
    this.problems.push(`${name} must be true or false, got "${raw}"`);
    return fallback;
  }

  fraction(name: string, fallback: number): number {
    const raw = this.read(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^(0|1|0?\.\d+|1\.0*)$/.test(raw) || n < 0 || n > 1) {
      this.problems.push(`${name} must be a number between 0 and 1, got "${raw}"`);
      return fallback;
    }
    return n;
  }
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const r = new EnvReader(env);
  // Sections are read in this order so problems are reported in the order of the variables' importance.
  const endpoints = readEndpoints(r);
  const redisNaming = readRedisNaming(r, endpoints.redisUrl);
  if (r.read("AUTHZ_JWT_JWKS_URL") && r.read("AUTHZ_JWT_JWKS_FILE")) r.problems.push("set AUTHZ_JWT_JWKS_URL or AUTHZ_JWT_JWKS_FILE, not both");
  const config: Config = {
    ...endpoints,
    ...readLifecycle(r),
    ...redisNaming,
    ...readRedisTimings(r),
    ...readRetention(r),
    ...readAuth(r, endpoints.databaseUrl),
    ...readLimitsAndTelemetry(r),
    // The web console: on by default only in the embedded development mode.
    console: r.bool("AUTHZ_CONSOLE", endpoints.databaseUrl === undefined && r.read("DATABASE_URL") === undefined),
    warnings: unknownSettings(env),
  };
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return Object.freeze(config);
}

function readEndpoints(r: EnvReader) {
  const databaseUrl = r.url("DATABASE_URL", ["postgres:", "postgresql:"]);
  const redisUrl = r.url("REDIS_URL", ["redis:", "rediss:"]);
  // The embedded mode runs with authentication off: on loopback only, unless asked.
  const host = r.read("AUTHZ_HOST") ?? (databaseUrl === undefined && r.read("DATABASE_URL") === undefined ? "127.0.0.1" : "0.0.0.0");
  const grpcPort = r.int("AUTHZ_GRPC_PORT", 50051, 0, 65535);
  const httpPort = r.int("AUTHZ_HTTP_PORT", 8080, 0, 65535);
  if (grpcPort !== 0 && grpcPort === httpPort) {
    r.problems.push(`AUTHZ_GRPC_PORT and AUTHZ_HTTP_PORT must differ, both are ${grpcPort}`);
  }
  const level = (r.read("AUTHZ_LOG_LEVEL") ?? "info").toLowerCase();
  if (!LOG_LEVELS.includes(level as LogLevel)) {
    r.problems.push(`AUTHZ_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${level}"`);
  }
  const logLevel: LogLevel = LOG_LEVELS.includes(level as LogLevel) ? (level as LogLevel) : "info";
  return { databaseUrl, redisUrl, host, grpcPort, httpPort, logLevel };
}

function readRedisNaming(r: EnvReader, redisUrl: string | undefined) {
  const redisKeyPrefix = r.read("AUTHZ_REDIS_KEY_PREFIX") ?? "authz:rl";
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(redisKeyPrefix)) {
    r.problems.push(`AUTHZ_REDIS_KEY_PREFIX must be 1 to 64 letters, digits and "._:-", got "${redisKeyPrefix.slice(0, 80)}"`);
  }
  const redisCluster = r.bool("AUTHZ_REDIS_CLUSTER", false);
  if (redisCluster && redisUrl === undefined && r.read("REDIS_URL") === undefined) {
    r.problems.push("AUTHZ_REDIS_CLUSTER=true needs REDIS_URL (a seed node of the cluster)");
  }
  return { redisKeyPrefix, redisCluster };
}

function readLifecycle(r: EnvReader) {
  const importRaw = r.read("AUTHZ_EMBEDDED_IMPORT") ?? "examples/demo.json";
  return {
    migrate: r.bool("AUTHZ_MIGRATE", true),
    embeddedImportFile: importRaw.toLowerCase() === "none" ? undefined : importRaw,
    databasePoolMax: r.int("AUTHZ_DATABASE_POOL_MAX", 10, 1, 1000),
    shutdownTimeoutMs: r.int("AUTHZ_SHUTDOWN_TIMEOUT_MS", 10_000, 100, 600_000),
    revisionPollMs: r.int("AUTHZ_REVISION_POLL_MS", 1_000, 50, 3_600_000),
    maxStalenessMs: r.int("AUTHZ_MAX_STALENESS_MS", 5_000, 100, 3_600_000),
  };
}

function readRedisTimings(r: EnvReader) {
  return {
    redisCommandTimeoutMs: r.int("AUTHZ_REDIS_COMMAND_TIMEOUT_MS", 50, 1, 60_000),
    redisMaxInFlight: r.int("AUTHZ_REDIS_MAX_IN_FLIGHT", 512, 1, 100_000),
    redisQueueTimeoutMs: r.int("AUTHZ_REDIS_QUEUE_TIMEOUT_MS", 5_000, 1, 600_000),
    redisConnectTimeoutMs: r.int("AUTHZ_REDIS_CONNECT_TIMEOUT_MS", 1_000, 10, 60_000),
    redisBreakerFailures: r.int("AUTHZ_REDIS_BREAKER_FAILURES", 5, 1, 10_000),
    redisBreakerCooldownMs: r.int("AUTHZ_REDIS_BREAKER_COOLDOWN_MS", 1_000, 10, 600_000),
  };
}

function readRetention(r: EnvReader) {
  return {
    transferTtlSeconds: r.int("AUTHZ_TRANSFER_TTL_SECONDS", 604_800, 1, 31_536_000),
    transferSweepMs: r.int("AUTHZ_TRANSFER_SWEEP_MS", 60_000, 100, 86_400_000),
    changeLogRetentionHours: r.int("AUTHZ_CHANGE_LOG_RETENTION_HOURS", 168, 1, 87_600),
    idempotencyRetentionHours: r.int("AUTHZ_IDEMPOTENCY_RETENTION_HOURS", 24, 1, 87_600),
  };
}

function readAuth(r: EnvReader, databaseUrl: string | undefined) {
  return {
    authRequired: r.bool("AUTHZ_AUTH", databaseUrl !== undefined || r.read("DATABASE_URL") !== undefined),
    apiKeysFile: r.read("AUTHZ_API_KEYS_FILE"),
    jwt: {
      jwksUrl: r.url("AUTHZ_JWT_JWKS_URL", ["https:", "http:"]),
      jwksFile: r.read("AUTHZ_JWT_JWKS_FILE"),
      issuer: r.read("AUTHZ_JWT_ISSUER"),
      audience: r.read("AUTHZ_JWT_AUDIENCE"),
      scopeClaim: r.read("AUTHZ_JWT_SCOPE_CLAIM") ?? "scope",
      tenantClaim: r.read("AUTHZ_JWT_TENANT_CLAIM") ?? "tenant_id",
    },
    tls: readTls(r),
    mtlsIdentitiesFile: r.read("AUTHZ_MTLS_IDENTITIES_FILE"),
  };
}

function readTls(r: EnvReader): Config["tls"] {
  const certFile = r.read("AUTHZ_TLS_CERT_FILE");
  const keyFile = r.read("AUTHZ_TLS_KEY_FILE");
  const clientCaFile = r.read("AUTHZ_TLS_CLIENT_CA_FILE");
  if (!certFile && !keyFile) {
    if (clientCaFile) r.problems.push("AUTHZ_TLS_CLIENT_CA_FILE needs AUTHZ_TLS_CERT_FILE and AUTHZ_TLS_KEY_FILE (mutual TLS runs over TLS)");
    return undefined;
  }
  if (!certFile || !keyFile) {
    r.problems.push("AUTHZ_TLS_CERT_FILE and AUTHZ_TLS_KEY_FILE must be set together");
    return undefined;
  }
  return { certFile, keyFile, clientCaFile };
}

function readLimitsAndTelemetry(r: EnvReader) {
  return {
    maxMessageBytes: r.int("AUTHZ_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    maxConcurrentCalls: r.int("AUTHZ_MAX_CONCURRENT_CALLS", 2048, 1, 1_000_000),
    maxWaitMs: r.int("AUTHZ_MAX_WAIT_MS", 5_000, 1, 600_000),
    decisionLog: readDecisionLog(r),
    decisionLogSample: r.fraction("AUTHZ_DECISION_LOG_SAMPLE", 1),
    rpcLogSample: r.fraction("AUTHZ_RPC_LOG_SAMPLE", 0),
    grpcLean: r.bool("AUTHZ_GRPC_LEAN", true),
    otlpTracesEndpoint: readOtlp(r),
    meshConfigFile: r.read("AUTHZ_MESH_CONFIG"),
    authzenBaseUrl: r.url("AUTHZ_AUTHZEN_BASE_URL", ["https:", "http:"]),
  };
}

function readOtlp(r: EnvReader): string | undefined {
  const own = r.url("AUTHZ_OTLP_ENDPOINT", ["http:", "https:"]);
  if (own) return own;
  const std = r.url("OTEL_EXPORTER_OTLP_ENDPOINT", ["http:", "https:"]);
  return std ? `${std.replace(/\/+$/, "")}/v1/traces` : undefined;
}

function readDecisionLog(r: EnvReader): string {
  const raw = r.read("AUTHZ_DECISION_LOG") ?? "off";
  return raw.toLowerCase() === "off" || raw.toLowerCase() === "stdout" ? raw.toLowerCase() : raw;
}

// Unknown AUTHZ_* names are most likely typos; they are reported but not
// fatal, because Kubernetes injects AUTHZ_SERVICE_HOST and friends for a
// Service named authz.
function unknownSettings(env: Readonly<Record<string, string | undefined>>): string[] {
  return Object.keys(env)
    .filter((name) => name.startsWith("AUTHZ_") && !KNOWN.has(name) && !/^AUTHZ_(SERVICE|PORT)(_|$)/.test(name))
    .map((name) => `${name} is not a known setting and is ignored`);
}

/** Query parameters that carry a secret in a PostgreSQL or Redis connection string (libpq's and the drivers' names). */
const SECRET_PARAMS = /pass|secret|token|key/i;

/** A connection string with its password replaced, in the user part and in the query (?password=...), safe to log. */
export function redactUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  try {
    const u = new URL(raw);
    if (u.password) u.password = "REDACTED";
    for (const name of [...u.searchParams.keys()]) if (SECRET_PARAMS.test(name)) u.searchParams.set(name, "REDACTED");
    return u.toString();
  } catch {
    return "(unparseable)";
  }
}
