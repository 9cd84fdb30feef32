// The lookups against brute force: on random datasets (and after random
// changes applied incrementally), lookupSubjects and lookupResources must
// answer exactly the set that Check grants, subject by subject and resource
// by resource. Also pins snapshot immutability: an apply, returning or
// throwing, leaves the snapshot it started from answering as before.
import { describe, expect, it } from "vitest";
import type { Change } from "./rows.js";
import { buildSnapshot, NeedsReload, type Snapshot } from "./snapshot.js";
import type { ResourceRef, ResourceType, SubjectRef } from "./types.js";

const NOW = Date.parse("2026-06-01T00:00:00Z");
const KEYS = ["doc.read", "doc.write", "org.admin", "audit.read", "avatar.post"];

function prng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T,
    chance: (p: number) => next() < p,
  };
}

type Rng = ReturnType<typeof prng>;
type Row = Record<string, unknown>;
let counter = 0;
const uuid = (kind: number) => `${kind.toString(16).padStart(8, "0")}-0000-4000-8000-${(++counter).toString(16).padStart(12, "0")}`;
const time = (r: Rng) => (r.chance(0.6) ? null : new Date(NOW + (r.int(5) - 2) * 60_000).toISOString());

interface Dataset {
  tables: Record<string, Row[]>;
  subjects: SubjectRef[];
  resources: ResourceRef[];
}

function generate(r: Rng): Dataset {
  const tenants = [0, 1].map(() => ({ id: uuid(1) }));
  const orgs = [0, 1, 2, 3].map((i) => ({
    id: uuid(2),
    tenant_id: i < 3 ? tenants[i % 2]?.id : null,
    name: `O${i}`,
    slug: `o${i}`,
    role_structure: "multi_role",
  }));
  const users = Array.from({ length: 10 }, () => ({ id: uuid(3), locked: r.chance(0.1), enabled: !r.chance(0.1) }));
  const staff = [{ id: uuid(4) }, { id: uuid(4) }];
  const accounts = Array.from({ length: 3 }, () => ({ id: uuid(5), organization_id: r.pick(orgs).id, active: !r.chance(0.2) }));
  const principals = Array.from({ length: 7 }, () => {
    const isStaff = r.chance(0.2);
    return {
      id: uuid(6),
      account_id: r.pick(accounts).id,
      subject_type: isStaff ? "staff" : "user",
      subject_id: isStaff ? r.pick(staff).id : r.pick(users).id,
      active: !r.chance(0.1),
      accepted_at: r.chance(0.1) ? null : new Date(NOW - 60_000).toISOString(),
      valid_until: time(r),
    };
  });
  const avatars = Array.from({ length: 7 }, () => ({ id: uuid(7), organization_id: r.pick(orgs).id, active: !r.chance(0.15) }));
  const memberships = Array.from({ length: 12 }, () => ({
    id: uuid(8),
    principal_id: r.pick(principals).id,
    avatar_id: r.pick(avatars).id,
    owner: r.chance(0.4),
    active: !r.chance(0.1),
    accepted_at: r.chance(0.1) ? null : new Date(NOW - 60_000).toISOString(),
    valid_until: time(r),
  }));
  const globalRoles = [
    { id: "00000000-0000-4000-8000-00000000a001", organization_id: null, key: "avatar_member", name: "Avatar member" },
    { id: "00000000-0000-4000-8000-00000000a002", organization_id: null, key: "avatar_owner", name: "Avatar owner" },
    { id: uuid(9), organization_id: null, key: "auditor", name: "Auditor" },
  ];
  const orgRoles = orgs.flatMap((o) => [0, 1, 2].map((i) => ({ id: uuid(9), organization_id: o.id, key: `r${i}`, name: `R${i}` })));
  const roles = [...globalRoles, ...orgRoles];
  const permissions = [
    ...KEYS.filter(() => r.chance(0.8)).map((key) => ({ id: uuid(10), organization_id: null, key })),
    ...orgs.flatMap((o) => KEYS.filter(() => r.chance(0.5)).map((key) => ({ id: uuid(10), organization_id: o.id, key }))),
  ];
  const rolePermissions: Row[] = [];
  for (const role of roles) {
    for (const p of permissions) {
      const usable = p.organization_id === null || p.organization_id === role.organization_id;
      if (usable && r.chance(0.3)) rolePermissions.push({ role_id: role.id, permission_id: p.id });
    }
  }
  const inheritance: Row[] = [];
  for (const o of orgs) {
    const rs = orgRoles.filter((x) => x.organization_id === o.id);
    if (r.chance(0.8)) inheritance.push({ role_id: rs[0]?.id, parent_role_id: rs[1]?.id });
    if (r.chance(0.6)) inheritance.push({ role_id: rs[1]?.id, parent_role_id: rs[2]?.id });
    if (r.chance(0.5)) inheritance.push({ role_id: rs[2]?.id, parent_role_id: globalRoles[2]?.id });
  }
  const subjects: SubjectRef[] = [
    ...users.map((u) => ({ type: "user" as const, id: u.id })),
    ...staff.map((s) => ({ type: "staff" as const, id: s.id })),
    ...accounts.map((a) => ({ type: "account" as const, id: a.id })),
    ...principals.map((p) => ({ type: "principal" as const, id: p.id })),
  ];
  const resources: ResourceRef[] = [
    ...tenants.map((t) => ({ type: "tenant" as const, id: t.id })),
    ...orgs.map((o) => ({ type: "organization" as const, id: o.id })),
    ...avatars.map((a) => ({ type: "avatar" as const, id: a.id })),
  ];
  const assignments = Array.from({ length: 45 }, () => randomAssignment(r, subjects, resources, roles));
  return {
    tables: {
      tenants,
      organizations: orgs,
      users,
      staff,
      accounts,
      principals,
      avatars,
      memberships,
      roles,
      permissions,
      role_permissions: rolePermissions,
      role_inheritance: inheritance,
      role_assignments: assignments,
      user_organizations: users.slice(0, 5).map((u) => ({ user_id: u.id, organization_id: r.pick(orgs).id, primary_role_id: r.pick(orgRoles).id })),
    },
    subjects,
    resources,
  };
}

function randomAssignment(r: Rng, subjects: SubjectRef[], resources: ResourceRef[], roles: Row[]): Row {
  const scope = r.chance(0.1) ? undefined : r.pick(resources);
  const subject = r.pick(subjects);
  return {
    id: uuid(11),
    subject_type: subject.type,
    subject_id: subject.id,
    role_id: r.pick(roles).id,
    scope_type: scope?.type ?? "global",
    scope_id: scope?.id ?? null,
    active: !r.chance(0.1),
    valid_until: time(r),
  };
}

/** Random changes of the kinds that move lookups: assignments, memberships, statuses, edges, grants of permissions. */
function randomChanges(r: Rng, d: Dataset, n: number): Change[] {
  const t = d.tables as Record<string, Row[]>;
  const out: Change[] = [];
  const flip = (table: string, field: string) => {
    const rows = t[table] as Row[];
    const i = r.int(rows.length);
    const old = rows[i] as Row;
    const row = { ...old, [field]: !old[field] };
    rows[i] = row;
    out.push({ table, op: "UPDATE", oldRow: old, newRow: row });
  };
  const remove = (table: string) => {
    const rows = t[table] as Row[];
    if (rows.length === 0) return;
    const [old] = rows.splice(r.int(rows.length), 1);
    out.push({ table, op: "DELETE", oldRow: old as Row, newRow: null });
  };
  for (let k = 0; k < n; k++) {
    switch (r.int(8)) {
      case 0: {
        const row = randomAssignment(r, d.subjects, d.resources, t.roles as Row[]);
        (t.role_assignments as Row[]).push(row);
        out.push({ table: "role_assignments", op: "INSERT", oldRow: null, newRow: row });
        break;
      }
      case 1:
        remove("role_assignments");
        break;
      case 2:
        flip("role_assignments", "active");
        break;
      case 3:
        flip("memberships", r.chance(0.5) ? "owner" : "active");
        break;
      case 4:
        flip(r.pick(["users", "accounts", "avatars", "principals"]), r.chance(0.5) ? "active" : "locked");
        break;
      case 5:
        remove("role_inheritance");
        break;
      case 6:
        remove("role_permissions");
        break;
      default:
        remove("memberships");
    }
  }
  return out;
}

const subjectKey = (s: SubjectRef) => `${s.type}:${s.id}`;
const resourceKey = (x: ResourceRef) => `${x.type}:${x.id}`;

function compareWithCheck(e: Snapshot, d: Dataset, now: number): number {
  let granted = 0;
  for (const key of KEYS) {
    for (const res of d.resources) {
      const want = d.subjects
        .filter((s) => e.check(s, key, res, now).allowed)
        .map(subjectKey)
        .sort();
      const got = [...e.lookupSubjects(key, res, now)];
      expect(got.map((g) => subjectKey(g.subject)).sort(), `lookupSubjects(${key}, ${resourceKey(res)})`).toEqual(want);
      for (const g of got) expect(["ASSIGNMENT", "MEMBERSHIP"]).toContain(g.grant.kind);
      granted += want.length;
    }
    for (const s of d.subjects) {
      for (const type of ["tenant", "organization", "avatar"] as ResourceType[]) {
        const want = d.resources
          .filter((x) => x.type === type && e.check(s, key, x, now).allowed)
          .map(resourceKey)
          .sort();
        const got = [...e.lookupResources(s, key, type, now)].map(resourceKey).sort();
        expect(got, `lookupResources(${subjectKey(s)}, ${key}, ${type})`).toEqual(want);
      }
    }
  }
  return granted;
}

/** Every decision of the snapshot over the dataset's subjects, keys and resources, as one string per check. */
function fingerprint(e: Snapshot, d: Dataset, now: number): string[] {
  const out: string[] = [];
  for (const s of d.subjects) for (const key of KEYS) for (const res of d.resources) out.push(e.check(s, key, res, now).reason);
  for (const s of d.subjects) out.push(JSON.stringify(e.list(s, undefined, now)));
  out.push(JSON.stringify(e.stats()));
  return out;
}

describe("lookups agree with brute-force Check", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`seed ${seed}: after build and after each of 4 rounds of changes, at three instants`, () => {
      const r = prng(seed);
      const d = generate(r);
      let e = buildSnapshot(1n, d.tables);
      let granted = 0;
      for (let round = 0; round < 5; round++) {
        if (round > 0) e = e.apply(randomChanges(r, d, 8), BigInt(round + 1));
        for (const dt of [-90_000, 0, 90_000]) granted += compareWithCheck(e, d, NOW + dt);
      }
      // The comparison is not vacuous: some checks were granted.
      expect(granted).toBeGreaterThan(0);
    });
  }
});

describe("snapshots are immutable", () => {
  it("apply leaves the old snapshot answering exactly as before, and the new one differs", () => {
    const r = prng(11);
    const d = generate(r);
    const before = buildSnapshot(1n, d.tables);
    const print = fingerprint(before, d, NOW);
    const after = before.apply(randomChanges(r, d, 30), 2n);
    expect(fingerprint(before, d, NOW)).toEqual(print);
    expect(fingerprint(after, d, NOW)).not.toEqual(print);
    expect(before.revision).toBe(1n);
    expect(after.revision).toBe(2n);
  });

  it("an apply that throws half-way (TRUNCATE, or a malformed row) leaves the old snapshot as it was", () => {
    const r = prng(12);
    const d = generate(r);
    const before = buildSnapshot(1n, d.tables);
    const print = fingerprint(before, d, NOW);
    const changes = randomChanges(r, d, 30);
    expect(() => before.apply([...changes, { table: "roles", op: "TRUNCATE", oldRow: null, newRow: null }], 2n)).toThrow(NeedsReload);
    expect(fingerprint(before, d, NOW)).toEqual(print);
    const malformed = { table: "users", op: "INSERT", oldRow: null, newRow: { id: "not-a-uuid", locked: false, enabled: true } } as const;
    expect(() => before.apply([...changes, malformed], 2n)).toThrow(/not a UUID/);
    expect(fingerprint(before, d, NOW)).toEqual(print);
    // And it still applies the same changes cleanly afterwards.
    expect(fingerprint(before.apply(changes, 2n), d, NOW)).not.toEqual(print);
  });

  it("snapshots forked from one parent do not see each other's changes", () => {
    const r = prng(13);
    const d = generate(r);
    const base = buildSnapshot(1n, d.tables);
    const alice = d.subjects[0] as SubjectRef;
    const org = d.resources.find((x) => x.type === "organization") as ResourceRef;
    const lock = (locked: boolean): Change => ({
      table: "users",
      op: "UPDATE",
      oldRow: d.tables.users?.[0] as Row,
      newRow: { ...(d.tables.users?.[0] as Row), locked, enabled: true },
    });
    const a = base.apply([lock(true)], 2n);
    const b = base.apply([lock(false)], 2n);
    expect(a.check(alice, KEYS[0] as string, org, NOW).reason).toBe(
      base.check(alice, KEYS[0] as string, org, NOW).reason === "PERMISSION_NOT_FOUND" ? "PERMISSION_NOT_FOUND" : "SUBJECT_LOCKED",
    );
    expect(b.check(alice, KEYS[0] as string, org, NOW).reason).not.toBe("SUBJECT_LOCKED");
  });
});
