import { describe, expect, it } from "vitest";
import { buildSnapshot, NeedsReload } from "./snapshot.js";
import type { Change } from "./rows.js";

// A small hand-made dataset: one tenant, two organizations, a role chain
// owner → admin → member in org A, a global role, and subjects of every kind.
const T = "00000000-0000-4000-8000-0000000000a1";
const A = "00000000-0000-4000-8000-0000000000b1";
const B = "00000000-0000-4000-8000-0000000000b2";
const AV = "00000000-0000-4000-8000-0000000000c1";
const OWNER = "00000000-0000-4000-8000-0000000000d1";
const ADMIN = "00000000-0000-4000-8000-0000000000d2";
const MEMBER = "00000000-0000-4000-8000-0000000000d3";
const GLOBAL_AUDIT = "00000000-0000-4000-8000-0000000000d4";
const AV_MEMBER = "00000000-0000-4000-8000-00000000a001";
const AV_OWNER = "00000000-0000-4000-8000-00000000a002";
const P_READ = "00000000-0000-4000-8000-0000000000e1";
const P_INVITE = "00000000-0000-4000-8000-0000000000e2";
const P_DELETE = "00000000-0000-4000-8000-0000000000e3";
const P_AUDIT = "00000000-0000-4000-8000-0000000000e4";
const P_POST = "00000000-0000-4000-8000-0000000000e5";
const ALICE = "00000000-0000-4000-8000-0000000000f1";
const BOB = "00000000-0000-4000-8000-0000000000f2";
const LOCKED = "00000000-0000-4000-8000-0000000000f3";
const ACC = "00000000-0000-4000-8000-000000000101";
const PRIN = "00000000-0000-4000-8000-000000000201";
const STAFF = "00000000-0000-4000-8000-000000000301";
const NOW = Date.parse("2026-06-01T00:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();

function dataset() {
  return buildSnapshot(7n, {
    tenants: [{ id: T }],
    organizations: [
      { id: A, tenant_id: T, name: "A", slug: "a", role_structure: "single_role_in_hierarchy" },
      { id: B, tenant_id: T, name: "B", slug: "b", role_structure: "multi_role" },
    ],
    users: [
      { id: ALICE, locked: false, enabled: true },
      { id: BOB, locked: false, enabled: true },
      { id: LOCKED, locked: true, enabled: true },
    ],
    staff: [{ id: STAFF }],
    accounts: [{ id: ACC, organization_id: A, active: true }],
    principals: [{ id: PRIN, account_id: ACC, subject_type: "user", subject_id: BOB, active: true, accepted_at: iso(NOW - 1000), valid_until: null }],
    avatars: [{ id: AV, organization_id: A, active: true }],
    memberships: [
      {
        id: "00000000-0000-4000-8000-000000000401",
        principal_id: PRIN,
        avatar_id: AV,
        owner: true,
        active: true,
        accepted_at: iso(NOW - 1000),
        valid_until: iso(NOW + 60_000),
      },
    ],
    roles: [
      { id: OWNER, organization_id: A, key: "owner", name: "Owner" },
      { id: ADMIN, organization_id: A, key: "admin", name: "Admin" },
      { id: MEMBER, organization_id: A, key: "member", name: "Member" },
      { id: GLOBAL_AUDIT, organization_id: null, key: "auditor", name: "Auditor" },
      { id: AV_MEMBER, organization_id: null, key: "avatar_member", name: "Avatar member" },
      { id: AV_OWNER, organization_id: null, key: "avatar_owner", name: "Avatar owner" },
    ],
    permissions: [
      { id: P_READ, organization_id: A, key: "members.read" },
      { id: P_INVITE, organization_id: A, key: "members.invite" },
      { id: P_DELETE, organization_id: A, key: "org.delete" },
      { id: P_AUDIT, organization_id: null, key: "audit.read" },
      { id: P_POST, organization_id: null, key: "avatar.post" },
    ],
    role_permissions: [
      { role_id: MEMBER, permission_id: P_READ },
      { role_id: ADMIN, permission_id: P_INVITE },
      { role_id: OWNER, permission_id: P_DELETE },
      { role_id: GLOBAL_AUDIT, permission_id: P_AUDIT },
      { role_id: AV_OWNER, permission_id: P_POST },
    ],
    role_inheritance: [
      { role_id: OWNER, parent_role_id: ADMIN },
      { role_id: ADMIN, parent_role_id: MEMBER },
      { role_id: MEMBER, parent_role_id: GLOBAL_AUDIT },
    ],
    role_assignments: [
      {
        id: "00000000-0000-4000-8000-000000000501",
        subject_type: "user",
        subject_id: ALICE,
        role_id: OWNER,
        scope_type: "organization",
        scope_id: A,
        active: true,
        valid_until: null,
      },
      {
        id: "00000000-0000-4000-8000-000000000502",
        subject_type: "user",
        subject_id: BOB,
        role_id: ADMIN,
        scope_type: "organization",
        scope_id: A,
        active: true,
        valid_until: iso(NOW + 1000),
      },
      {
        id: "00000000-0000-4000-8000-000000000503",
        subject_type: "staff",
        subject_id: STAFF,
        role_id: GLOBAL_AUDIT,
        scope_type: "tenant",
        scope_id: T,
        active: true,
        valid_until: null,
      },
      {
        id: "00000000-0000-4000-8000-000000000504",
        subject_type: "user",
        subject_id: LOCKED,
        role_id: OWNER,
        scope_type: "organization",
        scope_id: A,
        active: true,
        valid_until: null,
      },
      {
        id: "00000000-0000-4000-8000-000000000505",
        subject_type: "account",
        subject_id: ACC,
        role_id: MEMBER,
        scope_type: "avatar",
        scope_id: AV,
        active: true,
        valid_until: null,
      },
    ],
    user_organizations: [{ user_id: ALICE, organization_id: A, primary_role_id: OWNER }],
  });
}

const user = (id: string) => ({ type: "user" as const, id });
const org = (id: string) => ({ type: "organization" as const, id });

describe("Snapshot.check", () => {
  const e = dataset();

  it("grants through the inheritance closure, including a global parent role", () => {
    expect(e.check(user(ALICE), "org.delete", org(A), NOW)).toEqual({ allowed: true, reason: "GRANTED" });
    expect(e.check(user(ALICE), "members.read", org(A), NOW).allowed).toBe(true);
    expect(e.check(user(ALICE), "audit.read", org(A), NOW).allowed).toBe(true);
    expect(e.check(user(BOB), "org.delete", org(A), NOW)).toEqual({ allowed: false, reason: "NO_GRANT" });
  });

  it("an org-scoped grant covers the organization's avatars but not another organization", () => {
    expect(e.check(user(ALICE), "members.read", { type: "avatar", id: AV }, NOW).allowed).toBe(true);
    expect(e.check(user(ALICE), "audit.read", org(B), NOW)).toEqual({ allowed: false, reason: "NO_GRANT" });
    expect(e.check(user(ALICE), "members.read", org(B), NOW)).toEqual({ allowed: false, reason: "PERMISSION_NOT_FOUND" });
  });

  it("checks expiry at decision time, not at build time", () => {
    expect(e.check(user(BOB), "members.invite", org(A), NOW).allowed).toBe(true);
    expect(e.check(user(BOB), "members.invite", org(A), NOW + 1000)).toEqual({ allowed: false, reason: "NO_GRANT" });
  });

  it("a tenant grant reaches every organization of the tenant, global permissions only", () => {
    const staff = { type: "staff" as const, id: STAFF };
    expect(e.check(staff, "audit.read", org(B), NOW).allowed).toBe(true);
    expect(e.check(staff, "audit.read", { type: "tenant", id: T }, NOW).allowed).toBe(true);
    expect(e.check(staff, "members.read", org(A), NOW)).toEqual({ allowed: false, reason: "NO_GRANT" });
  });

  it("a principal acts with its account's grants and its memberships' built-in roles", () => {
    const p = { type: "principal" as const, id: PRIN };
    const av = { type: "avatar" as const, id: AV };
    expect(e.check(p, "members.read", av, NOW).allowed).toBe(true); // account's member role on the avatar
    expect(e.check(p, "avatar.post", av, NOW).allowed).toBe(true); // owner membership → avatar_owner
    expect(e.check(p, "avatar.post", av, NOW + 60_000)).toEqual({ allowed: false, reason: "NO_GRANT" }); // membership expired
    expect(e.check(p, "members.invite", org(A), NOW)).toEqual({ allowed: false, reason: "NO_GRANT" }); // principal is not bob
  });

  it("reasons come in the documented order", () => {
    const ghost = "00000000-0000-4000-8000-00000000ffff";
    expect(e.check(user(ghost), "x", org(ghost), NOW).reason).toBe("SUBJECT_NOT_FOUND");
    expect(e.check(user(LOCKED), "x", org(ghost), NOW).reason).toBe("RESOURCE_NOT_FOUND");
    expect(e.check(user(LOCKED), "nope", org(A), NOW).reason).toBe("PERMISSION_NOT_FOUND");
    expect(e.check(user(LOCKED), "org.delete", org(A), NOW).reason).toBe("SUBJECT_LOCKED");
  });

  it("explains an allow as assignment → role → inherited roles → permission", () => {
    const d = e.check(user(ALICE), "audit.read", org(A), NOW, true);
    expect(d.steps?.map((s) => `${s.kind}:${s.key ?? ""}`)).toEqual([
      "ASSIGNMENT:",
      "ROLE:owner",
      "INHERITED_ROLE:admin",
      "INHERITED_ROLE:member",
      "INHERITED_ROLE:auditor",
      "PERMISSION:audit.read",
    ]);
    expect(d.steps?.[0]).toMatchObject({ id: "00000000-0000-4000-8000-000000000501", scope: { type: "organization", id: A } });
  });
});

describe("Snapshot.apply (incremental)", () => {
  const change = (table: string, op: Change["op"], oldRow: Record<string, unknown> | null, newRow: Record<string, unknown> | null): Change => ({
    table,
    op,
    oldRow,
    newRow,
  });

  it("re-closes the roles an inheritance edge touches, and those that inherit from them", () => {
    let e = dataset();
    expect(e.check(user(BOB), "org.delete", org(A), NOW).allowed).toBe(false);
    // admin now also inherits owner's permission directly: grant org.delete to member, the root of the chain.
    e = e.apply([change("role_permissions", "INSERT", null, { role_id: MEMBER, permission_id: P_DELETE })], 8n);
    expect(e.revision).toBe(8n);
    expect(e.check(user(BOB), "org.delete", org(A), NOW).allowed).toBe(true);
    // Removing admin → member cuts bob off from member's permissions, but not alice (owner → admin).
    e = e.apply([change("role_inheritance", "DELETE", { role_id: ADMIN, parent_role_id: MEMBER }, null)], 9n);
    expect(e.check(user(BOB), "members.read", org(A), NOW).allowed).toBe(false);
    expect(e.check(user(ALICE), "members.invite", org(A), NOW).allowed).toBe(true);
    expect(e.check(user(ALICE), "members.read", org(A), NOW).allowed).toBe(false);
  });

  it("follows a role delete with its cascaded rows, in any log order", () => {
    let e = dataset();
    e = e.apply(
      [
        change(
          "role_assignments",
          "DELETE",
          {
            id: "00000000-0000-4000-8000-000000000501",
            subject_type: "user",
            subject_id: ALICE,
            role_id: OWNER,
            scope_type: "organization",
            scope_id: A,
            active: true,
          },
          null,
        ),
        change("roles", "DELETE", { id: ADMIN, organization_id: A, key: "admin", name: "Admin" }, null),
        change("role_inheritance", "DELETE", { role_id: OWNER, parent_role_id: ADMIN }, null),
        change("role_inheritance", "DELETE", { role_id: ADMIN, parent_role_id: MEMBER }, null),
        change("role_permissions", "DELETE", { role_id: ADMIN, permission_id: P_INVITE }, null),
      ],
      8n,
    );
    expect(e.check(user(ALICE), "org.delete", org(A), NOW).allowed).toBe(false);
    expect(e.check(user(BOB), "members.invite", org(A), NOW).allowed).toBe(false);
    expect(e.stats().roles).toBe(5);
  });

  it("renames a permission in place and keeps its grants", () => {
    let e = dataset();
    e = e.apply(
      [change("permissions", "UPDATE", { id: P_INVITE, organization_id: A, key: "members.invite" }, { id: P_INVITE, organization_id: A, key: "members.add" })],
      8n,
    );
    expect(e.check(user(BOB), "members.add", org(A), NOW).allowed).toBe(true);
    expect(e.check(user(BOB), "members.invite", org(A), NOW).reason).toBe("PERMISSION_NOT_FOUND");
  });

  it("applies subject and assignment updates (lock, deactivate)", () => {
    let e = dataset();
    e = e.apply([change("users", "UPDATE", { id: ALICE, locked: false, enabled: true }, { id: ALICE, locked: true, enabled: true })], 8n);
    expect(e.check(user(ALICE), "org.delete", org(A), NOW).reason).toBe("SUBJECT_LOCKED");
    const a = {
      id: "00000000-0000-4000-8000-000000000502",
      subject_type: "user",
      subject_id: BOB,
      role_id: ADMIN,
      scope_type: "organization",
      scope_id: A,
      active: true,
      valid_until: null,
    };
    e = e.apply([change("role_assignments", "UPDATE", a, { ...a, active: false })], 9n);
    expect(e.check(user(BOB), "members.invite", org(A), NOW).reason).toBe("NO_GRANT");
  });

  it("asks for a reload on TRUNCATE", () => {
    const e = buildSnapshot(1n, {});
    expect(() => e.apply([change("roles", "TRUNCATE", null, null)], 2n)).toThrow(/truncated/);
  });

  it("asks for a reload on a bulk import's RELOAD row, whatever table it names", () => {
    const e = buildSnapshot(1n, {});
    expect(() => e.apply([change("authz_import", "RELOAD", null, { sections: 3 })], 2n)).toThrow(NeedsReload);
  });
});

describe("Snapshot.list", () => {
  it("gives the UserOrganizationInfo shape per scope", () => {
    const e = dataset();
    const l = e.list(user(ALICE), undefined, NOW);
    expect(l?.subjectStatus).toBe("GRANTED");
    expect(l?.entries).toEqual([
      {
        scope: { type: "organization", id: A },
        orgId: A,
        orgName: "A",
        urlSafeOrgName: "a",
        orgRoleStructure: "single_role_in_hierarchy",
        userRole: "owner",
        inheritedUserRolesPlusCurrentRole: ["admin", "auditor", "member", "owner"],
        userPermissions: ["audit.read", "members.invite", "members.read", "org.delete"],
        additionalRoles: [],
      },
    ]);
    expect(e.list(user(LOCKED), undefined, NOW)).toEqual({ subjectStatus: "SUBJECT_LOCKED", entries: [] });
    expect(e.list(user("00000000-0000-4000-8000-00000000ffff"), undefined, NOW)).toBeUndefined();
  });

  it("lists a principal's avatar scope with its account role and built-in roles", () => {
    const e = dataset();
    const l = e.list({ type: "principal", id: PRIN }, undefined, NOW);
    expect(l?.entries).toHaveLength(1);
    expect(l?.entries[0]).toMatchObject({
      scope: { type: "avatar", id: AV },
      userPermissions: ["audit.read", "avatar.post", "members.read"],
    });
    // A principal has no place naming a primary role: every role it holds there is an additional one.
    expect(l?.entries[0]?.userRole).toBe("");
    expect([...(l?.entries[0]?.additionalRoles ?? [])].sort()).toEqual(["avatar_member", "avatar_owner", "member"]);
  });
});

describe("time boundaries (decided at exactly the stored instant)", () => {
  const e = dataset();
  const p = { type: "principal" as const, id: PRIN };
  const av = { type: "avatar" as const, id: AV };

  it("an assignment stops counting at its valid_until", () => {
    expect(e.check(user(BOB), "members.invite", org(A), NOW + 999).allowed).toBe(true);
    expect(e.check(user(BOB), "members.invite", org(A), NOW + 1000).reason).toBe("NO_GRANT");
  });

  it("a membership counts from its accepted_at and stops at its valid_until", () => {
    expect(e.check(p, "avatar.post", av, NOW - 1000).allowed).toBe(true);
    expect(e.check(p, "avatar.post", av, NOW + 59_999).allowed).toBe(true);
    expect(e.check(p, "avatar.post", av, NOW + 60_000).reason).toBe("NO_GRANT");
  });

  it("a principal is accepted from its accepted_at and expires at its valid_until", () => {
    let e2 = dataset();
    const row = { id: PRIN, account_id: ACC, subject_type: "user", subject_id: BOB, active: true, accepted_at: iso(NOW), valid_until: iso(NOW + 5000) };
    e2 = e2.apply([{ table: "principals", op: "UPDATE", oldRow: row, newRow: row }], 8n);
    expect(e2.check(p, "members.read", av, NOW - 1).reason).toBe("NOT_ACCEPTED");
    expect(e2.check(p, "members.read", av, NOW).allowed).toBe(true);
    expect(e2.check(p, "members.read", av, NOW + 4999).allowed).toBe(true);
    expect(e2.check(p, "members.read", av, NOW + 5000).reason).toBe("PRINCIPAL_EXPIRED");
  });
});

describe("Snapshot.list after permission churn", () => {
  it("reports a permission added after another was deleted (same count, new bit)", () => {
    let e = dataset();
    const P_NEW = "00000000-0000-4000-8000-0000000000e9";
    e = e.apply(
      [
        { table: "role_permissions", op: "DELETE", oldRow: { role_id: OWNER, permission_id: P_DELETE }, newRow: null },
        { table: "permissions", op: "DELETE", oldRow: { id: P_DELETE, organization_id: A, key: "org.delete" }, newRow: null },
        { table: "permissions", op: "INSERT", oldRow: null, newRow: { id: P_NEW, organization_id: A, key: "org.archive" } },
        { table: "role_permissions", op: "INSERT", oldRow: null, newRow: { role_id: OWNER, permission_id: P_NEW } },
      ],
      8n,
    );
    const perms = e.list(user(ALICE), undefined, NOW)?.entries[0]?.userPermissions;
    expect(perms).toContain("org.archive");
    expect(perms).not.toContain("org.delete");
  });
});

describe("a grant's expiry (stored as two ints: high and low 32 bits of epoch ms)", () => {
  const U = "00000000-0000-4000-8000-0000000009f1";
  const G = "00000000-0000-4000-8000-0000000009a1";
  const snapshotWith = (validUntil: string | null) =>
    buildSnapshot(1n, {
      tenants: [{ id: T }],
      organizations: [{ id: A, tenant_id: T, name: "A", slug: "a", role_structure: "single_role_in_hierarchy" }],
      users: [{ id: U, locked: false, enabled: true }],
      roles: [{ id: MEMBER, organization_id: A, key: "member", name: "Member" }],
      permissions: [{ id: P_READ, organization_id: A, key: "members.read" }],
      role_permissions: [{ role_id: MEMBER, permission_id: P_READ }],
      role_assignments: [
        { id: G, subject_type: "user", subject_id: U, role_id: MEMBER, scope_type: "organization", scope_id: A, active: true, valid_until: validUntil },
      ],
    });
  const window = 2 ** 32;
  // Around now, at the edges of now's 2^32 ms window, far ahead (past 2038 and 2106 in seconds) and before 1970.
  const cases: Array<[string, number | null]> = [
    ["never", null],
    ["1 ms ago", NOW - 1],
    ["now", NOW],
    ["in 1 ms", NOW + 1],
    ["one window ahead", NOW + window],
    ["one window ago", NOW - window],
    ["at the start of now's window", Math.floor(NOW / window) * window],
    ["at the end of now's window", Math.floor(NOW / window) * window + window - 1],
    ["in 2200", Date.parse("2200-01-01T00:00:00Z")],
    ["in 1960", Date.parse("1960-01-01T00:00:00Z")],
  ];
  for (const [name, until] of cases) {
    it(`${name}: granted exactly when it ends after now, with the assignment named`, () => {
      const snap = snapshotWith(until === null ? null : iso(until));
      const d = snap.check({ type: "user", id: U }, "members.read", { type: "organization", id: A }, NOW, true);
      const granted = until === null || until > NOW;
      expect(d.allowed).toBe(granted);
      if (granted) expect(d.steps?.[0]).toMatchObject({ kind: "ASSIGNMENT", id: G });
    });
  }
});

describe("an organization's permission table, hashed and (past 254 permissions) searched", () => {
  const id = (tag: number, i: number) => `00000000-0000-4000-8${tag}00-${i.toString(16).padStart(12, "0")}`;
  const U = id(1, 1);
  const ROLE = id(2, 1);
  const rename = (p: Record<string, unknown>, key: string): Change => ({ table: "permissions", op: "UPDATE", oldRow: p, newRow: { ...p, key } });
  for (const count of [10, 300]) {
    it(`${count} permissions: each key matches its own permission and bit, also after a rename`, () => {
      const perms = Array.from({ length: count }, (_, i) => ({ id: id(3, i), organization_id: A, key: `k.${i}` }));
      let snap = buildSnapshot(1n, {
        organizations: [{ id: A, tenant_id: null, name: "A", slug: "a", role_structure: "multi_role" }],
        users: [{ id: U, locked: false, enabled: true }],
        roles: [{ id: ROLE, organization_id: A, key: "r", name: "R" }],
        permissions: perms,
        // The role holds every third permission.
        role_permissions: perms.filter((_, i) => i % 3 === 0).map((p) => ({ role_id: ROLE, permission_id: p.id })),
        role_assignments: [
          { id: id(4, 1), subject_type: "user", subject_id: U, role_id: ROLE, scope_type: "organization", scope_id: A, active: true, valid_until: null },
        ],
      });
      const can = (key: string) => snap.check({ type: "user", id: U }, key, { type: "organization", id: A }, NOW).reason;
      for (let i = 0; i < count; i++) expect(can(`k.${i}`)).toBe(i % 3 === 0 ? "GRANTED" : "NO_GRANT");
      expect(can("k.none")).toBe("PERMISSION_NOT_FOUND");
      snap = snap.apply([rename(perms[3] as Record<string, unknown>, "k.renamed")], 2n);
      expect(can("k.renamed")).toBe("GRANTED");
      expect(can("k.3")).toBe("PERMISSION_NOT_FOUND");
      expect(can("k.6")).toBe("GRANTED");
      expect(can("k.7")).toBe("NO_GRANT");
    });
  }
});

describe("an apply that adds many permissions to one organization", () => {
  it("writes the organization's permission table to the arena once, not once per permission (the arena is append-only)", () => {
    const e = dataset();
    const n = 2000;
    const id = (i: number) => `00000000-0000-4000-8000-${(0xa00000 + i).toString(16).padStart(12, "0")}`;
    const inserts: Change[] = Array.from({ length: n }, (_, i) => ({
      table: "permissions",
      op: "INSERT",
      oldRow: null,
      newRow: { id: id(i), organization_id: A, key: `bulk.${String(i).padStart(5, "0")}` },
    }));
    const before = e.memory().arena as number;
    const after = e.apply(inserts, 8n);
    const grown = (after.memory().arena as number) - before;
    // One copy of the table: about 2n words. A copy per insert wrote n·(n+1) words (16 MB here).
    expect(grown).toBeLessThan(1 << 20);
    // And every new key is found.
    expect(after.list(user(ALICE), undefined, NOW)).toBeDefined();
    expect(after.check(user(ALICE), `bulk.${String(n - 1).padStart(5, "0")}`, org(A), NOW).reason).not.toBe("PERMISSION_NOT_FOUND");
  });
});
