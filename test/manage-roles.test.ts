import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManageRolesRequestSchema } from "../gen/authz/v1/admin_service_pb.js";
import { AuthzError, type ErrorCode } from "../src/errors.js";
import { createLogger } from "../src/logger.js";
import { projectPath } from "../src/paths.js";
import type { CallContext } from "../src/rpc/handler-types.js";
import { manageRolesHandler } from "../src/rpc/admin-handlers.js";
import { importDocument } from "../src/store/import.js";
import { type ManageRolesInput, type Mutation, manageRoles } from "../src/store/manage-roles.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

const ORG1 = "00000002-0000-4000-8000-000000000001";
const ORG2 = "00000002-0000-4000-8000-000000000002";
const OWNER1 = "00000009-0000-4000-8000-000000000011";
const ALICE = "00000003-0000-4000-8000-000000000001";
/** Owner of ORG2 (multi_role) with no role in ORG1 (single_role_in_hierarchy), so one role there is allowed. */
const FRANK = "00000003-0000-4000-8000-000000000006";
/** A member of ORG1. */
const ERIN = "00000003-0000-4000-8000-000000000005";
const AVATAR_ORG1 = "00000007-0000-4000-8000-000000000001";
const AVATAR_ORG2 = "00000007-0000-4000-8000-000000000003";
const MISSING = "0000dead-0000-4000-8000-000000000001";

let t: TestDatabase;
beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
});
afterAll(async () => {
  await t?.drop();
});

const revision = async (): Promise<bigint> => BigInt((await t.raw<{ revision: string }[]>`select authz_stamp()::text as revision`)[0]?.revision ?? "-1");

const run = (mutations: Mutation[], extra: Omit<ManageRolesInput, "mutations"> = {}) => manageRoles(t.client, { mutations, ...extra });

const SQL_WORDS = /\b(select|insert|update|delete|from|where|returning|relation|violates|uuid\[\])\b/i;

/** Awaits a refusal and checks it is an AuthzError with the code, and that its message holds no SQL. */
async function refused(p: Promise<unknown>, code: ErrorCode): Promise<AuthzError> {
  const err = await p.then(
    (v) => {
      throw new Error(`expected ${code}, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthzError);
  const e = err as AuthzError;
  expect({ code: e.code, message: e.message }).toMatchObject({ code });
  expect(e.message).not.toMatch(SQL_WORDS);
  return e;
}

const org1 = (key: string) => ({ organizationId: ORG1, key });
const org2 = (key: string) => ({ organizationId: ORG2, key });

describe("ManageRoles", () => {
  it("applies a batch atomically at one new revision, visible after commit, with change-log rows", async () => {
    const before = await revision();
    const validUntil = new Date("2031-01-02T03:04:05.000Z");
    const res = await run([
      { kind: "upsertRole", ...org1("auditor"), name: "Auditor", description: "Reads the audit log" },
      { kind: "upsertPermission", ...org1("audit.read"), description: "Read the audit log" },
      { kind: "grantPermission", role: org1("auditor"), permission: org1("audit.read") },
      { kind: "addInheritance", role: org1("auditor"), parent: org1("member") },
      { kind: "assignRole", subject: { type: "user", id: FRANK }, role: org1("auditor"), scope: { type: "organization", id: ORG1 }, validUntil },
    ]);
    expect(BigInt(res.revision)).toBe(before + 1n);
    expect(res.results.map((r) => r.changed)).toEqual([true, true, true, true, true]);
    const [roleId, permId, , , assignmentId] = res.results.map((r) => r.id);
    expect(res.results[2]?.id).toBe("");

    const [role] = await t.raw`select name, description from roles where id = ${roleId ?? ""}`;
    expect(role).toEqual({ name: "Auditor", description: "Reads the audit log" });
    expect(await t.raw`select 1 from role_permissions where role_id = ${roleId ?? ""} and permission_id = ${permId ?? ""}`).toHaveLength(1);
    const [a] = await t.raw<{ role_id: string; valid_until: Date }[]>`
      select role_id::text, valid_until from role_assignments where id = ${assignmentId ?? ""}`;
    expect(a?.role_id).toBe(roleId);
    expect(a?.valid_until.toISOString()).toBe(validUntil.toISOString());
    const inherited = await t.raw`
      select r.key from role_closure c join roles r on r.id = c.inherited_role_id where c.role_id = ${roleId ?? ""} order by r.key`;
    expect(inherited.map((r) => r.key)).toEqual(["auditor", "member"]);

    const changes = await t.raw<{ table_name: string }[]>`
      select distinct table_name from authz_changes where revision = ${res.revision} order by table_name`;
    expect(changes.map((c) => c.table_name)).toEqual(["permissions", "role_assignments", "role_inheritance", "role_permissions", "roles"]);
  });

  it("reports no-ops as unchanged and does not advance the revision", async () => {
    const before = await revision();
    const res = await run([
      { kind: "upsertRole", ...org1("auditor"), name: "Auditor", description: "Reads the audit log" },
      { kind: "upsertRole", ...org1("auditor") },
      { kind: "upsertPermission", ...org1("audit.read") },
      { kind: "grantPermission", role: org1("auditor"), permission: org1("audit.read") },
      { kind: "addInheritance", role: org1("auditor"), parent: org1("member") },
      {
        kind: "assignRole",
        subject: { type: "user", id: FRANK },
        role: org1("auditor"),
        scope: { type: "organization", id: ORG1 },
        validUntil: new Date("2031-01-02T03:04:05.000Z"),
      },
      { kind: "revokePermission", role: org1("auditor"), permission: org1("billing.read") },
      { kind: "removeInheritance", role: org1("auditor"), parent: org1("owner") },
      { kind: "unassignRole", assignmentId: MISSING },
      { kind: "unassignRole", subject: { type: "user", id: FRANK }, role: org1("auditor"), scope: null },
    ]);
    expect(res.results.map((r) => r.changed)).toEqual(new Array(10).fill(false));
    expect(res.results[0]?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.results[5]?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(BigInt(res.revision)).toBe(before);
    expect(await revision()).toBe(before);
  });

  it("updates what changed, and removes edges and assignments", async () => {
    const before = await revision();
    const res = await run([
      { kind: "upsertRole", ...org1("auditor"), description: "Reads and exports the audit log" },
      { kind: "revokePermission", role: org1("auditor"), permission: org1("audit.read") },
      { kind: "removeInheritance", role: org1("auditor"), parent: org1("member") },
      { kind: "unassignRole", subject: { type: "user", id: FRANK }, role: org1("auditor"), scope: { type: "organization", id: ORG1 } },
    ]);
    expect(res.results.map((r) => r.changed)).toEqual([true, true, true, true]);
    expect(BigInt(res.revision)).toBe(before + 1n);
    const [role] = await t.raw`select name, description from roles where organization_id = ${ORG1} and key = 'auditor'`;
    expect(role).toEqual({ name: "Auditor", description: "Reads and exports the audit log" });
    expect(await t.raw`select 1 from role_assignments where id = ${res.results[3]?.id ?? ""}`).toHaveLength(0);
  });

  it("a batch whose third mutation fails writes nothing", async () => {
    const before = await revision();
    const e = await refused(
      run([
        { kind: "upsertRole", ...org1("temp-role") },
        { kind: "upsertPermission", ...org1("temp.perm") },
        { kind: "grantPermission", role: org1("temp-role"), permission: { id: MISSING } },
      ]),
      "NOT_FOUND",
    );
    expect(e.message).toBe(`mutations[2].grant_permission.permission: permission ${MISSING} not found`);
    expect(e.metadata).toMatchObject({ mutation_index: "2" });
    expect(await revision()).toBe(before);
    expect(await t.raw`select 1 from roles where key = 'temp-role'`).toHaveLength(0);
    expect(await t.raw`select 1 from permissions where key = 'temp.perm'`).toHaveLength(0);
  });

  it("refuses an inheritance cycle, naming it by role keys", async () => {
    const before = await revision();
    const e = await refused(run([{ kind: "addInheritance", role: org1("member"), parent: org1("owner") }]), "FAILED_PRECONDITION");
    expect(e.reason).toBe("INHERITANCE_CYCLE");
    expect(e.message).toContain("role inheritance would form a cycle: owner → admin → member → owner");
    const self = await refused(run([{ kind: "addInheritance", role: org1("admin"), parent: org1("admin") }]), "FAILED_PRECONDITION");
    expect(self.message).toContain("cycle: admin → admin");
    expect(await revision()).toBe(before);
  });

  it("refuses a grant or an inheritance across organizations (CROSS_ORGANIZATION), naming both records", async () => {
    const before = await revision();
    const grant = await refused(
      run([
        { kind: "upsertPermission", ...org2("cross.read") },
        { kind: "grantPermission", role: org1("member"), permission: org2("cross.read") },
      ]),
      "FAILED_PRECONDITION",
    );
    expect(grant.reason).toBe("CROSS_ORGANIZATION");
    expect(grant.message).toBe(
      `mutations[1].grant_permission: role "member" of organization ${ORG1} cannot hold permission "cross.read" of organization ${ORG2}: ` +
        "a role holds only permissions of its own organization or global ones",
    );
    const inherit = await refused(
      run([
        { kind: "upsertRole", ...org2("cross-parent") },
        { kind: "addInheritance", role: org1("member"), parent: org2("cross-parent") },
      ]),
      "FAILED_PRECONDITION",
    );
    expect(inherit.reason).toBe("CROSS_ORGANIZATION");
    expect(inherit.message).toBe(
      `mutations[1].add_inheritance: role "member" of organization ${ORG1} cannot inherit role "cross-parent" of organization ${ORG2}: ` +
        "a role inherits only roles of its own organization or global ones",
    );
    expect(await revision()).toBe(before);
  });

  it("of two concurrent batches that form a cycle only together, exactly one commits", async () => {
    await run([
      { kind: "upsertRole", ...org2("ping") },
      { kind: "upsertRole", ...org2("pong") },
    ]);
    const c1 = createPostgresClient({ url: t.url, poolMax: 1, logger: createLogger("silent") });
    const c2 = createPostgresClient({ url: t.url, poolMax: 1, logger: createLogger("silent") });
    try {
      // Hold the organization's role-graph lock so that both batches are queued behind it before either checks for a cycle.
      let release = (): void => {};
      const held = new Promise<void>((r) => (release = r));
      let locked = (): void => {};
      const isLocked = new Promise<void>((r) => (locked = r));
      const holder = t.raw.begin(async (tx) => {
        await tx`select authz_lock_role_graph(${ORG2}::uuid)`;
        locked();
        await held;
      });
      await isLocked;
      const a = manageRoles(c1, { mutations: [{ kind: "addInheritance", role: org2("ping"), parent: org2("pong") }] });
      const b = manageRoles(c2, { mutations: [{ kind: "addInheritance", role: org2("pong"), parent: org2("ping") }] });
      // Both batches are queued behind the held lock: wait for that (bounded), not for a fixed time.
      const waitingOnLock = async () => (await t.raw`select 1 from pg_stat_activity where datname = ${t.name} and wait_event_type = 'Lock'`).length;
      for (let i = 0; i < 500 && (await waitingOnLock()) < 2; i++) await new Promise((r) => setImmediate(r));
      expect(await waitingOnLock()).toBe(2);
      release();
      await holder;
      const settled = await Promise.allSettled([a, b]);
      const ok = settled.filter((s) => s.status === "fulfilled");
      const failed = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []));
      expect(ok).toHaveLength(1);
      expect(failed).toHaveLength(1);
      expect(failed[0]).toBeInstanceOf(AuthzError);
      expect(failed[0]).toMatchObject({ code: "FAILED_PRECONDITION", reason: "INHERITANCE_CYCLE" });
      const edges = await t.raw`
        select 1 from role_inheritance ri join roles r on r.id = ri.role_id where r.organization_id = ${ORG2} and r.key in ('ping', 'pong')`;
      expect(edges).toHaveLength(1);
    } finally {
      await c1.close();
      await c2.close();
    }
  });

  it("refuses references to records that do not exist with NOT_FOUND", async () => {
    const before = await revision();
    const cases: Array<[Mutation, string]> = [
      [{ kind: "deleteRole", role: org1("nobody") }, `mutations[0].delete_role: role "nobody" of organization ${ORG1} not found`],
      [
        { kind: "deletePermission", permission: { organizationId: null, key: "no.such" } },
        `mutations[0].delete_permission: global permission "no.such" not found`,
      ],
      [{ kind: "grantPermission", role: { id: MISSING }, permission: org1("members.read") }, `mutations[0].grant_permission.role: role ${MISSING} not found`],
      [
        { kind: "addInheritance", role: org1("admin"), parent: org1("ghost") },
        `mutations[0].add_inheritance.parent: role "ghost" of organization ${ORG1} not found`,
      ],
      [
        { kind: "assignRole", subject: { type: "user", id: MISSING }, role: org1("admin"), scope: { type: "organization", id: ORG1 }, validUntil: null },
        `mutations[0].assign_role.subject: user ${MISSING} not found`,
      ],
      [
        { kind: "assignRole", subject: { type: "user", id: ALICE }, role: org1("admin"), scope: { type: "avatar", id: MISSING }, validUntil: null },
        `mutations[0].assign_role.scope: avatar ${MISSING} not found`,
      ],
      [{ kind: "upsertRole", organizationId: MISSING, key: "x" }, "mutations[0].upsert_role: the organization does not exist"],
    ];
    for (const [m, message] of cases) {
      const e = await refused(run([m]), "NOT_FOUND");
      expect(e.message).toBe(message);
    }
    expect(await revision()).toBe(before);
  });

  it("refuses an explicit id that clashes with another record with ALREADY_EXISTS", async () => {
    const e1 = await refused(run([{ kind: "upsertRole", ...org1("brand-new"), id: OWNER1 }]), "ALREADY_EXISTS");
    expect(e1.message).toContain(`role ${OWNER1} already exists as role "owner"`);
    const e2 = await refused(run([{ kind: "upsertRole", ...org1("owner"), id: MISSING }]), "ALREADY_EXISTS");
    expect(e2.message).toContain(`already exists with id ${OWNER1}`);
    // The same id and key is an ordinary upsert.
    const ok = await run([{ kind: "upsertRole", ...org1("owner"), id: OWNER1 }]);
    expect(ok.results).toEqual([{ id: OWNER1, changed: false }]);
    // A new role with a chosen id.
    const chosen = "0000beef-0000-4000-8000-000000000001";
    const created = await run([{ kind: "upsertRole", ...org2("chosen"), id: chosen.toUpperCase() }]);
    expect(created.results).toEqual([{ id: chosen, changed: true }]);
  });

  it("replays an idempotent batch without a new revision and refuses the key with another payload", async () => {
    const batch: Mutation[] = [{ kind: "upsertPermission", ...org2("reports.read"), description: "Read reports" }];
    const start = await revision();
    const first = await run(batch, { idempotencyKey: "req-1", expectedRevision: start.toString() });
    expect(BigInt(first.revision)).toBe(start + 1n);
    // Something else writes meanwhile; the replay still returns the first answer (despite its expected_revision).
    await run([{ kind: "upsertPermission", ...org2("reports.write") }]);
    const moved = await revision();
    const again = await run(batch, { idempotencyKey: "req-1", expectedRevision: start.toString() });
    expect(again).toEqual(first);
    expect(await revision()).toBe(moved);
    const e = await refused(
      run([{ kind: "upsertPermission", ...org2("reports.read"), description: "Other" }], { idempotencyKey: "req-1", expectedRevision: start.toString() }),
      "ALREADY_EXISTS",
    );
    expect(e.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(await revision()).toBe(moved);
    const [p] = await t.raw`select description from permissions where organization_id = ${ORG2} and key = 'reports.read'`;
    expect(p?.description).toBe("Read reports");
  });

  it("replays a batch that changed nothing with the revision it answered first", async () => {
    await run([{ kind: "upsertPermission", ...org2("reports.audit"), description: "Audit reports" }]);
    const batch: Mutation[] = [{ kind: "upsertPermission", ...org2("reports.audit"), description: "Audit reports" }];
    const first = await run(batch, { idempotencyKey: "noop-1" });
    expect(first.results).toEqual([expect.objectContaining({ changed: false })]);
    expect(BigInt(first.revision)).toBe(await revision());
    // Something else writes meanwhile; the replay of the no-op still answers the first revision.
    await run([{ kind: "upsertPermission", ...org2("reports.other") }]);
    expect(await revision()).toBeGreaterThan(BigInt(first.revision));
    expect(await run(batch, { idempotencyKey: "noop-1" })).toEqual(first);
  });

  it("applies only at the expected revision", async () => {
    const current = await revision();
    const e = await refused(run([{ kind: "upsertRole", ...org1("late") }], { expectedRevision: (current - 1n).toString() }), "FAILED_PRECONDITION");
    expect(e.reason).toBe("REVISION_MOVED");
    expect(e.message).toContain((current - 1n).toString());
    expect(e.message).toContain(current.toString());
    expect(await t.raw`select 1 from roles where key = 'late'`).toHaveLength(0);
    expect(await revision()).toBe(current);
    // A revision no write has reached: never returned by authz, so a bad token (as in reads), not a moved revision.
    const future = await refused(run([{ kind: "upsertRole", ...org1("late") }], { expectedRevision: (current + 1000n).toString() }), "INVALID_ARGUMENT");
    expect(future.reason).toBe("UNKNOWN_REVISION");
    expect(await t.raw`select 1 from roles where key = 'late'`).toHaveLength(0);
    const ok = await run([{ kind: "upsertRole", ...org1("late") }], { expectedRevision: current.toString() });
    expect(BigInt(ok.revision)).toBe(current + 1n);
  });

  it("refuses malformed input with INVALID_ARGUMENT naming the field", async () => {
    const assign = (subject: { type: string; id: string }, scope: { type: string; id: string } | null = null): Mutation => ({
      kind: "assignRole",
      subject,
      role: org1("admin"),
      scope,
      validUntil: null,
    });
    const cases: Array<[ManageRolesInput, string]> = [
      [{ mutations: [] }, "mutations must hold 1 to 1000 changes"],
      [{ mutations: new Array(1001).fill({ kind: "deleteRole", role: { id: MISSING } }) }, "mutations must hold 1 to 1000 changes"],
      [{ mutations: [{ kind: "deleteRole", role: { id: "not-a-uuid" } }] }, "mutations[0].delete_role.id must be a UUID"],
      [{ mutations: [{ kind: "upsertRole", organizationId: null, key: "has space" }] }, "mutations[0].upsert_role.key.key must be 1 to 128"],
      [{ mutations: [{ kind: "upsertRole", organizationId: null, key: "x".repeat(129) }] }, "mutations[0].upsert_role.key.key must be 1 to 128"],
      [{ mutations: [{ kind: "upsertRole", organizationId: "123", key: "ok" }] }, "mutations[0].upsert_role.key.organization_id must be a UUID"],
      [
        {
          mutations: [
            { kind: "upsertRole", organizationId: null, key: "ok" },
            { kind: "grantPermission", role: org1("a"), permission: { organizationId: ORG1, key: "bad/key" } },
          ],
        },
        "mutations[1].grant_permission.permission.key.key must be 1 to 128",
      ],
      [{ mutations: [assign({ type: "group", id: ALICE })] }, "mutations[0].assign_role.subject.type must be one of user, account, principal, staff"],
      [
        { mutations: [assign({ type: "user", id: ALICE }, { type: "global", id: "" })] },
        "mutations[0].assign_role.scope.type must be one of tenant, organization, avatar",
      ],
      [{ mutations: [assign({ type: "user", id: ALICE }, { type: "avatar", id: "x" })] }, "mutations[0].assign_role.scope.id must be a UUID"],
      [{ mutations: [{ kind: "unassignRole", assignmentId: "1" }] }, "mutations[0].unassign_role.assignment_id must be a UUID"],
      [{ mutations: [{ ...assign({ type: "user", id: ALICE }), validUntil: new Date(Number.NaN) } as Mutation] }, "mutations[0].assign_role.valid_until"],
      [{ mutations: [{ kind: "deleteRole", role: { id: MISSING } }], idempotencyKey: "k".repeat(129) }, "idempotency_key must be at most 128 bytes"],
      [{ mutations: [{ kind: "deleteRole", role: { id: MISSING } }], expectedRevision: "12a" }, "expected_revision must be a revision"],
    ];
    const before = await revision();
    for (const [input, message] of cases) {
      const e = await refused(manageRoles(t.client, input), "INVALID_ARGUMENT");
      expect(e.message).toContain(message);
    }
    expect(await revision()).toBe(before);
  });

  it("refuses built-in role deletion and cross-organization links with FAILED_PRECONDITION", async () => {
    const before = await revision();
    const builtin = await refused(run([{ kind: "deleteRole", role: { organizationId: null, key: "avatar_member" } }]), "FAILED_PRECONDITION");
    expect(builtin.message).toBe("mutations[0].delete_role: built-in role avatar_member cannot be deleted");
    await refused(run([{ kind: "grantPermission", role: org1("member"), permission: org2("members.read") }]), "FAILED_PRECONDITION");
    await refused(run([{ kind: "addInheritance", role: org1("member"), parent: org2("member") }]), "FAILED_PRECONDITION");
    await refused(run([{ kind: "addInheritance", role: { organizationId: null, key: "avatar_member" }, parent: org1("member") }]), "FAILED_PRECONDITION");
    const scope = await refused(
      run([{ kind: "assignRole", subject: { type: "user", id: ALICE }, role: org1("admin"), scope: { type: "avatar", id: AVATAR_ORG2 }, validUntil: null }]),
      "FAILED_PRECONDITION",
    );
    expect(scope.message).toMatch(/^mutations\[0\]\.assign_role: role [0-9a-f-]+ of organization [0-9a-f-]+ cannot be assigned on avatar/);
    expect(await revision()).toBe(before);
    // A global role inherits another global one; an org role may be assigned on its own avatars.
    const ok = await run([
      { kind: "upsertRole", organizationId: null, key: "global-helper" },
      { kind: "addInheritance", role: { organizationId: null, key: "global-helper" }, parent: { organizationId: null, key: "avatar_member" } },
      { kind: "assignRole", subject: { type: "user", id: ALICE }, role: org1("admin"), scope: { type: "avatar", id: AVATAR_ORG1 }, validUntil: null },
    ]);
    expect(ok.results.map((r) => r.changed)).toEqual([true, true, true]);
  });

  it("org_role_structure: one organization-level role per user in a single_role_in_hierarchy organization unless replaced; several in multi_role", async () => {
    const before = await revision();
    const second = await refused(
      run([{ kind: "assignRole", subject: { type: "user", id: ERIN }, role: org1("admin"), scope: { type: "organization", id: ORG1 }, validUntil: null }]),
      "FAILED_PRECONDITION",
    );
    expect(second.reason).toBe("SINGLE_ROLE");
    expect(second.message).toContain('already holds role "member"');
    expect(await revision()).toBe(before);
    // On an avatar of the organization the rule does not apply.
    await run([{ kind: "assignRole", subject: { type: "user", id: ERIN }, role: org1("admin"), scope: { type: "avatar", id: AVATAR_ORG1 }, validUntil: null }]);
    const replaced = await run([
      {
        kind: "assignRole",
        subject: { type: "user", id: ERIN },
        role: org1("admin"),
        scope: { type: "organization", id: ORG1 },
        validUntil: null,
        replace: true,
      },
    ]);
    expect(replaced.results[0]?.changed).toBe(true);
    const held = await t.raw<{ key: string }[]>`
      select r.key from role_assignments ra join roles r on r.id = ra.role_id
       where ra.subject_type = 'user' and ra.subject_id = ${ERIN} and ra.scope_type = 'organization' and ra.scope_id = ${ORG1}`;
    expect(held.map((r) => r.key)).toEqual(["admin"]);
    const [place] = await t.raw<{ user_role: string; additional_roles: string[] }[]>`
      select user_role, additional_roles from user_organization_info where user_id = ${ERIN} and org_id = ${ORG1}`;
    expect(place).toEqual({ user_role: "admin", additional_roles: [] });
    // acme-sales is multi_role: its owner may hold another role there.
    const multi = await run([
      { kind: "assignRole", subject: { type: "user", id: FRANK }, role: org2("member"), scope: { type: "organization", id: ORG2 }, validUntil: null },
    ]);
    expect(multi.results[0]?.changed).toBe(true);
  });

  it("deletes roles and permissions with their edges", async () => {
    await run([
      { kind: "upsertRole", ...org2("doomed") },
      { kind: "upsertPermission", ...org2("doomed.perm") },
      { kind: "grantPermission", role: org2("doomed"), permission: org2("doomed.perm") },
    ]);
    const res = await run([
      { kind: "deletePermission", permission: org2("doomed.perm") },
      { kind: "deleteRole", role: org2("doomed") },
    ]);
    expect(res.results.map((r) => r.changed)).toEqual([true, true]);
    expect(await t.raw`select 1 from roles where organization_id = ${ORG2} and key = 'doomed'`).toHaveLength(0);
  });

  it("the RPC handler translates messages, and an empty oneof is INVALID_ARGUMENT", async () => {
    const handler = manageRolesHandler(() => t.client);
    const ctx = { path: "/authz.v1.AdminService/ManageRoles", requestId: "test" } as CallContext;
    const empty = create(ManageRolesRequestSchema, { mutations: [{ mutation: { case: "upsertRole", value: { key: { key: "h1" } } } }, {}] });
    const e = await refused(handler(empty, ctx), "INVALID_ARGUMENT");
    expect(e.message).toMatch(/^mutations\[1\] must set exactly one change/);

    const until = new Date("2032-05-06T07:08:09.000Z");
    const req = create(ManageRolesRequestSchema, {
      mutations: [
        { mutation: { case: "upsertRole", value: { key: { organizationId: ORG1, key: "via-rpc" }, name: "Via RPC" } } },
        {
          mutation: {
            case: "assignRole",
            value: {
              subject: { type: "user", id: FRANK },
              role: { ref: { case: "key", value: { organizationId: ORG1, key: "via-rpc" } } },
              scope: { type: "organization", id: ORG1 },
              validUntil: timestampFromDate(until),
            },
          },
        },
        { mutation: { case: "unassignRole", value: { assignmentId: MISSING } } },
      ],
      idempotencyKey: "rpc-1",
    });
    const res = await handler(req, ctx);
    expect(res.results?.map((r) => r.changed)).toEqual([true, true, false]);
    const [row] = await t.raw<{ valid_until: Date; name: string }[]>`
      select ra.valid_until, r.name from role_assignments ra join roles r on r.id = ra.role_id where ra.id = ${res.results?.[1]?.id ?? ""}`;
    expect(row?.valid_until.toISOString()).toBe(until.toISOString());
    expect(row?.name).toBe("Via RPC");
    expect(await handler(req, ctx)).toEqual(res);
  });
});
