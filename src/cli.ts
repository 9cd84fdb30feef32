#!/usr/bin/env node
// The authz command line: a small dispatcher. Each command is a module
// src/cli/<command>.ts exporting `command` (a Command), loaded only when it
// runs, so `authz --help` loads nothing but this file and src/cli/common.ts.
// A new command is one module and one line in COMMANDS.
import { type CliIo, type Command, EXIT, UsageError } from "./cli/common.js";

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ command: Command }> }> = {
  check: { summary: "one decision over gRPC (exit 0 allowed, 1 denied)", load: () => import("./cli/check.js") },
  list: { summary: "every role and permission of a subject, over gRPC", load: () => import("./cli/list.js") },
  lookup: { summary: "who may do P on R (subjects), or on what S may do P (resources), over gRPC", load: () => import("./cli/lookup.js") },
  manage: { summary: "apply a ManageRoles batch (JSON file), all or nothing, over gRPC", load: () => import("./cli/manage.js") },
  watch: { summary: "follow committed changes as they happen (Watch), over gRPC", load: () => import("./cli/watch.js") },
  export: { summary: "the directory (or one tenant's part) as an import document, over gRPC (ExportDirectory)", load: () => import("./cli/export.js") },
  import: { summary: "upsert a seed-shaped JSON file into DATABASE_URL, all or nothing", load: () => import("./cli/import.js") },
  "api-key": { summary: "create, revoke, list API keys over gRPC (create --bootstrap: on DATABASE_URL)", load: () => import("./cli/api-key.js") },
  migrate: { summary: "apply pending migrations to DATABASE_URL", load: () => import("./cli/migrate.js") },
  size: { summary: "pod memory, heap and start-up budget for the expected data (kustomize patch)", load: () => import("./cli/size.js") },
  serve: { summary: "run the server (same as npm start)", load: () => import("./cli/serve.js") },
};

const USAGE = `usage: authz <command> [flags]        authz <command> --help for its flags

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`)
  .join("\n")}

check, list, lookup, watch, manage and api-key talk to a server over gRPC:
--server HOST:PORT (default 127.0.0.1:50051, the local embedded server; or
AUTHZ_SERVER), a credential from --api-key or AUTHZ_API_KEY, --output
json|table. migrate, import and api-key create --bootstrap work on
DATABASE_URL directly.

exit codes: 0 done (check: allowed), 1 denied (check: denied; or the service
refused the call), 2 usage (or INVALID_ARGUMENT), 3 server (or, for import,
migrate and api-key create --bootstrap, database) unavailable.
environment: README.md (DATABASE_URL, AUTHZ_*)`;

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    (name === undefined ? io.err : io.out)(`${USAGE}\n`);
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    io.err(`authz: unknown command "${name}"\n\n${USAGE}\n`);
    return EXIT.USAGE;
  }
  const { command } = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    io.out(`${command.usage}\n`);
    return EXIT.OK;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`authz ${name}: ${err.message}\n\n${command.usage}\n`);
    return EXIT.USAGE;
  }
}

const io: CliIo = {
  env: process.env,
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** Resolves once everything written to the stream so far has been handed to the OS (or the stream failed). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => stream.write("", () => resolve()));
}

/**
 * process.exit, not exitCode: an idle HTTP/2 session to the server must not keep
 * the command alive. But only once stdout and stderr are flushed: a pipe whose
 * reader is slow takes writes asynchronously, and process.exit drops what it has
 * not taken yet (an export cut short, with exit code 0).
 */
function exit(code: number): void {
  void Promise.all([flushed(process.stdout), flushed(process.stderr)]).then(() => process.exit(code));
}

// A reader that went away (authz export | head): stop quietly, as a command killed by SIGPIPE would.
process.stdout.on("error", () => process.exit(EXIT.DENIED));

main(process.argv.slice(2), io).then(
  (code) => {
    if (code >= 0) exit(code);
  },
  (err: unknown) => {
    // Configuration errors (ConfigError) and anything unexpected: one line, exit 2 for configuration, 3 when the
    // database of a database-direct command (import, migrate, api-key create --bootstrap) could not be reached, 1 otherwise.
    const config = err instanceof Error && err.name === "ConfigError";
    const code = (err as { code?: unknown } | undefined)?.code;
    const unavailable = err instanceof Error && (code === "UNAVAILABLE" || code === "DEADLINE_EXCEEDED");
    process.stderr.write(`authz: ${err instanceof Error ? err.message : String(err)}\n`);
    exit(config ? EXIT.USAGE : unavailable ? EXIT.UNAVAILABLE : EXIT.DENIED);
  },
);
