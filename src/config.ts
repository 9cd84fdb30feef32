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
  /** How often the change feed asks the database for its newest revision, as a safety net. */
  readonly revisionPollMs: number;
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
  { name: "AUTHZ_HOST", default: "0.0.0.0", meaning: "Address both listeners bind to." },
  { name: "AUTHZ_GRPC_PORT", default: "50051", meaning: "gRPC listener (HTTP/2, h2c)." },
  { name: "AUTHZ_HTTP_PORT", default: "8080", meaning: "Connect, gRPC-Web and gRPC over HTTP/1.1 and HTTP/2; /healthz and /readyz." },
  { name: "AUTHZ_LOG_LEVEL", default: "info", meaning: "fatal, error, warn, info, debug, trace or silent." },
  { name: "AUTHZ_MIGRATE", default: "true", meaning: "Apply pending migrations at start-up (false when a migration job does it)." },
  { name: "AUTHZ_EMBEDDED_IMPORT", default: "examples/demo.json", meaning: "Embedded mode only: JSON file imported at start-up; 'none' imports nothing." },
  { name: "AUTHZ_DATABASE_POOL_MAX", default: "10", meaning: "Maximum Postgres connections per process." },
  { name: "AUTHZ_SHUTDOWN_TIMEOUT_MS", default: "10000", meaning: "Bound on graceful shutdown after SIGTERM." },
  { name: "AUTHZ_REVISION_POLL_MS", default: "5000", meaning: "Safety poll of the newest revision, in case a notification was missed." },
];

const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const KNOWN = new Set(CONFIG_VARIABLES.map((v) => v.name));

export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const problems: string[] = [];
  const read = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };

  const url = (name: string, protocols: readonly string[]): string | undefined => {
    const raw = read(name);
    if (raw === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      // Never echo the value: it may hold a password.
      problems.push(`${name} is not a valid URL (expected ${protocols.map((p) => `${p}//...`).join(" or ")})`);
      return undefined;
    }
    if (!protocols.includes(parsed.protocol)) {
      problems.push(`${name} must start with ${protocols.map((p) => `${p}//`).join(" or ")}, got ${parsed.protocol}//`);
      return undefined;
    }
    return raw;
  };

  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw)) {
      problems.push(`${name} must be a whole number between ${min} and ${max}, got "${raw}"`);
      return fallback;
    }
    const n = Number(raw);
    if (n < min || n > max) {
      problems.push(`${name} must be between ${min} and ${max}, got ${n}`);
      return fallback;
    }
    return n;
  };

  const bool = (name: string, fallback: boolean): boolean => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const v = raw.toLowerCase();
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off"].includes(v)) return false;
    problems.push(`${name} must be true or false, got "${raw}"`);
    return fallback;
  };

  const databaseUrl = url("DATABASE_URL", ["postgres:", "postgresql:"]);
  const redisUrl = url("REDIS_URL", ["redis:", "rediss:"]);
  const host = read("AUTHZ_HOST") ?? "0.0.0.0";
  const grpcPort = int("AUTHZ_GRPC_PORT", 50051, 0, 65535);
  const httpPort = int("AUTHZ_HTTP_PORT", 8080, 0, 65535);
  if (grpcPort !== 0 && grpcPort === httpPort) {
    problems.push(`AUTHZ_GRPC_PORT and AUTHZ_HTTP_PORT must differ, both are ${grpcPort}`);
  }
  const level = (read("AUTHZ_LOG_LEVEL") ?? "info").toLowerCase();
  if (!LOG_LEVELS.includes(level as LogLevel)) {
    problems.push(`AUTHZ_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${level}"`);
  }
  const importRaw = read("AUTHZ_EMBEDDED_IMPORT") ?? "examples/demo.json";

  // Unknown AUTHZ_* names are most likely typos; they are reported but not
  // fatal, because Kubernetes injects AUTHZ_SERVICE_HOST and friends for a
  // Service named authz.
  const warnings = Object.keys(env)
    .filter((name) => name.startsWith("AUTHZ_") && !KNOWN.has(name) && !/^AUTHZ_(SERVICE|PORT)(_|$)/.test(name))
    .map((name) => `${name} is not a known setting and is ignored`);

  const config: Config = {
    databaseUrl,
    redisUrl,
    host,
    grpcPort,
    httpPort,
    logLevel: LOG_LEVELS.includes(level as LogLevel) ? (level as LogLevel) : "info",
    migrate: bool("AUTHZ_MIGRATE", true),
    embeddedImportFile: importRaw.toLowerCase() === "none" ? undefined : importRaw,
    databasePoolMax: int("AUTHZ_DATABASE_POOL_MAX", 10, 1, 1000),
    shutdownTimeoutMs: int("AUTHZ_SHUTDOWN_TIMEOUT_MS", 10_000, 100, 600_000),
    revisionPollMs: int("AUTHZ_REVISION_POLL_MS", 5_000, 50, 3_600_000),
    warnings,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** A connection string with its password replaced, safe to log. */
export function redactUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  try {
    const u = new URL(raw);
    if (u.password) u.password = "REDACTED";
    return u.toString();
  } catch {
    return "(unparseable)";
  }
}
