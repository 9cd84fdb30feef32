// Batches that the write pipeline sends without waiting between mutations:
// upserts are sent back to back (BatchWriter.pipelined), and a run of upserts
// of one table is one statement (BatchWriter.runKey/applyRun). They must give
// exactly what one mutation per write gives: the same results, refusals (with
// the mutation's index), rows and change log, and leave nothing on a refusal.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthzError } from "../src/errors.js";
import { type Mutation, type MutationResult, manageRoles } from "../src/store/manage-roles.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

const ORG = "0000be02-0000-4000-8000-000000000001";
const OTHER = "0000be02-0000-4000-8000-000000000002";
const MISSING = "0000be02-0000-4000-8000-0000000000ff";
const ID1 = "0000be02-0000-4000-8000-0000000000a1";
const ID2 = "0000be02-0000-4000-8000-0000000000a2";

const role = (organizationId: string | null, key: string, more: Partial<Extract<Mutation, { kind: "upsertRole" }>> = {}): Mutation => ({
  kind: "upsertRole",
  organizationId,
  key,
  ...more,
});
const perm = (organizationId: string | null, key: string, description?: string): Mutation => ({
  kind: "upsertPermission",
  organizationId,
  key,
  ...(description === undefined ? {} : { description }),
});

/** Batches in order; later ones update, clash with or repeat what earlier ones wrote. */
const BATCHES: Mutation[][] = [
  [role(ORG, "r1"), role(null, "g1", { name: "Global one", description: "d" }), role(ORG, "r2", { id: ID1 }), role(OTHER, "r1")],
  [role(ORG, "r1"), role(null, "g1", { description: "d2" }), role(ORG, "r3", { name: "Three" })],
  [role(ORG, "r4"), role(ORG, "r1", { id: ID2 })], // the key is held under another id
  [role(ORG, "r5"), role(ORG, "r6", { id: ID1 })], // the id is held by another key
  [perm(ORG, "p1"), perm(MISSING, "p2")], // the organization does not exist (a database refusal)
  [perm(ORG, "p1", "x"), perm(ORG, "p3"), perm(null, "p4")],
  [perm(ORG, "p1", "x"), perm(ORG, "p3")], // no-ops
  [perm(ORG, "p5"), perm(ORG, "p5", "again")], // a repeated key: applied one by one
  // Dependent mutations after pipelined upserts: they see the upserts before them.
  [
    role(ORG, "reader"),
    perm(ORG, "doc.read"),
    { kind: "grantPermission", role: { organizationId: ORG, key: "reader" }, permission: { organizationId: ORG, key: "doc.read" } },
    role(ORG, "writer"),
    { kind: "addInheritance", role: { organizationId: ORG, key: "writer" }, parent: { organizationId: ORG, key: "reader" } },
  ],
];

type Outcome = Array<Pick<MutationResult, "changed"> & { id: string }> | { code: string; message: string; metadata: Record<string, string> };

let batched: TestDatabase;
let single: TestDatabase;
beforeAll(async () => {
  [batched, single] = await Promise.all([freshDatabase(), freshDatabase()]);
  for (const t of [batched, single]) await t.raw`insert into organizations (id, name) values (${ORG}::uuid, 'Runs'), (${OTHER}::uuid, 'Other')`;
});
afterAll(async () => {
  await Promise.all([batched?.drop(), single?.drop()]);
});

/** Generated ids differ between databases: named by the row's key instead. */
async function outcome(t: TestDatabase, p: Promise<{ results: MutationResult[] }>): Promise<Outcome> {
  try {
    const { results } = await p;
    const keys = new Map(
      (await t.raw<{ id: string; key: string }[]>`select id::text as id, key from roles union all select id::text, key from permissions`).map((r) => [
        r.id,
        r.key,
      ]),
    );
    return results.map((r) => ({ id: r.id === ID1 || r.id === ID2 || r.id === "" ? r.id : `key:${keys.get(r.id)}`, changed: r.changed }));
  } catch (err) {
    if (!(err instanceof AuthzError)) throw err;
    return {
      code: err.code,
      message: err.message.replace(/[0-9a-f-]{36}/g, (u) => ([ID1, ID2, ORG, OTHER, MISSING].includes(u) ? u : "<generated>")),
      metadata: err.metadata,
    };
  }
}

const keyOf = (m: Mutation) =>
  m.kind === "upsertRole" || m.kind === "upsertPermission" ? { table: m.kind === "upsertRole" ? "roles" : "permissions", m } : undefined;

/**
 * One write per mutation, stopping at the first refusal. A batch is all or
 * nothing, so the rows the refused batch's earlier mutations created are
 * deleted again (the fixture's refused batches only create rows before the refusal).
 */
async function oneByOne(t: TestDatabase, batch: Mutation[]): Promise<Outcome> {
  const results: Array<{ id: string; changed: boolean }> = [];
  const created: Array<{ table: string; m: { organizationId: string | null; key: string } }> = [];
  for (const [i, m] of batch.entries()) {
    const o = await outcome(t, manageRoles(t.client, { mutations: [m] }));
    if (!Array.isArray(o)) {
      for (const c of created) {
        await t.raw`delete from ${t.raw(c.table)} where key = ${c.m.key} and organization_id is not distinct from ${c.m.organizationId}::uuid`;
      }
      return { ...o, message: o.message.replace("mutations[0]", `mutations[${i}]`), metadata: { ...o.metadata, mutation_index: String(i) } };
    }
    const k = keyOf(m);
    if (k && o[0]?.changed) created.push(k);
    results.push(...o);
  }
  return results;
}

const state = (t: TestDatabase) =>
  t.raw`select 'role' as kind, organization_id::text as org, key, name, description from roles
        union all select 'permission', organization_id::text, key, null, description from permissions
        order by kind, key, org`;

const changeLog = (t: TestDatabase) =>
  t.raw`select table_name, op, new_row->>'key' as key, new_row->>'description' as description from authz_changes
         where table_name in ('roles', 'permissions') order by revision, id`;

describe("pipelined and set-based ManageRoles batches", () => {
  it("give the results, refusals, rows and change log of one mutation per write", async () => {
    for (const batch of BATCHES) {
      const got = await outcome(batched, manageRoles(batched.client, { mutations: batch }));
      const want = await oneByOne(single, batch);
      expect(got).toEqual(want);
    }
    expect(await state(batched)).toEqual(await state(single));
  });

  it("leaves nothing behind when a later mutation of a run is refused", async () => {
    const before = await state(batched);
    const log = (await changeLog(batched)).length;
    const got = await outcome(batched, manageRoles(batched.client, { mutations: [role(ORG, "fresh-1"), role(ORG, "fresh-2"), role(ORG, "r3", { id: ID2 })] }));
    expect(got).toMatchObject({ code: "ALREADY_EXISTS", metadata: { mutation_index: "2" } });
    expect(await state(batched)).toEqual(before);
    expect((await changeLog(batched)).length).toBe(log);
  });

  it("names the mutation of a database refusal inside a run, and writes nothing", async () => {
    const before = await state(batched);
    const got = await outcome(batched, manageRoles(batched.client, { mutations: [perm(ORG, "q1"), perm(ORG, "q2"), perm(MISSING, "q3"), perm(ORG, "q4")] }));
    expect(got).toEqual({ code: "NOT_FOUND", message: "mutations[2].upsert_permission: the organization does not exist", metadata: { mutation_index: "2" } });
    expect(await state(batched)).toEqual(before);
  });

  it("logs one change row per upsert of a run, at one revision, in mutation order", async () => {
    const from = (await changeLog(batched)).length;
    await manageRoles(batched.client, { mutations: [perm(ORG, "log.a"), perm(ORG, "log.b", "b"), perm(ORG, "log.c")] });
    const rows = (await changeLog(batched)).slice(from);
    expect(rows).toEqual([
      { table_name: "permissions", op: "INSERT", key: "log.a", description: null },
      { table_name: "permissions", op: "INSERT", key: "log.b", description: "b" },
      { table_name: "permissions", op: "INSERT", key: "log.c", description: null },
    ]);
    const revs = await batched.raw`select distinct revision from authz_changes where new_row->>'key' like 'log.%'`;
    expect(revs).toHaveLength(1);
  });
});
