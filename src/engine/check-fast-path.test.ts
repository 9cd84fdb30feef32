import { describe, expect, it } from "vitest";

import type { Change } from "./rows.js";
import { buildSnapshot, type Snapshot } from "./snapshot.js";

// Check answers a user on an organization through a short path of its own
// (check.ts userOnOrg) and everything else, explain included, through the
// general one. Both must decide alike: every user state (locked, disabled,
// unknown), grant scope (organization, its tenant, global, another
// organization), expiry (past, in the same 2^32 ms window as now, where the
// low int decides, or never), organization and global permissions, before and
// after changes applied to a fork (whose written pages lie over the build's).

const NOW = Date.parse("2026-06-01T00:00:00Z");
const id = (tag: number, i: number) => `00000000-0000-4000-8000-${(tag * 0x100000 + i).toString(16).padStart(12, "0")}`;
const tenant = (t: number) => id(0x1, t);
const org = (o: number) => id(0x2, o);
const user = (u: number) => id(0x3, u);
const role = (r: number) => id(0x4, r);
const GLOBAL_ROLE = id(0x5, 0);
const USERS = 8;
const ORGS = 3;
const ORG_PERMS = ["doc.read", "doc.write"];
const GLOBAL_PERM = "audit.view";
const SCOPES = ["organization", "tenant", "global", "other"] as const;
const EXPIRIES = [null, NOW - 1, NOW, NOW + 1, NOW + 3_600_000] as const;

/** Org o's role r holds ORG_PERMS[r]; the global role holds GLOBAL_PERM. */
function tables(locked: Set<number>, disabled: Set<number>) {
  const roles = [];
  const permissions = [];
  const rolePermissions = [];
  for (let o = 0; o < ORGS; o++)
    for (let r = 0; r < ORG_PERMS.length; r++) {
      roles.push({ id: role(o * 10 + r), organization_id: org(o), key: `r${r}`, name: `R${r}` });
      permissions.push({ id: id(0x6, o * 10 + r), organization_id: org(o), key: ORG_PERMS[r] });
      rolePermissions.push({ role_id: role(o * 10 + r), permission_id: id(0x6, o * 10 + r) });
    }
  roles.push({ id: GLOBAL_ROLE, organization_id: null, key: "auditor", name: "Auditor" });
  permissions.push({ id: id(0x7, 0), organization_id: null, key: GLOBAL_PERM });
  rolePermissions.push({ role_id: GLOBAL_ROLE, permission_id: id(0x7, 0) });
  return {
    tenants: [{ id: tenant(0) }, { id: tenant(1) }],
    // Organization 2 is in the other tenant: a grant on tenant 0 does not reach it.
    organizations: Array.from({ length: ORGS }, (_, o) => ({
      id: org(o),
      tenant_id: tenant(o === 2 ? 1 : 0),
      name: `O${o}`,
      slug: `o${o}`,
      role_structure: "multi_role",
    })),
    users: Array.from({ length: USERS }, (_, u) => ({ id: user(u), locked: locked.has(u), enabled: !disabled.has(u) })),
    roles,
    permissions,
    role_permissions: rolePermissions,
  };
}

/** Assignment a of user u: role, scope and expiry vary with a; some inactive. */
function assignment(a: number, u: number) {
  const scope = SCOPES[a % SCOPES.length] as (typeof SCOPES)[number];
  const o = (a >> 2) % ORGS;
  const global = scope === "global" || (scope === "tenant" && a % 3 === 0);
  return {
    id: id(0x8, a),
    subject_type: "user",
    subject_id: user(u),
    role_id: global ? GLOBAL_ROLE : role(o * 10 + (a % ORG_PERMS.length)),
    scope_type: scope === "other" ? "organization" : scope,
    scope_id: scope === "global" ? null : scope === "tenant" ? tenant(0) : scope === "other" ? org((o + 1) % ORGS) : org(o),
    active: a % 7 !== 6,
    valid_until: EXPIRIES[a % EXPIRIES.length] === null ? null : new Date(EXPIRIES[a % EXPIRIES.length] as number),
  };
}

/** Every user (and one unknown) x permission (and one unknown) x organization (and one unknown) x time, both paths. */
function expectPathsAgree(snap: Snapshot, label: string): number {
  let granted = 0;
  const users = [...Array.from({ length: USERS }, (_, u) => user(u)), id(0x3, 999)];
  const orgs = [...Array.from({ length: ORGS }, (_, o) => org(o)), id(0x2, 999)];
  for (const u of users)
    for (const p of [...ORG_PERMS, GLOBAL_PERM, "nope.none"])
      for (const o of orgs)
        for (const now of [NOW - 2, NOW - 1, NOW, NOW + 1, NOW + 7_200_000]) {
          const fast = snap.check({ type: "user", id: u }, p, { type: "organization", id: o }, now);
          const general = snap.check({ type: "user", id: u }, p, { type: "organization", id: o }, now, true);
          expect({ allowed: fast.allowed, reason: fast.reason }, `${label}: ${u} ${p} ${o} at ${now - NOW}`).toEqual({
            allowed: general.allowed,
            reason: general.reason,
          });
          if (fast.allowed) granted++;
        }
  return granted;
}

describe("Check's user-on-organization path", () => {
  it("decides as the general path, on a build and on forks after changes", () => {
    const perUser = 9;
    const rows = tables(new Set([5]), new Set([6]));
    const assignments = Array.from({ length: USERS * perUser }, (_, a) => assignment(a, Math.floor(a / perUser)));
    let snap = buildSnapshot(1n, { ...rows, role_assignments: assignments });
    const granted = expectPathsAgree(snap, "build");
    expect(granted, "some checks are granted").toBeGreaterThan(20);

    // Forks: delete some, reactivate or deactivate others, extend expiries, lock a user, add grants.
    let rev = 2n;
    for (let round = 0; round < 4; round++) {
      const changes: Change[] = [];
      assignments.forEach((row, a) => {
        if ((a + round) % 5 === 0) {
          const next = { ...row, active: !row.active, valid_until: round % 2 === 0 ? null : row.valid_until };
          changes.push({ table: "role_assignments", op: "UPDATE", oldRow: row, newRow: next });
          assignments[a] = next;
        }
      });
      const gone = assignments.splice(round * 3, 2);
      for (const row of gone) changes.push({ table: "role_assignments", op: "DELETE", oldRow: row, newRow: null });
      const fresh = assignment(1000 + round, round % USERS);
      assignments.push(fresh);
      changes.push({ table: "role_assignments", op: "INSERT", oldRow: null, newRow: fresh });
      const u = round % USERS;
      const before = rows.users[u] as { id: string; locked: boolean; enabled: boolean };
      const after = { ...before, locked: !before.locked };
      rows.users[u] = after;
      changes.push({ table: "users", op: "UPDATE", oldRow: before, newRow: after });
      snap = snap.apply(changes, rev++);
      expectPathsAgree(snap, `fork ${round}`);
    }
  });
});
