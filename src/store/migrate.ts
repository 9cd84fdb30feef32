import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { projectPath } from "../paths.js";
import type { SqlClient } from "./sql.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/** Transaction-scoped advisory lock key ("authz" in ASCII) serializing migrators. */
const MIGRATION_LOCK_KEY = "418464396410";

export async function loadMigrations(dir = projectPath("migrations")): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const out: Migration[] = [];
  for (const file of files) {
    const sql = await readFile(join(dir, file), "utf8");
    out.push({
      version: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ""),
      sql,
      checksum: createHash("sha256").update(sql).digest("hex"),
    });
  }
  return out;
}

export interface MigrateResult {
  /** Migrations this call applied. */
  applied: string[];
  /** Migrations in the database that this build does not know (a newer build ran): not fatal, logged. */
  newer: string[];
  /** The highest applied version. */
  current: number;
}

/**
 * Applies pending migrations in one transaction under an advisory lock, so
 * two replicas starting at once apply each migration exactly once (the second
 * waits, then finds nothing to do). Fails if an applied migration's file was
 * changed afterwards.
 */
export async function migrate(db: SqlClient, migrations?: Migration[]): Promise<MigrateResult> {
  const all = migrations ?? (await loadMigrations());
  return db.readWriteTx(async (tx) => {
    await tx.query(`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
    await tx.query(`create table if not exists authz_migrations (
      version    integer primary key,
      name       text not null,
      checksum   text not null,
      applied_at timestamptz not null default now()
    )`);
    const rows = await tx.query<{ version: number; name: string; checksum: string }>("select version, name, checksum from authz_migrations order by version");
    const done = new Map(rows.map((r) => [Number(r.version), r]));
    for (const m of all) {
      const prior = done.get(m.version);
      if (prior && prior.checksum !== m.checksum) {
        throw new Error(`migration ${m.name} was changed after it was applied (checksum differs); add a new migration instead`);
      }
    }
    const applied: string[] = [];
    for (const m of all) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query("insert into authz_migrations (version, name, checksum) values ($1, $2, $3)", [m.version, m.name, m.checksum]);
      applied.push(m.name);
    }
    const known = new Set(all.map((m) => m.version));
    const newer = [...done.values()].filter((r) => !known.has(Number(r.version))).map((r) => r.name);
    return { applied, newer, current: Math.max(0, ...all.map((m) => m.version), ...done.keys()) };
  });
}

/**
 * The migrations of this build the database has not applied (all of them when it was never migrated), for a
 * server started without AUTHZ_MIGRATE: it refuses to run on a schema older than its code.
 */
export async function pendingMigrations(db: SqlClient, migrations?: Migration[]): Promise<string[]> {
  const all = migrations ?? (await loadMigrations());
  const [table] = await db.query<{ exists: boolean }>("select to_regclass('authz_migrations') is not null as exists");
  if (!table?.exists) return all.map((m) => m.name);
  const rows = await db.query<{ version: number }>("select version from authz_migrations");
  const done = new Set(rows.map((r) => Number(r.version)));
  return all.filter((m) => !done.has(m.version)).map((m) => m.name);
}
