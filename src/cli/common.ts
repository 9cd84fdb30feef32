// What every command shares: exit codes, argument parsing (node:util
// parseArgs), the connection flags of the commands that talk to a server, and
// JSON or table output. Kept free of heavy imports: `authz --help` loads only
// the dispatcher, and a command loads what it needs when it runs.
import { type ParseArgsConfig, parseArgs } from "node:util";

/** Exit codes, the same for every command (README "Command line"). */
export const EXIT = {
  /** Done; for check: allowed. */
  OK: 0,
  /** For check: denied. Any command: the service refused the call (the code and reason are on stderr). */
  DENIED: 1,
  /** The command line itself is wrong (unknown flag, missing value) or the service said INVALID_ARGUMENT. */
  USAGE: 2,
  /** The server could not be reached or answered UNAVAILABLE / DEADLINE_EXCEEDED. */
  UNAVAILABLE: 3,
} as const;

/** Where a command writes, and the environment it may read (the dispatcher hands it over; commands never read process.env). */
export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  out(text: string): void;
  err(text: string): void;
}

/** A mistake on the command line: printed with the command's usage, exit 2. */
export class UsageError extends Error {}

/** The entry point of one command module (src/cli/<command>.ts). */
export interface Command {
  /** The full usage of the command, for `authz <command> --help` and usage errors. */
  readonly usage: string;
  run(args: string[], io: CliIo): Promise<number>;
}

export const DEFAULT_SERVER = "127.0.0.1:50051";

/** The flags of every command that calls a server. */
export const REMOTE_OPTIONS = {
  server: { type: "string" },
  "api-key": { type: "string" },
  output: { type: "string", short: "o" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

export const REMOTE_USAGE = `connection (every command that calls the server):
  --server HOST:PORT     gRPC address (default ${DEFAULT_SERVER}, the local embedded server;
                         AUTHZ_SERVER; https://HOST:PORT for TLS)
  --api-key KEY          credential sent as "authorization: Bearer KEY" (default AUTHZ_API_KEY;
                         not needed by the embedded server, whose authentication is off)
  --output json|table    output format (default json: the API's own JSON, reasons as DECISION_REASON_...)
  --timeout MS           deadline of each call (default 10000)`;

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs, strict, with its errors turned into usage errors. */
export function parse<O extends Options>(args: string[], options: O, positionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export interface Remote {
  readonly server: string;
  readonly credential: string | undefined;
  readonly output: "json" | "table";
  readonly timeoutMs: number;
}

export function remoteFrom(values: Record<string, unknown>, io: CliIo): Remote {
  const output = (values.output as string | undefined) ?? "json";
  if (output !== "json" && output !== "table") throw new UsageError(`--output must be json or table, got "${output}"`);
  const timeoutRaw = (values.timeout as string | undefined) ?? "10000";
  const timeoutMs = Number(timeoutRaw);
  if (!/^\d+$/.test(timeoutRaw) || timeoutMs < 1 || timeoutMs > 3_600_000) throw new UsageError(`--timeout must be milliseconds between 1 and 3600000`);
  return {
    server: (values.server as string | undefined) ?? io.env.AUTHZ_SERVER ?? DEFAULT_SERVER,
    credential: (values["api-key"] as string | undefined) ?? (io.env.AUTHZ_API_KEY || undefined),
    output,
    timeoutMs,
  };
}

/** TYPE:ID, as --subject and --resource take it. */
/** A whole-number flag between 1 and `max`; `fallback` when absent. */
export function count(raw: string | undefined, flag: string, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > max) throw new UsageError(`--${flag} must be a whole number between 1 and ${max}`);
  return n;
}

export function ref(raw: string | undefined, flag: string, example: string): { type: string; id: string } {
  const m = raw ? /^([a-z_]+):(.+)$/.exec(raw) : null;
  if (!m) throw new UsageError(`--${flag} must be TYPE:ID, e.g. ${example}`);
  return { type: m[1] as string, id: m[2] as string };
}

/** Rows as aligned columns, a header first. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

export const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/**
 * A command whose RPC the service does not have yet: it says so and exits 2.
 * The change that adds the RPC replaces the module (src/cli/<command>.ts) with
 * the real command; the dispatcher needs no edit.
 */
export function pending(name: string, rpc: string): Command {
  return {
    usage: `usage: authz ${name} ...\n\nNot available yet: the service has no ${rpc} RPC.`,
    async run(_args: string[], io: CliIo): Promise<number> {
      io.err(`authz ${name}: not available yet: the service has no ${rpc} RPC\n`);
      return EXIT.USAGE;
    },
  };
}
