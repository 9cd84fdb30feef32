#!/usr/bin/env node
import { readFile } from "node:fs/promises";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { runServer } from "./main.js";
import { ImportError, importDocument } from "./store/import.js";
import { migrate } from "./store/migrate.js";
import { openDatabase } from "./store/open.js";

const USAGE = `usage: authz <command>

commands:
  serve                      run the server (same as npm start)
  migrate                    apply pending database migrations to DATABASE_URL
  import FILE [--dry-run]    upsert a seed-shaped JSON document into DATABASE_URL,
                             all or nothing (format: docs/data-model.md)
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
  if (command !== "migrate" && command !== "import") {
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
    const files = rest.filter((a) => !a.startsWith("--"));
    const flags = rest.filter((a) => a.startsWith("--"));
    const unknownFlags = flags.filter((f) => f !== "--dry-run");
    if (files.length !== 1 || unknownFlags.length > 0) {
      process.stderr.write(`authz import: expected exactly one FILE and optionally --dry-run\n`);
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
    const summary = await importDocument(db, doc, { dryRun: flags.includes("--dry-run") });
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ImportError) {
      process.stderr.write(`authz import: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await db.close();
  }
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
