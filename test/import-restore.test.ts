// The importer's restore mode (src/store/import-restore.ts): into an empty
// directory, the big tables are written without their secondary indexes and
// foreign keys, which are built at the end of the same transaction. It must
// write exactly what the usual import writes, leave the schema exactly as it
// was (also when the import is refused or a dry run), name a bad record as
// the usual import does, and step aside (write as usual) when the directory
// has rows, when its locks are not granted in time, or when the importing
// role may not drop an index. Real Postgres.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { projectPath } from "../src/paths.js";
import { exportDirectory } from "../src/store/export.js";
import { ImportError, importDocument } from "../src/store/import.js";
import { migrate } from "../src/store/migrate.js";
import { createPgliteClient } from "../src/store/pglite-client.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import type { SqlClient } from "../src/store/sql.js";
import { databasesOfThisFile, type TestDatabase } from "./support/db.js";
import { holdInTransaction } from "./support/hold.js";
import { generateDataset, insertDataset, rng } from "./support/random-data.js";

const SEED = Number(process.env.IMPORT_SEED ?? Math.floor(Math.random() * 2 ** 31));
type Doc = Record<string, Array<Record<string, unknown>>>;
const demo = () => JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as Doc;

const db = databasesOfThisFile();

async function exported(c: SqlClient): Promise<Record<string, string[]>> {
  const doc: Record<string, string[]> = {};
  await exportDirectory(c, {}, (p) => {
    doc[p.section] = [...(doc[p.section] ?? []), ...p.records.map((r) => JSON.stringify(r))];
  });
  // Rows in key order; role_permissions' generated ids differ between databases, so every section compares as a set.
  for (const k of Object.keys(doc)) doc[k]?.sort();
  return doc;
}

/** The directory as an import document. */
async function exportedDoc(c: SqlClient): Promise<Doc> {
  const d = await exported(c);
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.map((r) => JSON.parse(r) as Record<string, unknown>)]));
}

/** Every index, constraint (with whether it is validated) and trigger of the schema, as text. */
async function schema(t: TestDatabase): Promise<string[]> {
  const rows = await t.raw<{ d: string }[]>`
    select tablename || ' ' || indexdef as d from pg_indexes where schemaname = 'public'
    union all
    select conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
      from pg_constraint where connamespace = 'public'::regnamespace
    union all
    select tgrelid::regclass || ' ' || tgname || ' ' || tgenabled::text from pg_trigger where not tgisinternal`;
  return rows.map((r) => r.d).sort();
}

/** The problems an import of doc reports (it must be refused). */
async function refusal(t: TestDatabase, doc: Doc, restore: boolean): Promise<readonly string[]> {
  const err = await importDocument(t.client, structuredClone(doc), { restore }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ImportError);
  return (err as ImportError).problems;
}

/**
 * Imports doc in restore mode and as usual, each into an empty database: both refused with the same
 * problems, the first matching `record`; the restored database keeps its schema and no assignment.
 */
async function refusedAlike(doc: Doc, record: RegExp): Promise<TestDatabase> {
  const [restored, usual] = [await db(), await db()];
  const before = await schema(restored);
  const problems = await refusal(restored, doc, true);
  expect(problems.join("\n")).toMatch(record);
  expect(problems).toEqual(await refusal(usual, doc, false));
  expect(await schema(restored)).toEqual(before);
  expect(await count(restored, "role_assignments")).toBe(0);
  return restored;
}

/** The same document imported into `restored` in restore mode and into `usual` the usual way: both reports, which must agree. */
async function importBothWays(restored: TestDatabase, usual: TestDatabase, doc: Doc) {
  const a = await importDocument(restored.client, structuredClone(doc), { restore: true });
  const b = await importDocument(usual.client, structuredClone(doc), { restore: false });
  expect([a.writeMode, b.writeMode]).toEqual(["restore", "upsert"]);
  expect(a.sections).toEqual(b.sections);
  return { a, b };
}

async function count(t: TestDatabase, table: string): Promise<number> {
  const [r] = await t.raw.unsafe(`select count(*)::int as n from ${table}`);
  return Number(r?.n);
}

/** The rows of the tables restore mode writes without their unique keys, in order: no generated id (a permission by its key), a default time as "now". */
async function keylessRows(t: TestDatabase): Promise<string[]> {
  const rows = await t.raw<{ r: string }[]>`
    select 'a ' || concat_ws(' ', subject_type, subject_id, role_id, scope_type, scope_id, active, valid_until,
      case when assigned_at < now() - interval '1 hour' then assigned_at::text else 'now' end) as r from role_assignments
    union all select 'g ' || concat_ws(' ', g.role_id, p.organization_id, p.key) from role_permissions g join permissions p on p.id = g.permission_id
    union all select 'p ' || concat_ws(' ', user_id, organization_id, primary_role_id) from user_organizations`;
  return rows.map((x) => x.r).sort();
}

/** A v4-shaped id: kind in the first group, n in the last. */
const uid = (kind: number, n: number) => `${kind.toString(16).padStart(8, "0")}-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;

describe(`import restore mode (seed ${SEED})`, () => {
  it("writes the same rows and counts as the usual import, and leaves the same indexes, keys and triggers", async () => {
    const source = await db();
    await insertDataset(source.raw, generateDataset(rng(SEED), { users: 80, assignments: 600 }));
    const doc = await exportedDoc(source.client);
    const [restored, usual] = [await db(), await db()];
    const before = await schema(restored);
    await importBothWays(restored, usual, doc);
    expect(await exported(restored.client)).toEqual(await exported(usual.client));
    expect(await schema(restored)).toEqual(before);
    expect(await schema(usual)).toEqual(before);
    // The directory has rows now: the same file again is written as usual, and changes nothing.
    const again = await importDocument(restored.client, structuredClone(doc), { restore: true });
    expect(again.writeMode).toBe("upsert");
    expect(Object.values(again.sections).every((s) => s.inserted + s.updated === 0)).toBe(true);
  });

  it("names a record whose reference the document does not hold, as the usual import does, and writes nothing", async () => {
    const doc = demo();
    // A role assignment for a user no record (and no row) holds: only its foreign key can refuse it.
    (doc.ROLE_ASSIGNMENT as Array<Record<string, unknown>>).push({
      ...(doc.ROLE_ASSIGNMENT?.[0] as Record<string, unknown>),
      id: "00000012-0000-4000-8000-0000000000ff",
      account_id: "00000005-0000-4000-8000-0000000000ff",
    });
    const restored = await refusedAlike(doc, /ROLE_ASSIGNMENT\[6\]/);
    expect(await count(restored, "users")).toBe(0);
  });

  it("names a record the database refuses while writing (a taken slug), as the usual import does", async () => {
    const doc = demo();
    const orgs = doc.ORGANIZATION as Array<Record<string, unknown>>;
    orgs.push({ ...(orgs[0] as Record<string, unknown>), id: "00000002-0000-4000-8000-0000000000ff", name: "Acme Again" });
    const [restored, usual] = [await db(), await db()];
    const before = await schema(restored);
    const problems = await refusal(restored, doc, true);
    expect(problems.join("\n")).toMatch(/ORGANIZATION\[2\]/);
    expect(problems).toEqual(await refusal(usual, doc, false));
    // The second pass (the usual import) reports its progress as such.
    const again: boolean[] = [];
    await importDocument(restored.client, structuredClone(doc), { restore: true, onProgress: (p) => again.push(p.again === true) }).catch(() => {});
    expect(again).toContain(true);
    expect(again[0]).toBe(false);
    expect(await schema(restored)).toEqual(before);
    expect(await count(restored, "organizations")).toBe(0);
  });

  it("names the first refused record when a later one is refused by the importer itself, as the usual import does", async () => {
    const doc = demo();
    // PRINCIPAL (written early) names an account no record holds: only its foreign key refuses it.
    (doc.PRINCIPAL as Array<Record<string, unknown>>)[0] = {
      ...(doc.PRINCIPAL?.[0] as Record<string, unknown>),
      account_id: "00000005-0000-4000-8000-0000000000ff",
    };
    // UserRole (written later) names a role that does not exist: the importer's lookup refuses it.
    (doc.UserRole as Array<Record<string, unknown>>)[0] = {
      ...(doc.UserRole?.[0] as Record<string, unknown>),
      role_id: "00000009-0000-4000-8000-0000000000ff",
    };
    const usual = await refusal(await db(), doc, false);
    expect(usual.join("\n")).toMatch(/^PRINCIPAL\[0\]/);
    expect(await refusal(await db(), doc, true)).toEqual(usual);
  });

  it("holds a second write of a row back and runs it as the usual upsert once the keys are back", async () => {
    const doc = demo();
    // The demo names one assignment in UserOrganizationInfo (user_role) and in UserRole; add a grant
    // given twice and an assignment written three times (each write sets other fields: the last wins).
    const ur = doc.UserRole as Array<Record<string, unknown>>;
    ur.push({ ...(ur[1] as Record<string, unknown>), valid_until: "2031-01-01T00:00:00Z" }, { ...(ur[1] as Record<string, unknown>), active: false });
    const rp = doc.RolePermission as Array<Record<string, unknown>>;
    rp.push({ ...(rp[0] as Record<string, unknown>) });
    const [restored, usual] = [await db(), await db()];
    const before = await schema(restored);
    const { b } = await importBothWays(restored, usual, doc);
    expect(b.sections.UserRole).toMatchObject({ inserted: 3, updated: 2 });
    expect(await keylessRows(restored)).toEqual(await keylessRows(usual));
    expect(await schema(restored)).toEqual(before);
  });

  it("inserts the new rows its filter takes for written ones (a filter filled past its size by many grants per record)", async () => {
    // 400 places of one organization, each granting 60 roles: 24,000 role assignments from 861 records.
    // The filter is sized by records (at its 65,536-bit floor): about one new assignment in six looks
    // written already and is held back, then inserted by its upsert.
    const roles = Array.from({ length: 60 }, (_, r) => ({ role_id: uid(9, r), org_id: uid(2, 1), name: `Role ${r}`, key: `role-${r}` }));
    const users = Array.from({ length: 400 }, (_, u) => ({ user_id: uid(3, u), email: `u${u}@example.test` }));
    const doc: Doc = {
      TENANT: [{ id: uid(1, 1), name: "T", slug: "t" }],
      ORGANIZATION: [{ id: uid(2, 1), tenant_id: uid(1, 1), name: "O", slug: "o", role_structure: "multi_role" }],
      User: users,
      Role: roles,
      UserOrganizationInfo: users.map((u) => ({
        user_id: u.user_id,
        org_id: uid(2, 1),
        user_role: "role-0",
        additional_roles: roles.slice(1).map((r) => r.key),
      })),
    };
    const [restored, usual] = [await db(), await db()];
    const { a } = await importBothWays(restored, usual, doc);
    expect(a.sections.UserOrganizationInfo).toMatchObject({ inserted: 400 });
    expect(await count(restored, "role_assignments")).toBe(24_000);
    expect(await keylessRows(restored)).toEqual(await keylessRows(usual));
  });

  it("names a record that repeats another's row under another key, as the usual import does", async () => {
    const doc = demo();
    // A second ROLE_ASSIGNMENT with a new id and the first one's subject, role and scope: the usual import
    // refuses it (the assignment exists); restore mode finds it when it builds the key back, and reruns.
    const ra = doc.ROLE_ASSIGNMENT as Array<Record<string, unknown>>;
    ra.push({ ...(ra[0] as Record<string, unknown>), id: uid(0x12, 0xff) });
    await refusedAlike(doc, /ROLE_ASSIGNMENT\[6\]/);
  });

  it("leaves nothing behind after a dry run", async () => {
    const t = await db();
    const before = await schema(t);
    const s = await importDocument(t.client, demo(), { restore: true, dryRun: true });
    expect(s.writeMode).toBe("restore");
    expect(s.sections.ROLE_ASSIGNMENT?.inserted).toBe(6);
    expect(await schema(t)).toEqual(before);
    expect(await count(t, "role_assignments")).toBe(0);
  });

  it("writes as usual when a reader holds a table past the lock wait", async () => {
    const t = await db();
    const reader = await holdInTransaction(t.raw, (q) => q`lock table users in access share mode`);
    try {
      const s = await importDocument(t.client, demo(), { restore: true });
      expect(s.writeMode).toBe("upsert");
      expect(await count(t, "role_assignments")).toBeGreaterThan(6);
    } finally {
      await reader.release();
    }
  });

  it("writes as usual for a role that may write the tables but not drop their indexes", async () => {
    const t = await db();
    const role = `authz_restore_${randomBytes(4).toString("hex")}`;
    await t.raw.unsafe(`create role ${role} login`);
    try {
      await t.raw.unsafe(`grant usage on schema public to ${role};
        grant select, insert, update, delete, truncate, references, trigger on all tables in schema public to ${role};
        grant usage, select, update on all sequences in schema public to ${role}`);
      const url = new URL(t.url);
      url.username = role;
      const c = createPostgresClient({ url: url.toString(), poolMax: 1, logger: createLogger("silent") });
      try {
        const before = await schema(t);
        const s = await importDocument(c, demo(), { restore: true });
        expect(s.writeMode).toBe("upsert");
        expect(await count(t, "role_assignments")).toBeGreaterThan(6);
        expect(await schema(t)).toEqual(before);
      } finally {
        await c.close();
      }
    } finally {
      await t.raw.unsafe(`drop owned by ${role}; drop role ${role}`);
    }
  });

  it("is the default for an import that logs one RELOAD row, and not for a smaller one", async () => {
    const [small, large] = [await db(), await db()];
    expect((await importDocument(small.client, demo())).writeMode).toBe("upsert");
    const s = await importDocument(large.client, demo(), { changeLog: "reload" });
    expect([s.changeLog, s.writeMode]).toEqual(["reload", "restore"]);
    expect(await count(large, "role_assignments")).toBe(await count(small, "role_assignments"));
  });

  it("works on the embedded store (PGlite), with the same rows as the usual import", async () => {
    // The demo's exported form: every id and time fixed, so that both imports write the same rows.
    const source = await db();
    await importDocument(source.client, demo());
    const doc = await exportedDoc(source.client);
    const [a, b] = [await createPgliteClient(), await createPgliteClient()];
    try {
      await migrate(a);
      await migrate(b);
      const x = await importDocument(a, structuredClone(doc), { restore: true });
      const y = await importDocument(b, structuredClone(doc), { restore: false });
      expect([x.writeMode, y.writeMode]).toEqual(["restore", "upsert"]);
      expect(await exported(a)).toEqual(await exported(b));
      const defs = (c: SqlClient) => c.query<{ d: string }>("select indexdef as d from pg_indexes where schemaname = 'public' order by 1");
      expect(await defs(a)).toEqual(await defs(b));
    } finally {
      await a.close();
      await b.close();
    }
  });
});
