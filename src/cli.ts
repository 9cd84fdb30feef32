#!/usr/bin/env node
import { readFile } from "node:fs/promises";
import { mintApiKey } from "./auth/api-keys.js";
import { SCOPES, type Scope } from "./auth/caller.js";
import { ConfigError, loadConfig } from "./config.js";
import { AuthzError } from "./errors.js";
import { toResource, toSubject } from "./rpc/permission-handlers.js";
import { loadSnapshot } from "./store/live-engine.js";
import type { SqlClient } from "./store/sql.js";
import { insertApiKey, listApiKeys, revokeApiKey } from "./store/api-key-store.js";
import { createLogger } from "./logger.js";
import { runServer } from "./main.js";
import { ImportError, importDocument } from "./store/import.js";
import { migrate } from "./store/migrate.js";
import { openDatabase } from "./store/open.js";
import { ExportUsageError, exportCommand } from "./cli/export.js";
import { importProgress } from "./cli/import-progress.js";

const USAGE = `usage: authz <command>

commands:
  serve                      run the server (same as npm start)
  migrate                    apply pending database migrations to DATABASE_URL
  import FILE [--dry-run] [--quiet]
                             upsert a seed-shaped JSON document into DATABASE_URL,
                             all or nothing (format: docs/data-model.md); progress on
                             stderr when it takes over a second, unless --quiet
  export [--tenant UUID] [--counters]
                             write the directory (or one tenant's part) from DATABASE_URL
                             to stdout in the import format; --counters adds the live
                             rate-limit counters from REDIS_URL
  check --subject TYPE:ID --permission KEY --resource TYPE:ID [--explain]
                             decide one Check from the data in DATABASE_URL
  api-key create --name NAME --scopes check,ratelimit,admin,directory [--tenant UUID]
                             create an API key; the key is printed once, only its hash is stored
  api-key revoke ID          revoke an API key (every replica drops it at once)
  api-key list               list API keys (never their secrets)
  help                       this text

environment: see README.md (DATABASE_URL, REDIS_URL, AUTHZ_*)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === "serve") {
    await runServer();
    return -1;
  }
  if (!["migrate", "import", "export", "check", "api-key"].includes(command)) {
    process.stderr.write(`authz: unknown command "${command}"\n\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfig(process.env);
  if (!config.databaseUrl) {
    process.stderr.write(`authz ${command}: DATABASE_URL is not set (the embedded database lives only inside a running server)\n`);
    return 2;
  }
  const logger = createLogger(config.logLevel === "info" ? "warn" : config.logLevel);
  const db = await openDatabase(config, logger);
  try {
    if (command === "migrate") {
      const r = await migrate(db);
      process.stdout.write(`${JSON.stringify({ applied: r.applied, version: r.current, newer: r.newer })}\n`);
      return 0;
    }
    if (command === "check") return await checkCommand(db, rest);
    if (command === "api-key") return await apiKeyCommand(db, rest);
    if (command === "export") return await exportCommand(db, config, logger, rest, writeOut);
    const files = rest.filter((a) => !a.startsWith("--"));
    const flags = rest.filter((a) => a.startsWith("--"));
    const unknownFlags = flags.filter((f) => f !== "--dry-run" && f !== "--quiet");
    if (files.length !== 1 || unknownFlags.length > 0) {
      process.stderr.write(`authz import: expected exactly one FILE and optionally --dry-run, --quiet\n`);
      return 2;
    }
    const file = files[0] as string;
    let doc: unknown;
    try {
      doc = JSON.parse(await readFile(file, "utf8"));
    } catch (err) {
      process.stderr.write(`authz import: cannot read ${file} as JSON: ${(err as Error).message}\n`);
      return 1;
    }
    const progress = importProgress({ write: (l) => process.stderr.write(`${l}\n`), now: () => performance.now() });
    const summary = await importDocument(db, doc, {
      dryRun: flags.includes("--dry-run"),
      ...(flags.includes("--quiet") ? {} : { onProgress: progress.update }),
    });
    if (!flags.includes("--quiet")) progress.finish();
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ImportError) {
      process.stderr.write(`authz import: ${err.message}\n`);
      return 1;
    }
    if (err instanceof UsageError || err instanceof AuthzError || err instanceof ExportUsageError) {
      process.stderr.write(`authz ${command}: ${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    await db.close();
  }
}

/** Writes to stdout, waiting while its buffer is full. */
const writeOut = (s: string): Promise<void> | void => {
  if (!process.stdout.write(s)) return new Promise((resolve) => process.stdout.once("drain", () => resolve()));
};

/** --name value pairs; bare flags map to "true". */
function flags(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith("--")) continue;
    const next = args[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      out.set(a.slice(2), next);
      i++;
    } else out.set(a.slice(2), "true");
  }
  return out;
}

function ref(raw: string | undefined, what: string): { type: string; id: string } {
  const m = raw ? /^([a-z]+):(.+)$/.exec(raw) : null;
  if (!m) throw new UsageError(`--${what} must be TYPE:ID, e.g. ${what === "subject" ? "user" : "organization"}:00000000-0000-4000-8000-000000000001`);
  return { type: m[1] as string, id: m[2] as string };
}

class UsageError extends Error {}

async function checkCommand(db: SqlClient, args: string[]): Promise<number> {
  const f = flags(args);
  const subjectRef = ref(f.get("subject"), "subject");
  const resourceRef = ref(f.get("resource"), "resource");
  const permission = f.get("permission");
  if (!permission) throw new UsageError("--permission KEY is required");
  const subject = toSubject(subjectRef, "--subject");
  const resource = toResource(resourceRef, "--resource");
  const engine = await loadSnapshot(db);
  const d = engine.check(subject, permission, resource, Date.now(), f.has("explain"));
  process.stdout.write(
    `${JSON.stringify({ allowed: d.allowed, reason: d.reason, revision: engine.revision.toString(), ...(d.steps ? { steps: d.steps } : {}) }, null, 2)}\n`,
  );
  return d.allowed ? 0 : 3;
}

async function apiKeyCommand(db: SqlClient, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const f = flags(rest);
  if (sub === "create") {
    const name = f.get("name");
    if (!name) throw new UsageError("--name NAME is required");
    const scopes = (f.get("scopes") ?? "").split(",").filter(Boolean);
    const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (scopes.length === 0 || bad.length)
      throw new UsageError(`--scopes must list some of ${SCOPES.join(", ")}${bad.length ? ` (unknown: ${bad.join(", ")})` : ""}`);
    const tenant = f.get("tenant") ?? null;
    if (tenant !== null && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(tenant))
      throw new UsageError("--tenant must be a tenant UUID");
    const { key, record } = mintApiKey(name, scopes as Scope[], tenant?.toLowerCase() ?? null);
    await insertApiKey(db, record);
    process.stdout.write(`${JSON.stringify({ id: record.id, name, scopes: record.scopes, tenant_id: record.tenantId, key })}\n`);
    process.stderr.write("authz api-key: store the key now; it is not shown again (only its hash is kept)\n");
    return 0;
  }
  if (sub === "revoke") {
    const id = rest.find((a) => !a.startsWith("--"));
    if (!id) throw new UsageError("api-key revoke ID");
    if (!(await revokeApiKey(db, id))) {
      process.stderr.write(`authz api-key: no active key with id ${id}\n`);
      return 1;
    }
    process.stdout.write(`${JSON.stringify({ revoked: id })}\n`);
    return 0;
  }
  if (sub === "list") {
    process.stdout.write(`${JSON.stringify(await listApiKeys(db), null, 2)}\n`);
    return 0;
  }
  throw new UsageError("api-key create | revoke ID | list");
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`authz: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`authz: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
