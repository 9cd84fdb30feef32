// Seeded random datasets, change sequences and checks for the differential
// test of the engine against the SQL oracle (test/support/oracle.ts).
// Everything here is deterministic from the seed: a failing seed reproduces.
import type postgres from "postgres";
import { AuthzError } from "../../src/errors.js";
import type { DirectoryMutation } from "../../src/store/directory-mutations.js";
import { manageDirectory } from "../../src/store/directory-writer.js";
import type { SqlClient } from "../../src/store/sql.js";
import type { OracleCheck } from "./oracle.js";

// ---------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  /** True with probability p. */
  bool(p?: number): boolean;
  /** A shuffled copy. */
  shuffle<T>(xs: readonly T[]): T[];
  /** k distinct elements (all of them when k >= length), in random order. */
  sample<T>(xs: readonly T[], k: number): T[];
  /** A version 4 UUID drawn from this generator. */
  uuid(): string;
}

/** mulberry32 with a few helpers. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  const shuffle = <T>(xs: readonly T[]): T[] => {
    const out = [...xs];
    for (let i = out.length - 1; i > 0; i--) {
      const j = int(0, i);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  };
  return {
    next,
    int,
    pick<T>(xs: readonly T[]): T {
      if (xs.length === 0) throw new Error("rng.pick from an empty list");
      return xs[int(0, xs.length - 1)] as T;
    },
    bool: (p = 0.5) => next() < p,
    shuffle,
    sample: <T>(xs: readonly T[], k: number): T[] => shuffle(xs).slice(0, Math.max(0, k)),
    uuid(): string {
      const b: number[] = [];
      for (let i = 0; i < 16; i++) b.push(int(0, 255));
      b[6] = ((b[6] as number) & 0x0f) | 0x40;
      b[8] = ((b[8] as number) & 0x3f) | 0x80;
      const h = b.map((x) => x.toString(16).padStart(2, "0")).join("");
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    },
  };
}

// ---------------------------------------------------------------------------
// Dataset
// ---------------------------------------------------------------------------

export const AVATAR_MEMBER_ROLE_ID = "00000000-0000-4000-8000-00000000a001";
export const AVATAR_OWNER_ROLE_ID = "00000000-0000-4000-8000-00000000a002";
const BUILTIN_ROLE_IDS: ReadonlySet<string> = new Set([AVATAR_MEMBER_ROLE_ID, AVATAR_OWNER_ROLE_ID]);

/** Permission keys the generators draw from (orgs and global share some). */
export const KEY_POOL: readonly string[] = [
  "doc.read",
  "doc.write",
  "doc.delete",
  "members.read",
  "members.invite",
  "members.remove",
  "billing.read",
  "billing.manage",
  "settings.manage",
  "avatar.view",
  "avatar.post",
  "avatar.moderate",
  "avatar.transfer",
  "audit.read",
  "reports.export",
  "support.read",
];

export type SubjectType = "user" | "account" | "principal" | "staff";
export type ScopeType = "global" | "tenant" | "organization" | "avatar";

export interface TenantRow {
  id: string;
  name: string;
  slug: string;
}
export interface OrganizationRow {
  id: string;
  tenant_id: string | null;
  name: string;
  slug: string;
  role_structure: "single_role_in_hierarchy" | "multi_role";
}
export interface UserRow {
  id: string;
  email: string;
  locked: boolean;
  enabled: boolean;
}
export interface StaffRow {
  id: string;
  logical_key: string;
}
export interface AccountRow {
  id: string;
  organization_id: string;
  email: string;
  active: boolean;
}
export interface PrincipalRow {
  id: string;
  account_id: string;
  subject_type: "user" | "staff";
  subject_id: string;
  active: boolean;
  accepted_at: Date | null;
  valid_until: Date | null;
}
export interface AvatarRow {
  id: string;
  organization_id: string;
  handle: string;
  active: boolean;
}
export interface MembershipRow {
  id: string;
  principal_id: string;
  avatar_id: string;
  owner: boolean;
  active: boolean;
  accepted_at: Date | null;
  valid_until: Date | null;
}
export interface RoleRow {
  id: string;
  organization_id: string | null;
  key: string;
  name: string;
}
export interface PermissionRow {
  id: string;
  organization_id: string | null;
  key: string;
}
export interface RolePermissionRow {
  id: string;
  role_id: string;
  permission_id: string;
}
export interface RoleInheritanceRow {
  role_id: string;
  parent_role_id: string;
}
export interface RoleAssignmentRow {
  id: string;
  subject_type: SubjectType;
  subject_id: string;
  role_id: string;
  scope_type: ScopeType;
  scope_id: string | null;
  active: boolean;
  valid_until: Date | null;
}

export interface Dataset {
  /** The reference time the timestamps are spread around. */
  now: Date;
  tenants: TenantRow[];
  organizations: OrganizationRow[];
  users: UserRow[];
  staff: StaffRow[];
  accounts: AccountRow[];
  principals: PrincipalRow[];
  avatars: AvatarRow[];
  memberships: MembershipRow[];
  /** Includes the two built-in global roles, which the migrations already created (insertDataset skips them). */
  roles: RoleRow[];
  permissions: PermissionRow[];
  role_permissions: RolePermissionRow[];
  role_inheritance: RoleInheritanceRow[];
  role_assignments: RoleAssignmentRow[];
}

export interface DatasetOptions {
  /** Reference time; default 2026-06-01T12:00:00Z. */
  now?: Date;
  tenants?: number;
  /** Organization 0 has no tenant. */
  orgs?: number;
  users?: number;
  staff?: number;
  accounts?: number;
  principals?: number;
  avatars?: number;
  memberships?: number;
  /** Global roles besides the two built-ins. */
  globalRoles?: number;
  globalPermissions?: number;
  assignments?: number;
}

export const DEFAULT_NOW = new Date("2026-06-01T12:00:00Z");

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** A time around `now`: far past, minutes ago, minutes ahead, far future. */
function around(r: Rng, now: Date): Date {
  const offsets = [-400 * DAY, -30 * DAY, -DAY, -60 * MINUTE, -5 * MINUTE, -MINUTE, MINUTE, 5 * MINUTE, 60 * MINUTE, DAY, 30 * DAY, 400 * DAY];
  return new Date(now.getTime() + r.pick(offsets) + r.int(0, 59) * 1000);
}
const past = (r: Rng, now: Date): Date => new Date(now.getTime() - r.pick([400 * DAY, 30 * DAY, DAY, 60 * MINUTE, 5 * MINUTE]) - r.int(1, 59) * 1000);
const future = (r: Rng, now: Date): Date => new Date(now.getTime() + r.pick([MINUTE, 5 * MINUTE, 60 * MINUTE, DAY, 400 * DAY]) + r.int(1, 59) * 1000);
const nearFuture = (r: Rng, now: Date): Date => new Date(now.getTime() + r.int(1, 120) * MINUTE);
/** An expiry: mostly none, else spread around now. */
const validUntil = (r: Rng, now: Date, pNull: number): Date | null => (r.bool(pNull) ? null : around(r, now));

/** A random dataset, small by default, with every table of the decision rules filled. */
export function generateDataset(r: Rng, opts: DatasetOptions = {}): Dataset {
  const now = opts.now ?? DEFAULT_NOW;
  const n = {
    tenants: opts.tenants ?? 2,
    orgs: opts.orgs ?? 4,
    users: opts.users ?? 40,
    staff: opts.staff ?? 6,
    accounts: opts.accounts ?? 10,
    principals: opts.principals ?? 30,
    avatars: opts.avatars ?? 8,
    memberships: opts.memberships ?? 40,
    globalRoles: opts.globalRoles ?? 4,
    globalPermissions: opts.globalPermissions ?? 6,
    assignments: opts.assignments ?? 200,
  };
  if (n.orgs < 1) throw new Error("generateDataset needs at least one organization");
  const tag = r.int(0, 0xffffff).toString(16).padStart(6, "0");

  const tenants: TenantRow[] = Array.from({ length: n.tenants }, (_, i) => ({
    id: r.uuid(),
    name: `Tenant ${i}`,
    slug: `t${i}-${tag}`,
  }));
  // Organization 0 has no tenant; the others spread over the tenants (the first ones round-robin).
  const organizations: OrganizationRow[] = Array.from({ length: n.orgs }, (_, i) => ({
    id: r.uuid(),
    tenant_id: i === 0 || tenants.length === 0 ? null : (i - 1 < tenants.length ? (tenants[i - 1] as TenantRow) : r.pick(tenants)).id,
    name: `Org ${i}`,
    slug: `o${i}-${tag}`,
    // Both structures (docs/data-model.md, "Role structure"), without drawing from the generator.
    role_structure: i % 2 === 0 ? "single_role_in_hierarchy" : "multi_role",
  }));
  const singleRole = new Set(organizations.filter((o) => o.role_structure === "single_role_in_hierarchy").map((o) => o.id));
  // Some locked, some disabled (the first two for sure).
  const users: UserRow[] = Array.from({ length: n.users }, (_, i) => ({
    id: r.uuid(),
    email: `u${i}@${tag}.example`,
    locked: i === 0 || (i > 1 && r.bool(0.1)),
    enabled: i !== 1 && !(i > 1 && r.bool(0.1)),
  }));
  const staff: StaffRow[] = Array.from({ length: n.staff }, (_, i) => ({ id: r.uuid(), logical_key: `staff:${tag}:${i}` }));
  const accounts: AccountRow[] = Array.from({ length: n.accounts }, (_, i) => ({
    id: r.uuid(),
    organization_id: r.pick(organizations).id,
    email: `a${i}@${tag}.example`,
    active: i !== 0 && r.bool(0.8),
  }));

  // Principals: the first six cover each state, the rest are mostly fine.
  type State = "ok" | "inactive" | "unaccepted" | "future" | "expired" | "expiring";
  const forced: State[] = ["inactive", "unaccepted", "future", "expired", "expiring", "ok"];
  const principals: PrincipalRow[] = [];
  if (accounts.length > 0 && (users.length > 0 || staff.length > 0)) {
    for (let i = 0; i < n.principals; i++) {
      const state: State = forced[i] ?? (r.bool(0.6) ? "ok" : r.pick(["inactive", "unaccepted", "future", "expired", "expiring"] as const));
      const asStaff = staff.length > 0 && (users.length === 0 || i % 4 === 3 || r.bool(0.1));
      principals.push({
        id: r.uuid(),
        account_id: r.pick(accounts).id,
        subject_type: asStaff ? "staff" : "user",
        subject_id: asStaff ? r.pick(staff).id : r.pick(users).id,
        active: state !== "inactive",
        accepted_at: state === "unaccepted" ? null : state === "future" ? future(r, now) : past(r, now),
        valid_until: state === "expired" ? past(r, now) : state === "expiring" ? nearFuture(r, now) : r.bool(0.15) ? future(r, now) : null,
      });
    }
  }

  // Avatars: every organization gets one first (while there are enough), some inactive.
  const avatars: AvatarRow[] = Array.from({ length: n.avatars }, (_, i) => ({
    id: r.uuid(),
    organization_id: (i < organizations.length ? (organizations[i] as OrganizationRow) : r.pick(organizations)).id,
    handle: `av${i}`,
    active: i !== n.avatars - 1 && r.bool(0.8),
  }));

  // Memberships on distinct (principal, avatar) pairs, at most one active owner per avatar.
  const memberships: MembershipRow[] = [];
  const pairs = r.shuffle(principals.flatMap((p) => avatars.map((a) => [p.id, a.id] as const))).slice(0, n.memberships);
  const activeOwner = new Set<string>();
  for (const [principalId, avatarId] of pairs) {
    const active = r.bool(0.85);
    let owner = r.bool(0.3);
    if (owner && active) {
      if (activeOwner.has(avatarId)) owner = false;
      else activeOwner.add(avatarId);
    }
    memberships.push({
      id: r.uuid(),
      principal_id: principalId,
      avatar_id: avatarId,
      owner,
      active,
      accepted_at: r.bool(0.1) ? null : r.bool(0.8) ? past(r, now) : around(r, now),
      valid_until: validUntil(r, now, 0.7),
    });
  }
  // Every active avatar has exactly one active owner membership (enforced by the
  // database at commit, migration 0003): promote one of its active memberships,
  // or add one; an avatar no principal can join stays inactive.
  for (const a of avatars) {
    if (!a.active || activeOwner.has(a.id)) continue;
    const mine = memberships.filter((m) => m.avatar_id === a.id && m.active);
    if (mine.length > 0) {
      r.pick(mine).owner = true;
    } else {
      const taken = new Set(memberships.filter((m) => m.avatar_id === a.id).map((m) => m.principal_id));
      const free = principals.filter((p) => !taken.has(p.id));
      if (free.length === 0) {
        a.active = false;
        continue;
      }
      memberships.push({
        id: r.uuid(),
        principal_id: r.pick(free).id,
        avatar_id: a.id,
        owner: true,
        active: true,
        accepted_at: r.bool(0.1) ? null : r.bool(0.8) ? past(r, now) : around(r, now),
        valid_until: validUntil(r, now, 0.7),
      });
    }
    activeOwner.add(a.id);
  }

  // Permissions: global ones, and per organization 6-10 keys (some shared with global).
  const permissions: PermissionRow[] = [];
  const globalKeys = r.sample(KEY_POOL, n.globalPermissions);
  for (const key of globalKeys) permissions.push({ id: r.uuid(), organization_id: null, key });
  for (const o of organizations) {
    const keys = r.sample(KEY_POOL, r.int(6, 10));
    if (globalKeys.length > 0 && !keys.some((k) => globalKeys.includes(k))) keys[0] = r.pick(globalKeys);
    for (const key of keys) permissions.push({ id: r.uuid(), organization_id: o.id, key });
  }

  // Roles: the built-ins, more global roles, 4-6 per organization.
  const globalRoles: RoleRow[] = [
    { id: AVATAR_MEMBER_ROLE_ID, organization_id: null, key: "avatar_member", name: "Avatar member" },
    { id: AVATAR_OWNER_ROLE_ID, organization_id: null, key: "avatar_owner", name: "Avatar owner" },
    ...Array.from({ length: n.globalRoles }, (_, i) => ({ id: r.uuid(), organization_id: null, key: `global-${i}-${tag}`, name: `Global ${i}` })),
  ];
  const roles: RoleRow[] = [...globalRoles];
  const role_inheritance: RoleInheritanceRow[] = [];
  // A DAG by construction: a role only inherits from roles earlier in a random
  // order (mostly its predecessor, making chains), org roles also from global ones.
  const chain = (ordered: RoleRow[], parentsFromGlobal: boolean) => {
    ordered.forEach((role, i) => {
      const parents = new Set<string>();
      if (i > 0 && r.bool(0.75)) parents.add((ordered[i - 1] as RoleRow).id);
      for (let j = 0; j < i - 1; j++) if (r.bool(0.15)) parents.add((ordered[j] as RoleRow).id);
      if (parentsFromGlobal && r.bool(0.3)) parents.add(r.pick(globalRoles).id);
      for (const parent of parents) role_inheritance.push({ role_id: role.id, parent_role_id: parent });
    });
  };
  chain(r.shuffle(globalRoles), false);
  for (const o of organizations) {
    const own = Array.from({ length: r.int(4, 6) }, (_, i) => ({ id: r.uuid(), organization_id: o.id, key: `role-${i}`, name: `Role ${i}` }));
    roles.push(...own);
    chain(r.shuffle(own), true);
  }

  // Role permissions: a role holds its organization's or global permissions (global roles: global only).
  const role_permissions: RolePermissionRow[] = [];
  for (const role of roles) {
    const allowed = permissions.filter((p) => p.organization_id === null || p.organization_id === role.organization_id);
    const k = r.bool(0.1) ? 0 : r.int(1, 4);
    for (const p of r.sample(allowed, k)) role_permissions.push({ id: r.uuid(), role_id: role.id, permission_id: p.id });
  }

  // Role assignments: an org role only on its org or one of its avatars; unique (subject, role, scope).
  const subjectsOf: Record<SubjectType, readonly string[]> = {
    user: users.map((u) => u.id),
    account: accounts.map((a) => a.id),
    principal: principals.map((p) => p.id),
    staff: staff.map((s) => s.id),
  };
  const subjectTypes = (["user", "user", "user", "account", "account", "principal", "principal", "principal", "staff"] as const).filter(
    (t) => subjectsOf[t].length > 0,
  );
  const role_assignments: RoleAssignmentRow[] = [];
  const seen = new Set<string>();
  for (let attempt = 0; role_assignments.length < n.assignments && attempt < n.assignments * 20 && subjectTypes.length > 0; attempt++) {
    const subject_type = r.pick(subjectTypes);
    const subject_id = r.pick(subjectsOf[subject_type]);
    const role = r.bool(0.35) ? r.pick(globalRoles) : r.pick(roles);
    const scope = randomScope(r, role, { tenants, organizations, avatars });
    const key = `${subject_type}/${subject_id}/${role.id}/${scope.scope_type}/${scope.scope_id ?? ""}`;
    if (seen.has(key)) continue;
    // The role structure rule: one organization-level role per user in a single_role_in_hierarchy organization.
    const place = `${subject_id}/${scope.scope_id ?? ""}`;
    const orgLevel = subject_type === "user" && scope.scope_type === "organization";
    if (orgLevel && singleRole.has(scope.scope_id ?? "") && seen.has(place)) continue;
    if (orgLevel) seen.add(place);
    seen.add(key);
    role_assignments.push({
      id: r.uuid(),
      subject_type,
      subject_id,
      role_id: role.id,
      ...scope,
      active: r.bool(0.88),
      valid_until: validUntil(r, now, 0.65),
    });
  }

  return {
    now,
    tenants,
    organizations,
    users,
    staff,
    accounts,
    principals,
    avatars,
    memberships,
    roles,
    permissions,
    role_permissions,
    role_inheritance,
    role_assignments,
  };
}

/** A scope a role may be assigned on: an org role on its org or one of its avatars; a global role anywhere. */
function randomScope(
  r: Rng,
  role: { organization_id: string | null },
  d: { tenants: readonly { id: string }[]; organizations: readonly { id: string }[]; avatars: readonly { id: string; organization_id: string }[] },
): { scope_type: ScopeType; scope_id: string | null } {
  if (role.organization_id !== null) {
    const own = d.avatars.filter((a) => a.organization_id === role.organization_id);
    return own.length > 0 && r.bool(0.4) ? { scope_type: "avatar", scope_id: r.pick(own).id } : { scope_type: "organization", scope_id: role.organization_id };
  }
  const x = r.next();
  if (x < 0.2) return { scope_type: "global", scope_id: null };
  if (x < 0.4 && d.tenants.length > 0) return { scope_type: "tenant", scope_id: r.pick(d.tenants).id };
  if (x < 0.7 || d.avatars.length === 0) return { scope_type: "organization", scope_id: r.pick(d.organizations).id };
  return { scope_type: "avatar", scope_id: r.pick(d.avatars).id };
}

/** Inserts a dataset in foreign-key order in one transaction (the built-in roles already exist). */
export async function insertDataset(sql: postgres.Sql, d: Dataset): Promise<void> {
  const tables: Array<[string, readonly object[]]> = [
    ["tenants", d.tenants],
    ["organizations", d.organizations],
    ["users", d.users],
    ["staff", d.staff],
    ["accounts", d.accounts],
    ["principals", d.principals],
    ["avatars", d.avatars],
    ["memberships", d.memberships],
    ["roles", d.roles.filter((role) => !BUILTIN_ROLE_IDS.has(role.id))],
    ["permissions", d.permissions],
    ["role_permissions", d.role_permissions],
    ["role_inheritance", d.role_inheritance],
    ["role_assignments", d.role_assignments],
  ];
  await sql.begin(async (tx) => {
    for (const [table, rows] of tables) {
      // 500 rows per statement keeps the parameter count far below the protocol limit.
      for (let i = 0; i < rows.length; i += 500) {
        const batch = rows.slice(i, i + 500) as Array<Record<string, postgres.ParameterOrJSON<never>>>;
        await tx.unsafe(insertSql(table, batch), batch.flatMap((row) => Object.values(row)) as never[]);
      }
    }
  });
}

/** `insert into t (c1, c2) values ($1, $2), ...` for rows that all have the same keys. */
function insertSql(table: string, rows: ReadonlyArray<Record<string, unknown>>): string {
  const cols = Object.keys(rows[0] ?? {});
  let k = 0;
  const values = rows.map(() => `(${cols.map(() => `$${++k}`).join(", ")})`).join(", ");
  return `insert into ${table} (${cols.join(", ")}) values ${values}`;
}

// ---------------------------------------------------------------------------
// Random changes
// ---------------------------------------------------------------------------

type Change = (r: Rng, sql: postgres.Sql, now: Date, db?: SqlClient) => Promise<string | null>;

const iso = (d: Date | null): string => (d === null ? "null" : d.toISOString());

async function ids(sql: postgres.Sql, table: string, where = "true"): Promise<string[]> {
  const rows = await sql.unsafe<{ id: string }[]>(`select id::text as id from ${table} where ${where} order by id`);
  return rows.map((row) => row.id);
}

/** A membership with its avatar's active flag. */
async function membershipOf(
  sql: postgres.Sql,
  id: string,
): Promise<{ owner: boolean; active: boolean; avatar_id: string; avatar_active: boolean } | undefined> {
  const [m] = await sql<{ owner: boolean; active: boolean; avatar_id: string; avatar_active: boolean }[]>`
    select m.owner, m.active, m.avatar_id::text, a.active as avatar_active
      from memberships m join avatars a on a.id = m.avatar_id where m.id = ${id}`;
  return m;
}

async function activeOwnerOf(sql: postgres.Sql, avatarId: string): Promise<string | undefined> {
  const [o] = await sql<{ id: string }[]>`select id::text from memberships where avatar_id = ${avatarId} and owner and active`;
  return o?.id;
}

/** Another active membership of the avatar, to take over its ownership (undefined when there is none). */
async function successorOf(r: Rng, sql: postgres.Sql, avatarId: string, except: string): Promise<string | undefined> {
  const others = await ids(sql, "memberships", `avatar_id = '${avatarId}' and active and id <> '${except}'`);
  return others.length === 0 ? undefined : r.pick(others);
}

/** Flips a boolean column of a random row. */
const toggle =
  (table: string, column: string): Change =>
  async (r, sql) => {
    const all = await ids(sql, table);
    if (all.length === 0) return null;
    const id = r.pick(all);
    const [row] = await sql.unsafe<{ v: boolean }[]>(`update ${table} set ${column} = not ${column} where id = $1 returning ${column} as v`, [id]);
    return `${table} ${id}: ${column} := ${String(row?.v)}`;
  };

/** Sets a timestamp column of a random row to a time around now (or null). */
const retime =
  (table: string, column: string, pNull: number): Change =>
  async (r, sql, now) => {
    const all = await ids(sql, table);
    if (all.length === 0) return null;
    const id = r.pick(all);
    const t = r.bool(pNull) ? null : around(r, now);
    await sql.unsafe(`update ${table} set ${column} = $2 where id = $1`, [id, t === null ? null : t.toISOString()]);
    return `${table} ${id}: ${column} := ${iso(t)}`;
  };

const CHANGES: Array<[weight: number, name: string, change: Change]> = [
  [2, "user locked", toggle("users", "locked")],
  [2, "user enabled", toggle("users", "enabled")],
  [2, "account active", toggle("accounts", "active")],
  [2, "principal active", toggle("principals", "active")],
  [2, "principal accepted_at", retime("principals", "accepted_at", 0.2)],
  [2, "principal valid_until", retime("principals", "valid_until", 0.4)],
  [
    2,
    "avatar active",
    async (r, sql) => {
      const all = await ids(sql, "avatars");
      if (all.length === 0) return null;
      const id = r.pick(all);
      const [a] = await sql<{ active: boolean }[]>`select active from avatars where id = ${id}`;
      if (a === undefined) return null;
      if (a.active) {
        await sql`update avatars set active = false where id = ${id}`;
        return `avatars ${id}: active := false`;
      }
      // An active avatar needs its one active owner: promote an active member in the same transaction if it has none.
      if ((await activeOwnerOf(sql, id)) !== undefined) {
        await sql`update avatars set active = true where id = ${id}`;
        return `avatars ${id}: active := true`;
      }
      const members = await ids(sql, "memberships", `avatar_id = '${id}' and active`);
      if (members.length === 0) return null;
      const m = r.pick(members);
      await sql.begin(async (tx) => {
        await tx`update memberships set owner = true where id = ${m}`;
        await tx`update avatars set active = true where id = ${id}`;
      });
      return `avatars ${id}: active := true, with membership ${m} made its owner in the same transaction`;
    },
  ],
  [2, "membership accepted_at", retime("memberships", "accepted_at", 0.2)],
  [2, "membership valid_until", retime("memberships", "valid_until", 0.4)],
  [
    2,
    "membership active",
    async (r, sql) => {
      // Reactivating an owner membership while the avatar has another active owner would be refused: skip those.
      const all = await ids(
        sql,
        "memberships m",
        `not (not m.active and m.owner and exists (
      select 1 from memberships o where o.avatar_id = m.avatar_id and o.owner and o.active and o.id <> m.id))`,
      );
      if (all.length === 0) return null;
      const id = r.pick(all);
      const m = await membershipOf(sql, id);
      if (m === undefined) return null;
      if (m.active && m.owner && m.avatar_active) {
        // The active owner of an active avatar steps down only with a successor, in the same transaction.
        const successor = await successorOf(r, sql, m.avatar_id, id);
        if (successor === undefined) return null;
        await sql.begin(async (tx) => {
          await tx`update memberships set active = false where id = ${id}`;
          await tx`update memberships set owner = true where id = ${successor}`;
        });
        return `memberships ${id}: active := false, ownership moved to ${successor} in the same transaction`;
      }
      const [row] = await sql<{ v: boolean }[]>`update memberships set active = not active where id = ${id} returning active as v`;
      return `memberships ${id}: active := ${String(row?.v)}`;
    },
  ],
  [
    2,
    "membership owner",
    async (r, sql) => {
      const all = await ids(sql, "memberships");
      if (all.length === 0) return null;
      const id = r.pick(all);
      const m = await membershipOf(sql, id);
      if (m === undefined) return null;
      if (m.owner) {
        if (m.active && m.avatar_active) {
          // The active avatar keeps one owner: demote, then promote a successor, in one transaction.
          const successor = await successorOf(r, sql, m.avatar_id, id);
          if (successor === undefined) return null;
          await sql.begin(async (tx) => {
            await tx`update memberships set owner = false where id = ${id}`;
            await tx`update memberships set owner = true where id = ${successor}`;
          });
          return `memberships ${id}: owner := false, ownership moved to ${successor} in the same transaction`;
        }
        await sql`update memberships set owner = false where id = ${id}`;
        return `memberships ${id}: owner := false`;
      }
      if (!m.active) {
        // An inactive membership holds nothing; flagging it owner does not touch the active owner.
        await sql`update memberships set owner = true where id = ${id}`;
        return `memberships ${id}: owner := true (inactive)`;
      }
      // Ownership swap: demote the avatar's active owner (if any), then promote, in one transaction.
      await sql.begin(async (tx) => {
        await tx`update memberships set owner = false where avatar_id = ${m.avatar_id} and owner and active and id <> ${id}`;
        await tx`update memberships set owner = true where id = ${id}`;
      });
      return `memberships ${id}: owner := true (avatar ${m.avatar_id}'s active owner, if any, demoted in the same transaction)`;
    },
  ],
  [
    2,
    "membership add",
    async (r, sql, now) => {
      const pairs = await sql<{ p: string; a: string }[]>`
      select p.id::text as p, a.id::text as a from principals p cross join avatars a
      where not exists (select 1 from memberships m where m.principal_id = p.id and m.avatar_id = a.id)
      order by p.id, a.id`;
      if (pairs.length === 0) return null;
      const { p, a } = r.pick(pairs);
      const id = r.uuid();
      const accepted = r.bool(0.15) ? null : r.bool(0.7) ? past(r, now) : around(r, now);
      const until = validUntil(r, now, 0.7);
      await sql`insert into memberships (id, principal_id, avatar_id, owner, active, accepted_at, valid_until)
              values (${id}, ${p}, ${a}, false, true, ${accepted}, ${until})`;
      return `memberships ${id}: added principal ${p} on avatar ${a}, accepted_at ${iso(accepted)}, valid_until ${iso(until)}`;
    },
  ],
  [
    1,
    "membership remove",
    async (r, sql) => {
      const all = await ids(sql, "memberships");
      if (all.length === 0) return null;
      const id = r.pick(all);
      const m = await membershipOf(sql, id);
      if (m === undefined) return null;
      if (m.active && m.owner && m.avatar_active) {
        const successor = await successorOf(r, sql, m.avatar_id, id);
        if (successor === undefined) return null;
        await sql.begin(async (tx) => {
          await tx`delete from memberships where id = ${id}`;
          await tx`update memberships set owner = true where id = ${successor}`;
        });
        return `memberships ${id}: deleted, ownership moved to ${successor} in the same transaction`;
      }
      await sql`delete from memberships where id = ${id}`;
      return `memberships ${id}: deleted`;
    },
  ],
  [
    3,
    "role permission add",
    async (r, sql) => {
      const pairs = await sql<{ role: string; perm: string }[]>`
      select ro.id::text as role, p.id::text as perm
      from roles ro join permissions p on p.organization_id is null or p.organization_id = ro.organization_id
      where not exists (select 1 from role_permissions rp where rp.role_id = ro.id and rp.permission_id = p.id)
      order by ro.id, p.id`;
      if (pairs.length === 0) return null;
      const { role, perm } = r.pick(pairs);
      await sql`insert into role_permissions (role_id, permission_id) values (${role}, ${perm})`;
      return `role_permissions: role ${role} += permission ${perm}`;
    },
  ],
  [
    2,
    "role permission remove",
    async (r, sql) => {
      const all = await ids(sql, "role_permissions");
      if (all.length === 0) return null;
      const id = r.pick(all);
      const [row] = await sql<{ role: string; perm: string }[]>`
      delete from role_permissions where id = ${id} returning role_id::text as role, permission_id::text as perm`;
      return `role_permissions: role ${row?.role} -= permission ${row?.perm}`;
    },
  ],
  [
    3,
    "inheritance add",
    async (r, sql) => {
      // Candidate edges respect the organization rule; the recursive query drops
      // those where the parent already (transitively) inherits from the child.
      const pairs = await sql<{ child: string; parent: string }[]>`
      with recursive reach (role_id, ancestor_id) as (
        select role_id, parent_role_id from role_inheritance
        union
        select reach.role_id, ri.parent_role_id from reach join role_inheritance ri on ri.role_id = reach.ancestor_id
      )
      select c.id::text as child, p.id::text as parent
      from roles c join roles p on p.id <> c.id and (p.organization_id is null or p.organization_id = c.organization_id)
      where not exists (select 1 from role_inheritance ri where ri.role_id = c.id and ri.parent_role_id = p.id)
        and not exists (select 1 from reach where reach.role_id = p.id and reach.ancestor_id = c.id)
      order by c.id, p.id`;
      if (pairs.length === 0) return null;
      const { child, parent } = r.pick(pairs);
      await sql`insert into role_inheritance (role_id, parent_role_id) values (${child}, ${parent})`;
      return `role_inheritance: role ${child} now inherits ${parent}`;
    },
  ],
  [
    2,
    "inheritance remove",
    async (r, sql) => {
      const edges = await sql<{ child: string; parent: string }[]>`
      select role_id::text as child, parent_role_id::text as parent from role_inheritance order by role_id, parent_role_id`;
      if (edges.length === 0) return null;
      const { child, parent } = r.pick(edges);
      await sql`delete from role_inheritance where role_id = ${child} and parent_role_id = ${parent}`;
      return `role_inheritance: role ${child} no longer inherits ${parent}`;
    },
  ],
  [
    4,
    "assignment add",
    async (r, sql, now) => {
      const subjectType = r.pick(["user", "account", "principal", "staff"] as const);
      const table = { user: "users", account: "accounts", principal: "principals", staff: "staff" }[subjectType];
      const subjects = await ids(sql, table);
      const roles = await sql<{ id: string; organization_id: string | null }[]>`
      select id::text, organization_id::text from roles order by id`;
      if (subjects.length === 0 || roles.length === 0) return null;
      const [tenants, organizations, avatars] = await Promise.all([
        sql<{ id: string }[]>`select id::text from tenants order by id`,
        sql<{ id: string }[]>`select id::text from organizations order by id`,
        sql<{ id: string; organization_id: string }[]>`select id::text, organization_id::text from avatars order by id`,
      ]);
      if (organizations.length === 0) return null;
      const subject = r.pick(subjects);
      const role = r.pick(roles);
      const scope = randomScope(r, role, { tenants, organizations, avatars });
      const until = validUntil(r, now, 0.6);
      const id = r.uuid();
      if (subjectType === "user" && scope.scope_type === "organization") {
        // The role structure rule, as every writer keeps it: no second organization-level role in a single-role organization.
        const [held] = await sql<{ n: number }[]>`
          select count(*)::int as n from role_assignments ra join organizations o on o.id = ra.scope_id
           where o.role_structure = 'single_role_in_hierarchy' and ra.subject_type = 'user' and ra.subject_id = ${subject}
             and ra.scope_type = 'organization' and ra.scope_id = ${scope.scope_id} and ra.role_id <> ${role.id}`;
        if ((held?.n ?? 0) > 0) return `role_assignments: skipped a second role of user ${subject} in single-role organization ${scope.scope_id}`;
      }
      const added = await sql`
      insert into role_assignments (id, subject_type, subject_id, role_id, scope_type, scope_id, valid_until)
      values (${id}, ${subjectType}, ${subject}, ${role.id}, ${scope.scope_type}, ${scope.scope_id}, ${until})
      on conflict on constraint role_assignments_unique do nothing returning id`;
      const what = `${subjectType} ${subject} role ${role.id} on ${scope.scope_type} ${scope.scope_id ?? ""}`;
      return added.length === 0 ? `role_assignments: skipped duplicate ${what}` : `role_assignments ${id}: added ${what}, valid_until ${iso(until)}`;
    },
  ],
  [
    2,
    "assignment remove",
    async (r, sql) => {
      const all = await ids(sql, "role_assignments");
      if (all.length === 0) return null;
      const id = r.pick(all);
      await sql`delete from role_assignments where id = ${id}`;
      return `role_assignments ${id}: deleted`;
    },
  ],
  [
    2,
    "assignment expire",
    async (r, sql, now) => {
      const all = await ids(sql, "role_assignments");
      if (all.length === 0) return null;
      const id = r.pick(all);
      const t = r.bool(0.5) ? past(r, now) : nearFuture(r, now);
      await sql`update role_assignments set valid_until = ${t} where id = ${id}`;
      return `role_assignments ${id}: valid_until := ${iso(t)}`;
    },
  ],
  [2, "assignment active", toggle("role_assignments", "active")],
  [
    1,
    "role delete",
    async (r, sql) => {
      const all = await ids(sql, "roles", `id not in ('${AVATAR_MEMBER_ROLE_ID}', '${AVATAR_OWNER_ROLE_ID}')`);
      if (all.length === 0) return null;
      const id = r.pick(all);
      await sql`delete from roles where id = ${id}`;
      return `roles ${id}: deleted (with its grants, edges and assignments)`;
    },
  ],
  [
    1,
    "permission add",
    async (r, sql) => {
      const orgs = await ids(sql, "organizations");
      const org = orgs.length === 0 || r.bool(0.3) ? null : r.pick(orgs);
      const key = r.bool(0.8) ? r.pick(KEY_POOL) : `extra.${r.int(0, 9)}`;
      const id = r.uuid();
      const added = await sql`
      insert into permissions (id, organization_id, key) values (${id}, ${org}, ${key})
      on conflict on constraint permissions_organization_key do nothing returning id`;
      return added.length === 0 ? `permissions: skipped existing ${key} of ${org ?? "global"}` : `permissions ${id}: added ${key} of ${org ?? "global"}`;
    },
  ],
];

/**
 * Changes through ManageDirectory (the writer a calling service uses), when
 * the caller hands a client: the engine must follow them as it follows SQL.
 * A refusal by the writer (a rule, a reference gone) is reported as skipped.
 */
function viaDirectory(pick: (r: Rng, sql: postgres.Sql, now: Date) => Promise<DirectoryMutation[] | null>): Change {
  return async (r, sql, now, db) => {
    if (!db) return null;
    const mutations = await pick(r, sql, now);
    if (!mutations) return null;
    const what = JSON.stringify(mutations);
    try {
      const res = await manageDirectory(db, { mutations });
      return `ManageDirectory ${what}: revision ${res.revision}`;
    } catch (err) {
      if (!(err instanceof AuthzError) || err.code === "INVALID_ARGUMENT") throw err;
      return `ManageDirectory ${what}: skipped, refused (${err.code} ${err.reason})`;
    }
  };
}

const DIRECTORY_CHANGES: Array<[weight: number, name: string, change: Change]> = [
  [
    2,
    "directory user status",
    viaDirectory(async (r, sql) => {
      const users = await ids(sql, "users");
      return users.length === 0 ? null : [{ kind: "setUserStatus", userId: r.pick(users), ...(r.bool() ? { locked: r.bool(0.3) } : { enabled: r.bool(0.7) }) }];
    }),
  ],
  [
    2,
    "directory active flag",
    viaDirectory(async (r, sql) => {
      const [kind, table] = r.pick([
        ["setAccountActive", "accounts"],
        ["setPrincipalActive", "principals"],
        ["setAvatarActive", "avatars"],
        ["setMembershipActive", "memberships"],
      ] as const);
      const all = await ids(sql, table);
      return all.length === 0 ? null : [{ kind, id: r.pick(all), active: r.bool(0.7) }];
    }),
  ],
  [
    2,
    "directory invite (and accept)",
    viaDirectory(async (r, sql, now) => {
      const [avatars, principals] = [await ids(sql, "avatars"), await ids(sql, "principals")];
      if (avatars.length === 0 || principals.length === 0) return null;
      const id = r.uuid();
      const invite: DirectoryMutation = {
        kind: "inviteMembership",
        id,
        avatarId: r.pick(avatars),
        principalId: r.pick(principals),
        validUntil: validUntil(r, now, 0.7),
      };
      return r.bool(0.7) ? [invite, { kind: "acceptMembership", id, acceptedAt: r.bool(0.8) ? past(r, now) : nearFuture(r, now) }] : [invite];
    }),
  ],
  [
    1,
    "directory off-boarding",
    viaDirectory(async (r, sql) => {
      const [kind, table] = r.pick([
        ["deleteUser", "users"],
        ["deletePrincipal", "principals"],
        ["revokeMembership", "memberships"],
      ] as const);
      const all = await ids(sql, table);
      return all.length === 0 ? null : [{ kind, id: r.pick(all) }];
    }),
  ],
];

CHANGES.push(...DIRECTORY_CHANGES);

const TOTAL_WEIGHT = CHANGES.reduce((s, [w]) => s + w, 0);

/**
 * Applies n random changes, each one SQL statement (an ownership swap: one
 * transaction), and returns a description of each for failure messages. A
 * change the database refuses (an integrity constraint) is reported as skipped.
 * Changes keep every active avatar at exactly one active owner membership
 * (migration 0003): an owner leaves only with a successor in the same transaction.
 */
export async function randomChanges(r: Rng, sql: postgres.Sql, n: number, now: Date, db?: SqlClient): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0, guard = 0; i < n && guard < n * 10; guard++) {
    let x = r.next() * TOTAL_WEIGHT;
    const [, name, change] = CHANGES.find(([w]) => (x -= w) < 0) ?? (CHANGES[CHANGES.length - 1] as (typeof CHANGES)[number]);
    let description: string | null;
    try {
      description = await change(r, sql, now, db);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== "string" || !code.startsWith("23")) throw err;
      description = `${name}: skipped, refused (${code}: ${(err as Error).message})`;
    }
    if (description === null) continue; // nothing to change of that kind: draw another
    out.push(description);
    i++;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Random checks
// ---------------------------------------------------------------------------

/**
 * n checks over every subject of every type, every permission key (and keys
 * of KEY_POOL that may exist only after changes), every resource, each with
 * ~5% unknown ids or keys. About a third are aimed at an assignment or a
 * membership (its subject, a resource in its scope, a key its role may hold)
 * so GRANTED is common.
 */
export function randomChecks(r: Rng, d: Dataset, n: number): OracleCheck[] {
  const subjects: Array<[SubjectType, string]> = [
    ...d.users.map((x) => ["user", x.id] as [SubjectType, string]),
    ...d.accounts.map((x) => ["account", x.id] as [SubjectType, string]),
    ...d.principals.map((x) => ["principal", x.id] as [SubjectType, string]),
    ...d.staff.map((x) => ["staff", x.id] as [SubjectType, string]),
  ];
  const resources: Array<[string, string]> = [
    ...d.tenants.map((x) => ["tenant", x.id] as [string, string]),
    ...d.organizations.map((x) => ["organization", x.id] as [string, string]),
    ...d.avatars.map((x) => ["avatar", x.id] as [string, string]),
  ];
  const keys = [...new Set([...d.permissions.map((p) => p.key), ...KEY_POOL])].sort();

  // Keys each role may allow, through inheritance (as generated; changes may differ).
  const parents = new Map<string, string[]>();
  for (const e of d.role_inheritance) parents.set(e.role_id, [...(parents.get(e.role_id) ?? []), e.parent_role_id]);
  const permKey = new Map(d.permissions.map((p) => [p.id, p.key]));
  const direct = new Map<string, string[]>();
  for (const rp of d.role_permissions) direct.set(rp.role_id, [...(direct.get(rp.role_id) ?? []), permKey.get(rp.permission_id) ?? ""]);
  const roleKeys = (roleId: string): string[] => {
    const seen = new Set<string>();
    const stack = [roleId];
    const out = new Set<string>();
    while (stack.length > 0) {
      const id = stack.pop() as string;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const k of direct.get(id) ?? []) out.add(k);
      stack.push(...(parents.get(id) ?? []));
    }
    return [...out];
  };
  const resourcesIn = (scopeType: ScopeType, scopeId: string | null): Array<[string, string]> => {
    if (scopeType === "global") return resources;
    if (scopeType === "avatar") return [["avatar", scopeId as string]];
    const orgs = scopeType === "organization" ? d.organizations.filter((o) => o.id === scopeId) : d.organizations.filter((o) => o.tenant_id === scopeId);
    const out: Array<[string, string]> = scopeType === "tenant" ? [["tenant", scopeId as string]] : [];
    for (const o of orgs) {
      out.push(["organization", o.id]);
      for (const a of d.avatars) if (a.organization_id === o.id) out.push(["avatar", a.id]);
    }
    return out;
  };

  // The keys a resource can name (its organization's and global), as generated.
  const orgOfResource = new Map<string, string | null>([
    ...d.tenants.map((x) => [`tenant/${x.id}`, null] as const),
    ...d.organizations.map((x) => [`organization/${x.id}`, x.id] as const),
    ...d.avatars.map((x) => [`avatar/${x.id}`, x.organization_id] as const),
  ]);
  const keysFor = (resource: [string, string]): string[] => {
    const org = orgOfResource.get(`${resource[0]}/${resource[1]}`) ?? null;
    return d.permissions.filter((p) => p.organization_id === null || p.organization_id === org).map((p) => p.key);
  };

  const checks: OracleCheck[] = [];
  for (let i = 0; i < n; i++) {
    let subject: [string, string] = subjects.length > 0 ? r.pick(subjects) : ["user", r.uuid()];
    let resource: [string, string] = resources.length > 0 ? r.pick(resources) : ["tenant", r.uuid()];
    const valid = keysFor(resource);
    let permission = valid.length > 0 && r.bool(0.7) ? r.pick(valid) : r.pick(keys);
    const aim = r.next();
    if (aim < 0.25 && d.role_assignments.length > 0) {
      // Aimed at an assignment (of the account, sometimes asked as one of its principals).
      const a = r.pick(d.role_assignments);
      subject = [a.subject_type, a.subject_id];
      if (a.subject_type === "account" && r.bool(0.5)) {
        const ps = d.principals.filter((p) => p.account_id === a.subject_id);
        if (ps.length > 0) subject = ["principal", r.pick(ps).id];
      }
      const inScope = resourcesIn(a.scope_type, a.scope_id);
      if (inScope.length > 0) resource = r.pick(inScope);
      const ks = roleKeys(a.role_id);
      if (ks.length > 0) permission = r.pick(ks);
    } else if (aim < 0.35 && d.memberships.length > 0) {
      // Aimed at a membership.
      const m = r.pick(d.memberships);
      subject = ["principal", m.principal_id];
      resource = ["avatar", m.avatar_id];
      const ks = roleKeys(m.owner && r.bool(0.5) ? AVATAR_OWNER_ROLE_ID : AVATAR_MEMBER_ROLE_ID);
      if (ks.length > 0) permission = r.pick(ks);
    }
    // ~5% unknown of each: an unknown id (or a known id under another type), an unknown key.
    if (r.bool(0.05)) subject = r.bool(0.7) ? [subject[0], r.uuid()] : [r.pick(["user", "account", "principal", "staff"]), subject[1]];
    if (r.bool(0.05)) resource = r.bool(0.7) ? [resource[0], r.uuid()] : [r.pick(["tenant", "organization", "avatar"]), resource[1]];
    if (r.bool(0.05)) permission = `unknown.${r.int(0, 99)}`;
    checks.push({ subjectType: subject[0], subjectId: subject[1], permission, resourceType: resource[0], resourceId: resource[1] });
  }
  return checks;
}
