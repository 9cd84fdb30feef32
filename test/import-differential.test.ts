// Restore mode against the usual import, differentially: documents built from
// the demo by random mutations (rows written 2-4 times across and within
// sections with other optional fields, one assignment named by UserRole and a
// place, one grant by RolePermission and ROLE_PERMISSION, repeated
// ROLE_ASSIGNMENT ids, repeats under another key, dangling references,
// records the database refuses, dry runs) go into two fresh databases, one
// with { restore: true } and one with { restore: false }: the same summary
// counts, the same rows (generated ids and default times aside), the same
// problems when refused, and the schema as it was. Seeded: IMPORT_SEED.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { createLogger } from "../src/logger.js";
import { projectPath } from "../src/paths.js";
import { TRACKED_TABLES } from "../src/store/change-stream.js";
import { ImportError, type ImportSummary, importDocument } from "../src/store/import.js";
import { Seen } from "../src/store/import-held.js";
import { migrate } from "../src/store/migrate.js";
import { createPgliteClient } from "../src/store/pglite-client.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import type { SqlClient } from "../src/store/sql.js";
import { type Rng, rng } from "./support/random-data.js";

const SEED = Number(process.env.IMPORT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ROUNDS = Number(process.env.IMPORT_DIFF_ROUNDS ?? 4);
type Rec = Record<string, unknown>;
type Doc = Record<string, Rec[]>;
const demo = () => JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as Doc;

interface Db {
  name: string;
  client: SqlClient;
  raw: postgres.Sql;
}

// Databases cloned from the run's migrated template, named after it.
const made: Db[] = [];
async function db(): Promise<Db> {
  const tpl = inject("templateDb");
  const name = `${tpl}_d${randomBytes(4).toString("hex")}`;
  const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name} template ${tpl}`);
  } finally {
    await admin.end();
  }
  const u = new URL(inject("adminUrl"));
  u.pathname = `/${name}`;
  const d = {
    name,
    client: createPostgresClient({ url: u.toString(), poolMax: 2, logger: createLogger("silent") }),
    raw: postgres(u.toString(), { max: 1, onnotice: () => {} }),
  };
  made.push(d);
  return d;
}
async function drop(d: Db): Promise<void> {
  await d.client.close();
  await d.raw.end({ timeout: 2 });
  const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${d.name} with (force)`);
  } finally {
    await admin.end();
  }
}
afterAll(async () => {
  for (const d of made.splice(0)) await drop(d);
});

/** Every index, constraint (validated or not) and trigger of the schema. */
async function schema(c: SqlClient): Promise<string[]> {
  const rows = await c.query<{ d: string }>(`
    select tablename || ' ' || indexdef as d from pg_indexes where schemaname = 'public'
    union all
    select conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
      from pg_constraint where connamespace = 'public'::regnamespace
    union all
    select tgrelid::regclass || ' ' || tgname || ' ' || tgenabled::text from pg_trigger where not tgisinternal`);
  return rows.map((r) => r.d).sort();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Every row of the tables an import writes: a uuid the document does not hold as "gen", a time of the last hour as "now". */
async function rows(c: SqlClient, doc: Doc): Promise<string[]> {
  const text = JSON.stringify(doc).toLowerCase();
  const norm = (t: string, row: Rec | null): string => {
    if (row === null) return "null";
    const o: Rec = {};
    for (const [k, v] of Object.entries(row)) {
      // A serial id: a first pass rolled back (restore mode's, run again as usual) has used some numbers.
      if (t === "rate_limit_assignments" && k === "id") o[k] = "serial";
      else if (typeof v === "string" && UUID.test(v) && !text.includes(v)) o[k] = "gen";
      else if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v) && Math.abs(Date.parse(v) - Date.now()) < 3_600_000) o[k] = "now";
      else o[k] = v;
    }
    return JSON.stringify(o);
  };
  const out: string[] = [];
  for (const t of [...TRACKED_TABLES, "rate_limit_counters"]) {
    const rs = await c.query<{ r: string }>(`select to_jsonb(x)::text as r from ${t} x`);
    for (const { r } of rs) out.push(`${t} ${norm(t, JSON.parse(r) as Rec)}`);
  }
  // The change log, as a set: the held writes come last in restore mode.
  const log = await c.query<{ t: string; op: string; o: string | null; n: string | null; r: string | null }>(
    "select table_name as t, op, old_row::text as o, new_row::text as n, revision::text as r from authz_changes",
  );
  for (const x of log) {
    const row = (j: string | null) => (j === null ? null : (JSON.parse(j) as Rec));
    out.push(`log ${x.r} ${x.t} ${x.op} ${x.op === "RELOAD" ? `${x.o} ${x.n}` : `${norm(x.t, row(x.o))} ${norm(x.t, row(x.n))}`}`);
  }
  return out.sort();
}

type Result = { summary: Pick<ImportSummary, "sections" | "dryRun" | "changeLog"> } | { problems: readonly string[] } | { error: string };

async function run(c: SqlClient, doc: Doc, restore: boolean, dryRun: boolean, reload: boolean): Promise<[Result, string | undefined]> {
  try {
    const s = await importDocument(c, structuredClone(doc), { restore, dryRun, ...(reload ? { changeLog: "reload" as const } : {}) });
    return [{ summary: { sections: s.sections, dryRun: s.dryRun, changeLog: s.changeLog } }, s.writeMode];
  } catch (err) {
    if (err instanceof ImportError) return [{ problems: err.problems }, undefined];
    return [{ error: String(err) }, undefined];
  }
}

/** Imports doc both ways (restore into a, usual into b); expects the same outcome, rows and schema. */
async function compare(a: SqlClient, b: SqlClient, doc: Doc, dryRun: boolean, reload = false): Promise<Result> {
  const before = await schema(a);
  const [x, modeA] = await run(a, doc, true, dryRun, reload);
  const [y] = await run(b, doc, false, dryRun, reload);
  if (JSON.stringify(x) !== JSON.stringify(y)) expect.fail(`restore ${JSON.stringify(x)}\nusual   ${JSON.stringify(y)}`);
  // (A document restore mode cannot take, a row repeated under another key, is written again as usual: "upsert".)
  if ("summary" in x) expect(["restore", "upsert"]).toContain(modeA);
  const [ra, rb] = [await rows(a, doc), await rows(b, doc)];
  const onlyA = ra.filter((r) => !rb.includes(r));
  const onlyB = rb.filter((r) => !ra.includes(r));
  if (onlyA.length + onlyB.length > 0) expect.fail(`rows only after restore:\n${onlyA.join("\n")}\nrows only after usual:\n${onlyB.join("\n")}`);
  expect(await schema(a)).toEqual(before);
  return x;
}

/** compare() into two fresh databases. */
async function differ(doc: Doc, dryRun = false, reload = false): Promise<Result> {
  const [a, b] = [await db(), await db()];
  try {
    return await compare(a.client, b.client, doc, dryRun, reload);
  } finally {
    made.splice(made.indexOf(a), 1);
    made.splice(made.indexOf(b), 1);
    await drop(a);
    await drop(b);
  }
}

/** compare() into two fresh embedded stores (PGlite). */
async function differEmbedded(doc: Doc, dryRun = false): Promise<Result> {
  const [a, b] = [await createPgliteClient(), await createPgliteClient()];
  try {
    await migrate(a);
    await migrate(b);
    return await compare(a, b, doc, dryRun);
  } finally {
    await a.close();
    await b.close();
  }
}

/** A v4-shaped id: kind in the first group, n in the last. */
const uid = (kind: number, n: number) => `${kind.toString(16).padStart(8, "0")}-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;

/** Random mutations of the demo, each a small story the importer must tell the same way in both modes. */
function mutate(doc: Doc, g: Rng): string[] {
  const r = g.next;
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const sec = (k: string) => (doc[k] ??= []);
  const insertAt = (k: string, rec: Rec) => sec(k).splice(Math.floor(r() * (sec(k).length + 1)), 0, rec);
  const times = ["2022-02-02T00:00:00Z", "2031-01-01T00:00:00Z", null, "2024-06-01T12:30:00Z"];
  const vary = (rec: Rec, fields: string[]): Rec => {
    const o = { ...rec };
    for (const f of fields) {
      if (r() < 0.5) continue;
      if (f === "active") o[f] = r() < 0.5;
      else if (f === "description") o[f] = pick(["one", "two", null, "three"]);
      else if (f === "assigned_at") o[f] = pick(times.filter((t) => t !== null));
      else o[f] = pick(times);
    }
    return o;
  };
  const roleIdOf = (org: string, key: string) => (sec("Role").find((x) => x.org_id === org && x.key === key)?.role_id as string | undefined) ?? undefined;
  const permKey = (pid: string) => sec("Permission").find((p) => p.permission_id === pid)?.name as string | undefined;
  const roleOrgOf = (rid: string) => sec("Role").find((x) => x.role_id === rid)?.org_id as string | undefined;
  let nextId = 0x100;
  const log: string[] = [];
  const n = 1 + Math.floor(r() * 5);
  for (let m = 0; m < n; m++) {
    const kind = Math.floor(r() * 17);
    log.push(String(kind));
    switch (kind) {
      case 0: {
        // One UserRole written 2-4 times, other optional fields each time.
        const base = pick(sec("UserRole"));
        for (let c = 1 + Math.floor(r() * 3); c > 0; c--) insertAt("UserRole", vary(base, ["valid_until", "active", "assigned_at"]));
        break;
      }
      case 1: {
        // A UserRole naming a place's user_role or additional role.
        const p = pick(sec("UserOrganizationInfo"));
        const keys = [p.user_role, ...((p.additional_roles as string[]) ?? [])].filter((k): k is string => typeof k === "string");
        const rid = keys.length ? roleIdOf(p.org_id as string, pick(keys)) : undefined;
        if (rid) insertAt("UserRole", vary({ user_id: p.user_id, role_id: rid }, ["valid_until", "active", "assigned_at"]));
        break;
      }
      case 2: {
        // A place given again, with additional roles (the same assignments as others).
        const p = pick(sec("UserOrganizationInfo"));
        const org = p.org_id as string;
        const keys = sec("Role")
          .filter((x) => x.org_id === org)
          .map((x) => x.key as string);
        const q: Rec = { user_id: p.user_id, org_id: org };
        if (r() < 0.6) q.user_role = pick(keys);
        if (r() < 0.6) q.additional_roles = keys.filter(() => r() < 0.4);
        insertAt("UserOrganizationInfo", q);
        break;
      }
      case 3: {
        // A grant given again in RolePermission.
        insertAt("RolePermission", { ...pick(sec("RolePermission")) });
        break;
      }
      case 4: {
        // A RolePermission grant given again in ROLE_PERMISSION (by key), once or twice.
        const g = pick(sec("RolePermission"));
        const key = permKey(g.permission_id as string);
        if (key && roleOrgOf(g.role_id as string)) {
          const id = uid(0x11, nextId++);
          for (let c = 1 + Math.floor(r() * 2); c > 0; c--) insertAt("ROLE_PERMISSION", { id, role_id: g.role_id, capability_key: key });
        }
        break;
      }
      case 5: {
        // A ROLE_ASSIGNMENT repeated with its id, other fields each time.
        const a = pick(sec("ROLE_ASSIGNMENT"));
        for (let c = 1 + Math.floor(r() * 3); c > 0; c--) insertAt("ROLE_ASSIGNMENT", vary(a, ["valid_until", "active", "assigned_at"]));
        break;
      }
      case 6: {
        // A ROLE_ASSIGNMENT repeating another's row under a new id (refused).
        const a = pick(sec("ROLE_ASSIGNMENT"));
        insertAt("ROLE_ASSIGNMENT", { ...a, id: uid(0x12, nextId++) });
        break;
      }
      case 7: {
        // A ROLE_ASSIGNMENT naming a place's assignment (user subject) under a new id.
        const p = pick(sec("UserOrganizationInfo"));
        const rid = typeof p.user_role === "string" ? roleIdOf(p.org_id as string, p.user_role) : undefined;
        if (rid) {
          insertAt("ROLE_ASSIGNMENT", {
            id: uid(0x12, nextId++),
            subject_type: "user",
            subject_id: p.user_id,
            role_id: rid,
            scope_type: "organization",
            scope_id: p.org_id,
            active: r() < 0.5,
          });
        }
        break;
      }
      case 8: {
        // A dangling reference.
        const which = Math.floor(r() * 4);
        if (which === 0) insertAt("UserRole", { user_id: uid(3, 0xdead), role_id: pick(sec("UserRole")).role_id });
        else if (which === 1) insertAt("RolePermission", { role_id: pick(sec("RolePermission")).role_id, permission_id: uid(0x10, 0xdead) });
        else if (which === 2) insertAt("ROLE_ASSIGNMENT", { ...pick(sec("ROLE_ASSIGNMENT")), id: uid(0x12, nextId++), scope_id: uid(7, 0xdead) });
        else insertAt("UserOrganizationInfo", { user_id: uid(3, 0xdead), org_id: pick(sec("UserOrganizationInfo")).org_id });
        break;
      }
      case 9: {
        // A taken slug on a place.
        const p = pick(sec("UserOrganizationInfo"));
        const other = sec("ORGANIZATION").find((o) => o.id !== p.org_id);
        if (other) insertAt("UserOrganizationInfo", { user_id: p.user_id, org_id: p.org_id, url_safe_org_name: other.slug });
        break;
      }
      case 10: {
        // A second role for a user of a single-role organization.
        const p = pick(sec("UserOrganizationInfo"));
        insertAt("UserOrganizationInfo", { user_id: p.user_id, org_id: p.org_id, additional_roles: ["admin", "member"] });
        break;
      }
      case 11: {
        // A Role and a Permission written again with another description.
        insertAt("Role", vary(pick(sec("Role")), ["description"]));
        insertAt("Permission", vary(pick(sec("Permission")), ["description"]));
        break;
      }
      case 12: {
        // A ROLE_ASSIGNMENT id reused for another row.
        const [a, b] = [pick(sec("ROLE_ASSIGNMENT")), pick(sec("ROLE_ASSIGNMENT"))];
        insertAt("ROLE_ASSIGNMENT", { ...b, id: a.id });
        break;
      }
      case 13: {
        // A ROLE_PERMISSION id reused for another grant.
        const a = pick(sec("ROLE_PERMISSION"));
        const b = pick(sec("ROLE_PERMISSION"));
        insertAt("ROLE_PERMISSION", { ...b, id: a.id });
        break;
      }
      case 15: {
        // A global role given to a user in UserRole 2-3 times (no scope: NULLS NOT DISTINCT), maybe by a ROLE_ASSIGNMENT too.
        const u = pick(sec("User")).user_id;
        const rid = sec("ROLE").find((x) => x.key === "support")?.id;
        for (let c = 2 + Math.floor(r() * 2); c > 0; c--) insertAt("UserRole", vary({ user_id: u, role_id: rid }, ["valid_until", "active"]));
        if (r() < 0.5)
          insertAt("ROLE_ASSIGNMENT", { id: uid(0x12, nextId++), subject_type: "user", subject_id: u, role_id: rid, scope_type: "global", scope_id: null });
        break;
      }
      case 16: {
        // A place naming one role several times (user_role among additional_roles, and twice there).
        const p = pick(sec("UserOrganizationInfo"));
        const keys = sec("Role")
          .filter((x) => x.org_id === p.org_id)
          .map((x) => x.key as string);
        const k = pick(keys);
        insertAt("UserOrganizationInfo", { user_id: p.user_id, org_id: p.org_id, user_role: k, additional_roles: [k, pick(keys), k] });
        break;
      }
      case 14: {
        // A place moved to another primary role by primary_role_id.
        const p = pick(sec("UserOrganizationInfo"));
        const rid = pick(sec("Role").filter((x) => x.org_id === p.org_id)).role_id;
        insertAt("UserOrganizationInfo", { user_id: p.user_id, org_id: p.org_id, primary_role_id: r() < 0.8 ? rid : null });
        break;
      }
    }
  }
  return log;
}

describe(`import restore mode against the usual import (seed ${SEED})`, () => {
  it("agrees on the demo with random repeats, conflicts and dangling references", async () => {
    const r = rng(SEED);
    const next = r.next;
    for (let round = 0; round < ROUNDS; round++) {
      const doc = demo();
      const log = mutate(doc, r);
      const dry = next() < 0.2;
      // One RELOAD row in the change log instead of the rows (as at 50,000 records), now and then.
      const reload = next() < 0.3;
      try {
        await differ(doc, dry, reload);
      } catch (err) {
        throw new Error(`round ${round} (mutations ${log.join(",")}${dry ? ", dry run" : ""}${reload ? ", reload" : ""}): ${(err as Error).message}`);
      }
    }
  });
});

describe(`import restore mode against the usual import, embedded (seed ${SEED})`, () => {
  it("agrees on the demo with random repeats on PGlite", async () => {
    const r = rng(SEED ^ 0x5eed);
    const doc = demo();
    const log = mutate(doc, r);
    if (process.env.IMPORT_DIFF_DEBUG) console.log("embedded mutations", log.join(","));
    try {
      await differEmbedded(doc, r.next() < 0.2);
    } catch (err) {
      throw new Error(`mutations ${log.join(",")}: ${(err as Error).message}`);
    }
  });
});

describe("import restore mode: refusals the random rounds found", () => {
  it("names a refused record on PGlite without a chunk sent behind it failing unhandled", async () => {
    // The chunk after a refused one fails at once in process (the transaction is aborted) while the
    // importer is still busy with the refused one: unhandled, Node ends the process (vitest: an error).
    const doc = demo();
    const ra = doc.ROLE_ASSIGNMENT as Rec[];
    ra.splice(1, 0, { ...(ra[0] as Rec), id: uid(0x12, 0xff) });
    const result = await differEmbedded(doc);
    expect(result).toMatchObject({ problems: [expect.stringMatching(/^ROLE_ASSIGNMENT\[1\].*conflicts with an existing record/)] });
  });

  it("writes in restore mode, in one pass, a ROLE_ASSIGNMENT and a later place naming one assignment", async () => {
    // Valid (the place's upsert finds the assignment the ROLE_ASSIGNMENT wrote): the place's write is held
    // back like any write of a row written already, not left to fail the key's rebuild (a second pass).
    const doc = demo();
    delete doc.UserRole;
    doc.ROLE_ASSIGNMENT?.push({
      id: uid(0x12, 0xaa),
      subject_type: "user",
      subject_id: uid(3, 1),
      role_id: uid(9, 0x11),
      scope_type: "organization",
      scope_id: uid(2, 1),
      active: false,
    });
    const [a, b] = [await db(), await db()];
    const x = await importDocument(a.client, structuredClone(doc), { restore: true });
    const y = await importDocument(b.client, structuredClone(doc), { restore: false });
    expect(x.writeMode).toBe("restore");
    expect(x.sections).toEqual(y.sections);
    expect(await rows(a.client, doc)).toEqual(await rows(b.client, doc));
  });

  it("names a place's taken slug, as the usual import does (not the places' missing key)", async () => {
    // A place after the first giving its organization another organization's slug: the organizations'
    // patch is refused, and the places are then written record by record, by upserts that need the
    // places' key restore mode has taken down.
    const doc = demo();
    doc.UserOrganizationInfo?.push({ user_id: uid(3, 5), org_id: uid(2, 1), url_safe_org_name: "acme-sales" });
    const result = await differ(doc);
    expect(result).toMatchObject({ problems: [expect.stringMatching(/^UserOrganizationInfo\[9\].*conflicts with an existing record/)] });
  });

  it("refuses, as the usual import does, a ROLE_ASSIGNMENT repeating under a new id a UserRole the filter held back", async () => {
    // 300 users with 12 of 60 roles each in UserRole (3,600 assignments, a filter at its 65,536-bit floor),
    // then one more UserRole the filter takes for written (found by running the filter as the import
    // does), then a ROLE_ASSIGNMENT with a new id and that UserRole's subject, role and scope. The usual
    // import refuses the ROLE_ASSIGNMENT (the assignment exists); restore mode, holding the UserRole back
    // and running it after, must not let the UserRole update the ROLE_ASSIGNMENT's row instead.
    const org = uid(2, 1);
    const roles = Array.from({ length: 60 }, (_, r) => ({ role_id: uid(9, r), org_id: org, name: `Role ${r}`, key: `role-${r}` }));
    const users = Array.from({ length: 300 }, (_, u) => ({ user_id: uid(3, u), email: `u${u}@example.test` }));
    const userRoles = users.flatMap((u, n) => Array.from({ length: 12 }, (_, k) => ({ user_id: u.user_id, role_id: uid(9, (n + k) % 60) })));
    const total = 2 + roles.length + users.length + userRoles.length + 2;
    const key = (u: string, r: string) => ["user", u, r, "organization", org].join("|");
    const ns = "role_assignments on constraint role_assignments_unique";
    const filter = new Seen(total);
    for (const x of userRoles) filter.add(ns, key(x.user_id, x.role_id));
    const used = new Set(userRoles.map((x) => key(x.user_id, x.role_id)));
    // Each candidate is tried on the filter as the UserRoles left it (its bits put back after).
    const bits = (filter as unknown as { words: Int32Array }).words;
    const saved = bits.slice();
    let extra: { user_id: string; role_id: string } | undefined;
    for (const u of users) {
      for (const r of roles) {
        const k = key(u.user_id, r.role_id);
        if (!extra && !used.has(k) && filter.add(ns, k)) extra = { user_id: u.user_id, role_id: r.role_id };
        bits.set(saved);
      }
    }
    expect(extra).toBeDefined();
    const x = extra as { user_id: string; role_id: string };
    const doc: Doc = {
      TENANT: [{ id: uid(1, 1), name: "T", slug: "t" }],
      ORGANIZATION: [{ id: org, tenant_id: uid(1, 1), name: "O", slug: "o", role_structure: "multi_role" }],
      User: users,
      Role: roles,
      UserRole: [...userRoles, { ...x, valid_until: "2031-01-01T00:00:00Z" }],
      ROLE_ASSIGNMENT: [
        { id: uid(0x12, 1), subject_type: "user", subject_id: x.user_id, role_id: x.role_id, scope_type: "organization", scope_id: org, active: false },
      ],
    };
    const result = await differ(doc);
    expect(result).toMatchObject({ problems: [expect.stringMatching(/^ROLE_ASSIGNMENT\[0\].*conflicts with an existing record/)] });
  });
});
