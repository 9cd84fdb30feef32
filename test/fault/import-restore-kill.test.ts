// Fault: the backend of an import in restore mode is terminated after the
// import has dropped the big tables' indexes and foreign keys and built them
// again, before it commits. The service promises (docs/data-model.md,
// "Restore mode"): the schema change is part of the import's transaction, so
// the schema is left exactly as migrated and nothing is written; the import
// fails with an error, the process does not crash.
//
// Deterministic: another session holds the change log (authz_changes) in
// EXCLUSIVE mode, so the import waits at its one RELOAD row, after the rebuild;
// that waiting backend is terminated, then the lock is released.
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectPath } from "../../src/paths.js";
import { importDocument } from "../../src/store/import.js";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { until } from "../support/fault.js";
import { holdInTransaction } from "../support/hold.js";

let t: TestDatabase;
let killer: postgres.Sql;

beforeAll(async () => {
  t = await freshDatabase();
  killer = postgres(t.url, { max: 1, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await killer?.end({ timeout: 2 });
  await t?.drop();
});

/** Every index, constraint and trigger of the schema (internal triggers too, their oid-bearing names masked). */
async function schema(): Promise<string[]> {
  const rows = await killer<{ d: string }[]>`
    select tablename || ' ' || indexdef as d from pg_indexes where schemaname = 'public'
    union all
    select conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
      from pg_constraint where connamespace = 'public'::regnamespace
    union all
    select tgrelid::regclass || ' ' || regexp_replace(tgname, '[0-9]+$', 'N') || ' ' || tgenabled::text
      from pg_trigger where tgrelid in (select oid from pg_class where relnamespace = 'public'::regnamespace)`;
  return rows.map((r) => r.d).sort();
}

describe("an import in restore mode whose backend is terminated before it commits", () => {
  it("fails, and leaves the schema as migrated and nothing written", async () => {
    const before = await schema();
    const doc = JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8"));
    const log = await holdInTransaction(t.raw, (q) => q`lock table authz_changes in exclusive mode`);
    let outcome: unknown = "pending";
    const run = importDocument(t.client, doc, { restore: true, changeLog: "reload" }).then(
      (s) => {
        outcome = s;
      },
      (err: unknown) => {
        outcome = err;
      },
    );
    try {
      // The import's backend, waiting for the change log's lock once its rebuild is done.
      let pid: number | undefined;
      await until(
        async () => {
          const [r] = await killer<{ pid: number }[]>`
            select pid from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock' and query like '%authz_log_reload%'`;
          pid = r?.pid;
          return pid !== undefined;
        },
        10_000,
        "the import waiting at its RELOAD row",
      );
      // It got there in restore mode: the indexes were dropped and built again in its transaction.
      await killer`select pg_terminate_backend(${pid as number})`;
      await run;
    } finally {
      await log.release();
    }
    expect(outcome).toBeInstanceOf(Error);
    expect(await schema()).toEqual(before);
    const [n] = await killer<{ n: number }[]>`select (select count(*) from role_assignments) + (select count(*) from users) as n`;
    expect(Number(n?.n)).toBe(0);
    // And the next import, with the database reachable again, writes in restore mode.
    const again = await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")), { restore: true });
    expect(again.writeMode).toBe("restore");
    expect(await schema()).toEqual(before);
  });
});
