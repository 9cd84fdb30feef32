// The service's database as a component: a SqlClient that exists from the
// moment the service is built (so every part that needs the database gets
// it as a plain object, not a thunk) and answers UNAVAILABLE until start()
// has opened it — Postgres at DATABASE_URL, retried with backoff, or the
// embedded PGlite — checked the driver, applied the migrations and, in the
// embedded mode, imported the demo data.

import { readFile } from "node:fs/promises";
import { isAbsolute } from "node:path";
import type { Config } from "../config.js";
import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";
import { projectPath } from "../paths.js";
import { checkPostgresDriver } from "./driver-check.js";
import { importDocument } from "./import.js";
import { migrate, pendingMigrations } from "./migrate.js";
import { openDatabase, openEmbedded } from "./open.js";
import type { SqlClient, SqlQuerier } from "./sql.js";

export interface Database extends SqlClient {
  readonly name: "database";
  /** Opens, checks, migrates (and in the embedded mode seeds) the database. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

const notOpen = () => new AuthzError("UNAVAILABLE", "authz is starting: the database is not open yet; retry shortly", { reason: "DATABASE_UNAVAILABLE" });

/** Opens the configured database, retrying a real Postgres with backoff until it answers or the service stops. */
async function openWithRetry(config: Config, logger: Logger, stopping: () => boolean): Promise<SqlClient> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openDatabase(config, logger);
    } catch (err) {
      if (!config.databaseUrl || stopping()) throw err;
      const wait = Math.min(10_000, 250 * 2 ** Math.min(attempt, 6));
      logger.warn({ err: (err as Error).message, attempt, retryInMs: wait }, "database unreachable; retrying");
      await new Promise((r) => setTimeout(r, wait).unref());
      if (stopping()) throw new Error("stopped while waiting for the database");
    }
  }
}

/** A refusal to run against an unpatched postgres.js (a terminated backend could crash the process). */
function requirePatchedDriver(): void {
  const driver = checkPostgresDriver();
  if (driver.patched) return;
  throw new Error(
    `postgres.js at ${driver.file} lacks the patch in patches/ (a terminated backend could crash the process); ` +
      "install with npm ci (its postinstall runs patch-package), or run npx patch-package",
  );
}

/** The embedded mode's seed file, resolved against the project when relative; undefined with AUTHZ_EMBEDDED_IMPORT=none. */
function seedFile(config: Config): string | undefined {
  const f = config.embeddedImportFile;
  if (config.databaseUrl || f === undefined) return undefined;
  return isAbsolute(f) ? f : projectPath(f);
}

/** Opens the database: Postgres with retries, or the embedded one (seeded: it already holds the seed file). */
async function openForStart(config: Config, logger: Logger, stopping: () => boolean): Promise<{ db: SqlClient; seeded: boolean }> {
  if (config.databaseUrl) return { db: await openWithRetry(config, logger, stopping), seeded: false };
  return openEmbedded(seedFile(config), logger);
}

async function prepare(db: SqlClient, seeded: boolean, config: Config, logger: Logger): Promise<void> {
  if (config.migrate || !config.databaseUrl) {
    const m = await migrate(db);
    logger.info({ applied: m.applied, version: m.current }, m.applied.length ? "migrations applied" : "schema up to date");
    if (m.newer.length) logger.warn({ newer: m.newer }, "the database has migrations this build does not know (a newer version ran)");
  } else {
    // Without AUTHZ_MIGRATE the schema is someone else's job (authz migrate, the k8s Job): refuse to run on one
    // older than this build, saying so, rather than failing later on a missing function or column.
    const pending = await pendingMigrations(db);
    if (pending.length > 0) {
      throw new Error(
        `the database schema is older than this build: ${pending.length} migration(s) not applied (${pending.join(", ")}); run \`authz migrate\` against DATABASE_URL, or set AUTHZ_MIGRATE=true`,
      );
    }
  }
  const file = seedFile(config);
  if (file !== undefined && seeded) {
    logger.info({ file: config.embeddedImportFile }, "embedded database loaded with demo data (imported into the build's snapshot)");
  } else if (file !== undefined) {
    const summary = await importDocument(db, JSON.parse(await readFile(file, "utf8")));
    logger.info({ file: config.embeddedImportFile, revision: summary.revisionAfter }, "embedded database loaded with demo data");
  }
}

export function createDatabase(config: Config, logger: Logger): Database {
  let inner: SqlClient | undefined;
  let stopping = false;
  const subscribers = new Set<(reachable: boolean) => void>();
  const open = (): SqlClient => {
    if (!inner) throw notOpen();
    return inner;
  };
  const querier: SqlQuerier = {
    query: (text, params) => (inner ? inner.query(text, params) : Promise.reject(notOpen())),
    exec: (text) => (inner ? inner.exec(text) : Promise.reject(notOpen())),
    each: (text, size, onBatch) => (inner ? inner.each(text, size, onBatch) : Promise.reject(notOpen())),
  };
  return {
    name: "database",
    get kind() {
      return config.databaseUrl ? "postgres" : "pglite";
    },
    ...querier,
    readWriteTx: (fn, options) => (inner ? inner.readWriteTx(fn, options) : Promise.reject(notOpen())),
    listen: (channel, onNotify, onListen, onLost) => open().listen(channel, onNotify, onListen, onLost),
    get reachable() {
      return inner?.reachable ?? false;
    },
    onReachability(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    async start() {
      if (config.databaseUrl) requirePatchedDriver();
      const { db, seeded } = await openForStart(config, logger, () => stopping);
      await prepare(db, seeded, config, logger);
      db.onReachability((up) => {
        for (const fn of [...subscribers]) fn(up);
      });
      inner = db;
      for (const fn of [...subscribers]) fn(db.reachable);
    },
    async stop() {
      stopping = true;
      const db = inner;
      inner = undefined;
      await db?.close();
    },
    close() {
      return this.stop();
    },
  };
}
