// The bulk importer: the same state as one statement per record; deletions
// by a "$delete" marker; RateLimitCounter refused; and a large import logs
// one RELOAD change row, on which a following replica reloads a snapshot and
// converges. Real Postgres, the replica as a running server has it.
import { readFileSync } from "node:fs";
import { importBenchDocument } from "../bench/import.js";
import { beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { projectPath } from "../src/paths.js";
import { startChangeFeed } from "../src/store/change-feed.js";
import { readChanges } from "../src/store/change-stream.js";
import { exportDirectory } from "../src/store/export.js";
import { ImportError, importDocument, validateDocument } from "../src/store/import.js";
import { CHUNK_ROWS } from "../src/store/import-bulk.js";
import { loadSnapshot, startLiveEngine } from "../src/store/live-engine.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import type { SqlClient } from "../src/store/sql.js";
import { databasesOfThisFile, type TestDatabase } from "./support/db.js";
import { generateDataset, insertDataset, randomChecks, rng } from "./support/random-data.js";

const SEED = Number(process.env.IMPORT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const demo = () => JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as Record<string, Array<Record<string, unknown>>>;
const id = (kind: string, n: number) => `000000${kind}-0000-4000-8000-${String(n).padStart(12, "0")}`;

const db = databasesOfThisFile();

async function exported(c: SqlClient): Promise<Record<string, unknown[]>> {
  const doc: Record<string, unknown[]> = {};
  await exportDirectory(c, {}, (p) => {
    doc[p.section] = [...(doc[p.section] ?? []), ...p.records];
  });
  return doc;
}

describe(`bulk import (seed ${SEED})`, () => {
  it("writes the same rows, with the same counts, as one statement per record", async () => {
    const source = await db();
    await insertDataset(source.raw, generateDataset(rng(SEED), { users: 80, assignments: 600 }));
    const doc = await exported(source.client);
    const [bulk, rows] = [await db(), await db()];
    const a = await importDocument(bulk.client, structuredClone(doc));
    const b = await importDocument(rows.client, structuredClone(doc), { bulk: false });
    expect(a.sections).toEqual(b.sections);
    const [x, y] = [await exported(bulk.client), await exported(rows.client)];
    // Rows in key order; role_permissions' generated ids differ, so those compare as sets.
    const sorted = (l: unknown[] | undefined) => (l ?? []).map((r) => JSON.stringify(r)).sort();
    expect(Object.keys(x)).toEqual(Object.keys(y));
    for (const section of Object.keys(x)) expect({ section, records: sorted(x[section]) }).toEqual({ section, records: sorted(y[section]) });
  });

  it("deletes records marked $delete (children first), counts them, and a second run changes nothing", async () => {
    const t = await db();
    await importDocument(t.client, demo());
    const d = demo();
    const userRole = d.UserRole?.[0] as Record<string, unknown>;
    const assignment = d.ROLE_ASSIGNMENT?.[0] as Record<string, unknown>;
    const member = d.MEMBERSHIP?.find((m) => m.id === id("08", 3)) as Record<string, unknown>;
    const sync = {
      UserRole: [{ user_id: userRole.user_id, role_id: userRole.role_id, $delete: true }],
      ROLE_ASSIGNMENT: [{ id: assignment.id, $delete: true }],
      MEMBERSHIP: [{ id: member.id, $delete: true }],
      STAFF: [
        { id: id("04", 99), logical_key: "staff:new" },
        { id: id("04", 98), $delete: true },
      ],
    };
    const r = await importDocument(t.client, sync);
    expect(r.sections).toEqual({
      UserRole: { inserted: 0, updated: 0, unchanged: 0, deleted: 1 },
      ROLE_ASSIGNMENT: { inserted: 0, updated: 0, unchanged: 0, deleted: 1 },
      MEMBERSHIP: { inserted: 0, updated: 0, unchanged: 0, deleted: 1 },
      STAFF: { inserted: 1, updated: 0, unchanged: 1, deleted: 0 },
    });
    expect(BigInt(r.revisionAfter)).toBe(BigInt(r.revisionBefore) + 1n);
    expect(await t.raw`select 1 from role_assignments where id = ${assignment.id as string}`).toHaveLength(0);
    expect(await t.raw`select 1 from memberships where id = ${member.id as string}`).toHaveLength(0);
    expect(
      await t.raw`select 1 from role_assignments where subject_id = ${userRole.user_id as string} and role_id = ${userRole.role_id as string}`,
    ).toHaveLength(0);
    const again = await importDocument(t.client, sync);
    expect(again.revisionAfter).toBe(again.revisionBefore);
    expect(again.sections.MEMBERSHIP).toEqual({ inserted: 0, updated: 0, unchanged: 1, deleted: 0 });
  });

  it("a deletion the database refuses names its record and writes nothing", async () => {
    const t = await db();
    await importDocument(t.client, demo());
    const transfer = demo().OWNERSHIP_TRANSFER?.[0] as { from_membership_id: string };
    const before = await t.raw`select count(*)::int as n from staff`;
    const err = await importDocument(t.client, {
      STAFF: [{ id: id("04", 97), logical_key: "staff:never" }],
      MEMBERSHIP: [{ id: transfer.from_membership_id, $delete: true }],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportError);
    expect((err as Error).message).toMatch(
      new RegExp(`MEMBERSHIP\\[0\\] \\(id=${transfer.from_membership_id}\\): cannot be deleted while other records refer to it: .*ownership_transfers`),
    );
    expect(await t.raw`select count(*)::int as n from staff`).toEqual(before);
  });

  it("a section of several statements (each sent before the last one's answer): all written, and a refusal in its first names the record", async () => {
    // 12,000 records: UserRole takes two statements, the second sent while the first runs.
    const doc = importBenchDocument(12_000);
    const roles = doc.UserRole as Array<{ user_id: string; role_id: string }>;
    expect(roles.length).toBeGreaterThan(CHUNK_ROWS);
    const good = await db();
    const s = await importDocument(good.client, structuredClone(doc));
    expect(s.sections.UserRole).toEqual({ inserted: roles.length, updated: 0, unchanged: 0, deleted: 0 });
    expect(await good.raw`select count(*)::int as n from role_assignments`).toEqual([{ n: roles.length + (doc.UserOrganizationInfo as unknown[]).length }]); // and one grant per place
    const bad = await db();
    const broken = structuredClone(doc);
    const rec = (broken.UserRole as typeof roles)[7] as { user_id: string };
    rec.user_id = id("ff", 7);
    const err = await importDocument(bad.client, broken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportError);
    expect((err as Error).message).toContain(`UserRole[7] (user_id=${id("ff", 7)}`);
    expect((err as Error).message).not.toMatch(/insert into|select /i);
    expect(await bad.raw`select (select count(*) from role_assignments)::int as a, (select count(*) from users)::int as u`).toEqual([{ a: 0, u: 0 }]);
  });

  it("records are checked while earlier sections are written: a problem in a late record is reported whole, before a refusal, and nothing is written", async () => {
    // The UserRole records are checked while the sections before them are being written.
    const doc = importBenchDocument(12_000);
    const roles = doc.UserRole as Array<Record<string, unknown>>;
    const last = roles.length - 1;
    (roles[last] as Record<string, unknown>).role_id = "not-a-uuid";
    (roles[last - 1] as Record<string, unknown>).extra = 1;
    // The problems of the document checked whole before writing (as the importer did before).
    const expected = validateDocument(doc).problems;
    expect(expected).toEqual([
      expect.stringMatching(new RegExp(`^UserRole\\[${last - 1}\\] \\(user_id=[^)]*\\): unknown field "extra"`)),
      `UserRole[${last}] (user_id=${String(roles[last]?.user_id)}, role_id=not-a-uuid): role_id must be a UUID`,
    ]);
    const t = await db();
    const err = await importDocument(t.client, structuredClone(doc)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportError);
    expect((err as ImportError).problems).toEqual(expected);
    // An early record the database refuses (an unknown tenant) and the late problems: the problems are reported, as when checked first.
    const refused = structuredClone(doc);
    (refused.ORGANIZATION?.[0] as Record<string, unknown>).tenant_id = id("ff", 1);
    expect(await importDocument(t.client, refused).catch((e: unknown) => (e as ImportError).problems)).toEqual(expected);
    expect(await t.raw`select (select count(*) from users)::int as u, (select count(*) from organizations)::int as o`).toEqual([{ u: 0, o: 0 }]);
    // And when the database cannot be reached at all.
    const gone = createPostgresClient({ url: "postgres://postgres@127.0.0.1:1/none", poolMax: 1, logger: createLogger("silent") });
    try {
      expect(await importDocument(gone, structuredClone(doc)).catch((e: unknown) => (e as ImportError).problems)).toEqual(expected);
    } finally {
      await gone.close();
    }
  });

  it("checks deletion records and refuses RateLimitCounter records, every problem at once", async () => {
    const t = await db();
    const err = await importDocument(t.client, {
      STAFF: [{ $delete: true }, { id: id("04", 1), logical_key: "x", $delete: "yes" }],
      RateLimitPolicy: [{ $delete: true, scope: "user" }],
      RateLimitCounter: [{ policy_id: 1, key_id: "k", window_start: "2026-01-01T00:00:00Z", count: 42 }],
    }).catch((e: unknown) => e);
    expect((err as ImportError).problems).toEqual([
      "STAFF[0]: a deletion needs id",
      "STAFF[1] (id=00000004-0000-4000-8000-000000000001): $delete must be true or false",
      "RateLimitPolicy[0]: a deletion needs policy_id or name",
      expect.stringMatching(/^section RateLimitCounter \(1 records\): rate-limit counters cannot be imported: live counts are kept by the counter store/),
    ]);
  });

  it("a large import logs one RELOAD row; a following replica reloads a snapshot at it and decides like a fresh load", async () => {
    const t = await db();
    const r = rng(SEED + 1);
    const data = generateDataset(r, { users: 60, assignments: 400 });
    await insertDataset(t.raw, data);
    const doc = await exported(t.client);
    const logger = createLogger("silent");
    const feed = await startChangeFeed(t.client, logger, 60_000);
    const live = await startLiveEngine(t.client, feed, logger);
    try {
      // A full sync: every assignment deactivated, a few deleted.
      const assignments = doc.ROLE_ASSIGNMENT as Array<Record<string, unknown>>;
      const sync = {
        ROLE_ASSIGNMENT: assignments.map((a, i) => (i % 5 === 0 ? { id: a.id, $delete: true } : { ...a, active: !a.active })),
      };
      const loadsBefore = live.stats.loads;
      const s = await importDocument(t.client, sync, { changeLog: "reload" });
      expect(s.changeLog).toBe("reload");
      expect(await t.raw`select op, table_name from authz_changes where revision = ${s.revisionAfter}`).toEqual([{ op: "RELOAD", table_name: "authz_import" }]);
      // Watch reads the same row (and hands it to every watcher, whatever its filters).
      const logged = await readChanges(t.client, { revision: BigInt(s.revisionBefore) }, BigInt(s.revisionAfter), 10);
      expect(logged).toMatchObject([{ op: "RELOAD", table: "authz_import", tenantId: null }]);
      const engine = await live.atLeast(BigInt(s.revisionAfter), 10_000);
      expect(live.stats.loads).toBe(loadsBefore + 1);
      const fresh = await loadSnapshot(t.client);
      expect(engine.revision).toBe(fresh.revision);
      let differ = 0;
      for (const c of randomChecks(r, data, 3000)) {
        const subject = { type: c.subjectType as "user", id: c.subjectId };
        const resource = { type: c.resourceType as "organization", id: c.resourceId };
        const x = engine.check(subject, c.permission, resource, data.now.getTime());
        const y = fresh.check(subject, c.permission, resource, data.now.getTime());
        if (x.allowed !== y.allowed || x.reason !== y.reason) differ++;
      }
      expect(differ).toBe(0);
    } finally {
      live.stop();
      await feed.stop();
    }
  });
});

describe("change log of an import", () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await db();
  });
  it("a small import logs its rows (replicas apply them), and an unchanged re-import with RELOAD logs nothing", async () => {
    const s = await importDocument(t.client, demo());
    expect(s.changeLog).toBe("rows");
    const ops = await t.raw`select distinct op from authz_changes where revision = ${s.revisionAfter} order by op`;
    expect(ops).toEqual([{ op: "INSERT" }, { op: "UPDATE" }]);
    const again = await importDocument(t.client, demo(), { changeLog: "reload" });
    expect(again.revisionAfter).toBe(again.revisionBefore);
    expect(await t.raw`select 1 from authz_changes where op = 'RELOAD'`).toHaveLength(0);
  });
});
