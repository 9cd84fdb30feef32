// Deterministic synthetic dataset for the decision-engine benchmark (issue 3).
//
// Full scale (BENCH_SCALE=1): 1M users, 100k organizations under 1k tenants,
// 5M role assignments; per organization 5 roles in one inheritance chain
// (owner -> admin -> editor -> member -> viewer: each role inherits the next)
// and 10 permissions spread along the chain; 3 global roles in a chain of
// their own plus the 2 built-in avatar roles; 20 global permissions.
//
// Every row is a pure function of its index, so the same data comes out of
//   (a) datasetTables(): lazy iterables of snake_case rows for buildEngine,
//       generated one row at a time (nothing is held but what the engine keeps);
//   (b) loadDatasetIntoPostgres(): INSERT ... SELECT over generate_series, the
//       same formulas written in SQL, with the change-log triggers off;
// and expectedAllowed() answers a Check from the formulas alone, so the
// benchmark can verify that the engine built either way decides as intended.

import postgres from "postgres";

export const FULL = { tenants: 1_000, orgs: 100_000, users: 1_000_000, assignmentsPerUser: 5 } as const;

/** Roles of every organization, index 0..4; role r inherits role r+1 (viewer is the chain's root). */
export const ORG_ROLE_KEYS = ["owner", "admin", "editor", "member", "viewer"] as const;
const ORG_ROLE_NAMES = ["Owner", "Admin", "Editor", "Member", "Viewer"] as const;
/** Permissions of every organization, index 0..9; role r holds 2*(4-r) and 2*(4-r)+1 directly. */
export const ORG_PERM_KEYS = [
  "doc.read",
  "comment.read",
  "doc.comment",
  "doc.write",
  "doc.share",
  "doc.delete",
  "member.invite",
  "member.remove",
  "billing.manage",
  "org.delete",
] as const;
export const GLOBAL_PERMS = 20;
export const globalPermKey = (g: number): string => `platform.p${String(g).padStart(2, "0")}`;
/** Global roles: 0 inherits 1, 1 inherits 2. Direct grants: [first, last) global permission indexes. */
export const GLOBAL_ROLES = [
  { key: "platform_admin", name: "Platform admin", perms: [10, 20] },
  { key: "support", name: "Support", perms: [5, 10] },
  { key: "auditor", name: "Auditor", perms: [0, 5] },
] as const;
/** The built-in roles of migration 0002 (present in every migrated database). */
export const BUILTIN_ROLES = [
  { id: "00000000-0000-4000-8000-00000000a001", key: "avatar_member", name: "Avatar member" },
  { id: "00000000-0000-4000-8000-00000000a002", key: "avatar_owner", name: "Avatar owner" },
] as const;
const EXPIRED_AT = "2020-01-01T00:00:00.000Z";

const ORG_MULT = 1_000_003; // a prime above any organization count used here: spreads users over organizations

// ---------------------------------------------------------------------------
// Shape

export interface DatasetShape {
  scale: number;
  tenants: number;
  orgs: number;
  users: number;
  assignmentsPerUser: number;
  /** users * assignmentsPerUser */
  assignments: number;
  /** Organizations between a user's successive assignments: keeps them on distinct organizations. */
  stride: number;
}

export function datasetShape(scale: number): DatasetShape {
  if (!(scale > 0) || scale > 10) throw new Error(`scale must be in (0, 10], got ${scale}`);
  const tenants = Math.max(1, Math.round(FULL.tenants * scale));
  const orgs = Math.max(1, Math.round(FULL.orgs * scale));
  const users = Math.max(1, Math.round(FULL.users * scale));
  const assignmentsPerUser = Math.min(FULL.assignmentsPerUser, orgs);
  return {
    scale,
    tenants,
    orgs,
    users,
    assignmentsPerUser,
    assignments: users * assignmentsPerUser,
    stride: Math.max(1, Math.floor(orgs / assignmentsPerUser)),
  };
}

/** BENCH_SCALE (or another variable), default 1 = full scale. */
export function scaleFromEnv(name = "BENCH_SCALE", fallback = 1, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  if (!(n > 0) || n > 10) throw new Error(`${name} must be a number in (0, 10], got "${raw}"`);
  return n;
}

export interface RowCounts {
  tenants: number;
  organizations: number;
  users: number;
  roles: number;
  permissions: number;
  role_permissions: number;
  role_inheritance: number;
  role_assignments: number;
  user_organizations: number;
}

export function rowCounts(s: DatasetShape): RowCounts {
  return {
    tenants: s.tenants,
    organizations: s.orgs,
    users: s.users,
    roles: s.orgs * 5 + GLOBAL_ROLES.length + BUILTIN_ROLES.length,
    permissions: s.orgs * ORG_PERM_KEYS.length + GLOBAL_PERMS,
    role_permissions: s.orgs * 11 + GLOBAL_ROLES.reduce((n, r) => n + r.perms[1] - r.perms[0], 0),
    role_inheritance: s.orgs * 4 + GLOBAL_ROLES.length - 1,
    role_assignments: s.assignments,
    user_organizations: s.users,
  };
}

// ---------------------------------------------------------------------------
// Identifiers: kind tag + index, e.g. b0000003-0000-4000-8000-00000000002a = user 42.

const KIND = {
  tenant: "b0000001",
  org: "b0000002",
  user: "b0000003",
  orgRole: "b0000004",
  globalRole: "b0000005",
  orgPerm: "b0000006",
  globalPerm: "b0000007",
  assignment: "b0000008",
} as const;
type Kind = keyof typeof KIND;

// Identifiers are written into a scratch buffer and decoded, which yields a flat
// string like the ones a database driver hands out (a template literal would
// yield a concatenation that V8 later flattens into a second string, costing the
// in-memory build more heap than a load from Postgres).
const ID_BUF = Buffer.alloc(36);
const HEX = "0123456789abcdef";
const id = (kind: Kind, i: number): string => {
  ID_BUF.write(`${KIND[kind]}-0000-4000-8000-`, 0, "latin1");
  let x = i;
  for (let pos = 35; pos >= 24; pos--) {
    ID_BUF[pos] = HEX.charCodeAt(x % 16);
    x = Math.floor(x / 16);
  }
  return ID_BUF.toString("latin1", 0, 36);
};
/** The same identifier in SQL, for an integer expression. */
const sqlId = (kind: Kind, expr: string): string => `('${KIND[kind]}-0000-4000-8000-' || lpad(to_hex(${expr}), 12, '0'))::uuid`;

export const tenantId = (i: number): string => id("tenant", i);
export const orgId = (i: number): string => id("org", i);
export const userId = (i: number): string => id("user", i);
export const orgRoleId = (org: number, r: number): string => id("orgRole", org * 5 + r);
export const globalRoleId = (g: number): string => id("globalRole", g);
export const orgPermId = (org: number, p: number): string => id("orgPerm", org * ORG_PERM_KEYS.length + p);
export const globalPermId = (g: number): string => id("globalPerm", g);
export const assignmentId = (k: number): string => id("assignment", k);

// ---------------------------------------------------------------------------
// The model: every value below has a twin in the SQL of loadDatasetIntoPostgres.

export const userLocked = (u: number): boolean => u % 97 === 13;
export const userEnabled = (u: number): boolean => u % 89 !== 7;

/** The organization of user u's j-th assignment (distinct for j < assignmentsPerUser). */
export const orgOf = (s: DatasetShape, u: number, j: number): number => (u * ORG_MULT + j * s.stride) % s.orgs;

/** The role (0 owner .. 4 viewer) of user u's j-th assignment: 5% owner, 10% admin, 15% editor, 30% member, 40% viewer. */
export function roleOf(u: number, j: number): number {
  const h = (u * 31 + j * 17) % 100;
  return h < 5 ? 0 : h < 15 ? 1 : h < 30 ? 2 : h < 60 ? 3 : 4;
}

export interface Assignment {
  k: number;
  u: number;
  j: number;
  /** A global grant of a global role instead of an organization role. */
  global: boolean;
  /** Global role index (when global) or organization index. */
  globalRole: number;
  org: number;
  role: number;
  active: boolean;
  expired: boolean;
}

/** Assignment k belongs to user k % users, as that user's (k / users)-th. */
export function assignmentAt(s: DatasetShape, k: number): Assignment {
  const u = k % s.users;
  const j = Math.floor(k / s.users);
  const global = j === s.assignmentsPerUser - 1 && u % 200 === 0;
  return {
    k,
    u,
    j,
    global,
    globalRole: u % 5000 === 0 ? 0 : 1,
    org: orgOf(s, u, j),
    role: roleOf(u, j),
    active: k % 101 !== 100,
    expired: k % 211 === 5,
  };
}

// ---------------------------------------------------------------------------
// (a) In-memory rows, generated lazily

type Row = Record<string, unknown>;

function lazy(gen: () => Generator<Row>): Iterable<Row> {
  return { [Symbol.iterator]: gen };
}

/** One lazy iterable per followed table, for buildEngine(revision, datasetTables(shape)). */
export function datasetTables(s: DatasetShape): Record<keyof RowCounts, Iterable<Row>> {
  return {
    tenants: lazy(function* () {
      for (let i = 0; i < s.tenants; i++) yield { id: tenantId(i), name: `Tenant ${i}`, slug: `t-${i}` };
    }),
    organizations: lazy(function* () {
      for (let i = 0; i < s.orgs; i++) {
        yield { id: orgId(i), tenant_id: tenantId(i % s.tenants), name: `Org ${i}`, slug: `org-${i}`, role_structure: "single_role_in_hierarchy" };
      }
    }),
    users: lazy(function* () {
      for (let u = 0; u < s.users; u++) yield { id: userId(u), locked: userLocked(u), enabled: userEnabled(u) };
    }),
    roles: lazy(function* () {
      for (const b of BUILTIN_ROLES) yield { id: b.id, organization_id: null, key: b.key, name: b.name };
      for (let g = 0; g < GLOBAL_ROLES.length; g++) {
        const r = GLOBAL_ROLES[g] as (typeof GLOBAL_ROLES)[number];
        yield { id: globalRoleId(g), organization_id: null, key: r.key, name: r.name };
      }
      for (let o = 0; o < s.orgs; o++) {
        const oid = orgId(o);
        for (let r = 0; r < 5; r++) yield { id: orgRoleId(o, r), organization_id: oid, key: ORG_ROLE_KEYS[r], name: ORG_ROLE_NAMES[r] };
      }
    }),
    permissions: lazy(function* () {
      for (let g = 0; g < GLOBAL_PERMS; g++) yield { id: globalPermId(g), organization_id: null, key: globalPermKey(g) };
      for (let o = 0; o < s.orgs; o++) {
        const oid = orgId(o);
        for (let p = 0; p < ORG_PERM_KEYS.length; p++) yield { id: orgPermId(o, p), organization_id: oid, key: ORG_PERM_KEYS[p] };
      }
    }),
    role_permissions: lazy(function* () {
      for (let g = 0; g < GLOBAL_ROLES.length; g++) {
        const [from, to] = (GLOBAL_ROLES[g] as (typeof GLOBAL_ROLES)[number]).perms;
        for (let p = from; p < to; p++) yield { role_id: globalRoleId(g), permission_id: globalPermId(p) };
      }
      for (let o = 0; o < s.orgs; o++) {
        for (let r = 0; r < 5; r++) {
          for (let x = 0; x < 2; x++) yield { role_id: orgRoleId(o, r), permission_id: orgPermId(o, (4 - r) * 2 + x) };
        }
        yield { role_id: orgRoleId(o, 4), permission_id: globalPermId(0) };
      }
    }),
    role_inheritance: lazy(function* () {
      for (let g = 0; g + 1 < GLOBAL_ROLES.length; g++) yield { role_id: globalRoleId(g), parent_role_id: globalRoleId(g + 1) };
      for (let o = 0; o < s.orgs; o++) {
        for (let r = 0; r < 4; r++) yield { role_id: orgRoleId(o, r), parent_role_id: orgRoleId(o, r + 1) };
      }
    }),
    role_assignments: lazy(function* () {
      for (let k = 0; k < s.assignments; k++) {
        const a = assignmentAt(s, k);
        yield {
          id: assignmentId(k),
          subject_type: "user",
          subject_id: userId(a.u),
          role_id: a.global ? globalRoleId(a.globalRole) : orgRoleId(a.org, a.role),
          scope_type: a.global ? "global" : "organization",
          scope_id: a.global ? null : orgId(a.org),
          active: a.active,
          valid_until: a.expired ? EXPIRED_AT : null,
        };
      }
    }),
    user_organizations: lazy(function* () {
      for (let u = 0; u < s.users; u++) {
        const o = orgOf(s, u, 0);
        yield { user_id: userId(u), organization_id: orgId(o), primary_role_id: orgRoleId(o, roleOf(u, 0)) };
      }
    }),
  };
}

// ---------------------------------------------------------------------------
// Expected decisions, from the formulas alone

export type PermChoice = { kind: "org"; p: number } | { kind: "global"; g: number };

/** Check(user u, permission, organization o) as the dataset intends it (every id exists). */
export function expectedAllowed(s: DatasetShape, u: number, perm: PermChoice, o: number): boolean {
  if (userLocked(u) || !userEnabled(u)) return false;
  for (let j = 0; j < s.assignmentsPerUser; j++) {
    const a = assignmentAt(s, j * s.users + u);
    if (!a.active || a.expired) continue;
    if (a.global) {
      // platform_admin holds all 20 global permissions, support 0..9 (through auditor 0..4).
      if (perm.kind === "global" && perm.g < (a.globalRole === 0 ? 20 : 10)) return true;
      continue;
    }
    if (a.org !== o) continue;
    // Role r holds organization permissions 0 .. 2*(5-r)-1 and, through viewer, global permission 0.
    if (perm.kind === "org" ? perm.p < (5 - a.role) * 2 : perm.g === 0) return true;
  }
  return false;
}

export interface CheckQuery {
  subject: { type: "user"; id: string };
  permission: string;
  resource: { type: "organization"; id: string };
  expected: boolean;
  /** For the Map.get + bit floor: the user's index and a bit. */
  bit: number;
}

/** mulberry32 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A random mix of checks over existing users, organizations and permissions:
 * 55% an organization permission on one of the user's organizations, 20% a
 * global permission there, 25% an organization permission on a random
 * organization (almost always NO_GRANT).
 */
export function makeChecks(s: DatasetShape, n: number, seed = 42): CheckQuery[] {
  const rand = prng(seed);
  const int = (hi: number) => Math.floor(rand() * hi);
  const out: CheckQuery[] = [];
  for (let i = 0; i < n; i++) {
    const u = int(s.users);
    const x = rand();
    const o = x < 0.75 ? orgOf(s, u, int(s.assignmentsPerUser)) : int(s.orgs);
    const perm: PermChoice = x >= 0.55 && x < 0.75 ? { kind: "global", g: int(GLOBAL_PERMS) } : { kind: "org", p: int(ORG_PERM_KEYS.length) };
    out.push({
      subject: { type: "user", id: userId(u) },
      permission: perm.kind === "org" ? (ORG_PERM_KEYS[perm.p] as string) : globalPermKey(perm.g),
      resource: { type: "organization", id: orgId(o) },
      expected: expectedAllowed(s, u, perm, o),
      bit: int(32),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// (b) Postgres loader

export interface LoadTiming {
  step: string;
  rows: number;
  ms: number;
}

const literalList = (xs: readonly string[]) => `array[${xs.map((x) => `'${x}'`).join(", ")}]`;

/** The INSERT ... SELECT statements, in foreign-key order. */
export function loaderStatements(s: DatasetShape): Array<{ table: keyof RowCounts; sql: string }> {
  const { tenants: T, orgs: O, users: U, assignments: A, assignmentsPerUser: APU, stride } = s;
  const globalRoles = GLOBAL_ROLES.map((r, g) => `(${sqlId("globalRole", String(g))}, null::uuid, '${r.key}', '${r.name}')`).join(", ");
  const globalRolePerms = GLOBAL_ROLES.map(
    (r, g) => `select ${sqlId("globalRole", String(g))}, ${sqlId("globalPerm", "p")} from generate_series(${r.perms[0]}, ${r.perms[1] - 1}) p`,
  ).join(" union all ");
  const globalEdges = GLOBAL_ROLES.slice(1)
    .map((_r, i) => `(${sqlId("globalRole", String(i))}, ${sqlId("globalRole", String(i + 1))})`)
    .join(", ");
  const role = (h: string) => `case when ${h} < 5 then 0 when ${h} < 15 then 1 when ${h} < 30 then 2 when ${h} < 60 then 3 else 4 end`;
  return [
    {
      table: "tenants",
      sql: `insert into tenants (id, name, slug)
            select ${sqlId("tenant", "i")}, 'Tenant ' || i, 't-' || i from generate_series(0, ${T - 1}) i`,
    },
    {
      table: "organizations",
      sql: `insert into organizations (id, tenant_id, name, slug, role_structure)
            select ${sqlId("org", "i")}, ${sqlId("tenant", `i % ${T}`)}, 'Org ' || i, 'org-' || i, 'single_role_in_hierarchy'
            from generate_series(0, ${O - 1}) i`,
    },
    {
      table: "users",
      sql: `insert into users (id, locked, enabled)
            select ${sqlId("user", "u")}, u % 97 = 13, u % 89 <> 7 from generate_series(0, ${U - 1}) u`,
    },
    {
      table: "roles",
      sql: `insert into roles (id, organization_id, key, name)
            select * from (values ${globalRoles}) g
            union all
            select ${sqlId("orgRole", "o * 5 + r")}, ${sqlId("org", "o")}, (${literalList(ORG_ROLE_KEYS)})[r + 1], (${literalList(ORG_ROLE_NAMES)})[r + 1]
            from generate_series(0, ${O - 1}) o, generate_series(0, 4) r`,
    },
    {
      table: "permissions",
      sql: `insert into permissions (id, organization_id, key)
            select ${sqlId("globalPerm", "g")}, null, 'platform.p' || lpad(g::text, 2, '0') from generate_series(0, ${GLOBAL_PERMS - 1}) g
            union all
            select ${sqlId("orgPerm", `o * ${ORG_PERM_KEYS.length} + p`)}, ${sqlId("org", "o")}, (${literalList(ORG_PERM_KEYS)})[p + 1]
            from generate_series(0, ${O - 1}) o, generate_series(0, ${ORG_PERM_KEYS.length - 1}) p`,
    },
    {
      table: "role_permissions",
      sql: `insert into role_permissions (role_id, permission_id)
            ${globalRolePerms}
            union all
            select ${sqlId("orgRole", "o * 5 + r")}, ${sqlId("orgPerm", `o * ${ORG_PERM_KEYS.length} + (4 - r) * 2 + x`)}
            from generate_series(0, ${O - 1}) o, generate_series(0, 4) r, generate_series(0, 1) x
            union all
            select ${sqlId("orgRole", "o * 5 + 4")}, ${sqlId("globalPerm", "0")} from generate_series(0, ${O - 1}) o`,
    },
    {
      table: "role_inheritance",
      sql: `insert into role_inheritance (role_id, parent_role_id)
            select * from (values ${globalEdges}) g
            union all
            select ${sqlId("orgRole", "o * 5 + r")}, ${sqlId("orgRole", "o * 5 + r + 1")}
            from generate_series(0, ${O - 1}) o, generate_series(0, 3) r`,
    },
    {
      table: "role_assignments",
      sql: `insert into role_assignments (id, subject_type, subject_id, role_id, scope_type, scope_id, active, valid_until)
            select ${sqlId("assignment", "k")}, 'user', ${sqlId("user", "u")},
                   case when glob then ${sqlId("globalRole", "case when u % 5000 = 0 then 0 else 1 end")}
                        else ${sqlId("orgRole", `org * 5 + ${role("h")}`)} end,
                   case when glob then 'global' else 'organization' end,
                   case when glob then null else ${sqlId("org", "org")} end,
                   k % 101 <> 100,
                   case when k % 211 = 5 then timestamptz '${EXPIRED_AT}' end
            from generate_series(0::bigint, ${A - 1}::bigint) k,
                 lateral (select k % ${U} as u, k / ${U} as j) a,
                 lateral (select j = ${APU - 1} and u % 200 = 0 as glob,
                                 (u * ${ORG_MULT} + j * ${stride}) % ${O} as org,
                                 (u * 31 + j * 17) % 100 as h) b`,
    },
    {
      table: "user_organizations",
      sql: `insert into user_organizations (user_id, organization_id, primary_role_id)
            select ${sqlId("user", "u")}, ${sqlId("org", "org")}, ${sqlId("orgRole", `org * 5 + ${role("(u * 31) % 100")}`)}
            from generate_series(0::bigint, ${U - 1}::bigint) u, lateral (select (u * ${ORG_MULT}) % ${O} as org) b`,
    },
  ];
}

/** Secondary indexes (not backing a constraint) are dropped before the bulk insert and built afterwards: sorting once beats 5M random inserts. */
const DEFERRED_INDEX_TABLES = ["role_assignments", "role_permissions", "user_organizations", "role_inheritance", "organizations"];

/**
 * Fills an empty, migrated database with the dataset. One session, change-log
 * (and validation and foreign-key) triggers off through
 * session_replication_role = replica (needs a superuser), so the change log
 * stays empty and the revision stays where it was; then VACUUM ANALYZE.
 */
export async function loadDatasetIntoPostgres(url: string, s: DatasetShape, log: (line: string) => void = () => {}): Promise<LoadTiming[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, idle_timeout: 5 });
  const timings: LoadTiming[] = [];
  const counts = rowCounts(s);
  const step = async (name: string, rows: number, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    timings.push({ step: name, rows, ms });
    log(`  loader: ${name} ${rows} rows in ${(ms / 1000).toFixed(1)} s`);
  };
  try {
    await sql.unsafe("set session_replication_role = replica");
    await sql.unsafe("set synchronous_commit = off");
    await sql.unsafe("set maintenance_work_mem = '1GB'");
    const [existing] = await sql.unsafe<Array<{ n: string }>>("select count(*)::text as n from users");
    if (existing && existing.n !== "0") throw new Error("loadDatasetIntoPostgres wants an empty, migrated database");
    const indexes = await sql.unsafe<Array<{ name: string; def: string }>>(
      `select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
         from pg_index i join pg_class t on t.oid = i.indrelid
        where t.relname = any($1) and t.relnamespace = current_schema()::regnamespace
          and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)`,
      [DEFERRED_INDEX_TABLES],
    );
    for (const ix of indexes) await sql.unsafe(`drop index ${ix.name}`);
    for (const st of loaderStatements(s)) await step(st.table, counts[st.table], () => sql.unsafe(st.sql));
    await step(`create ${indexes.length} secondary indexes`, 0, async () => {
      for (const ix of indexes) await sql.unsafe(ix.def);
    });
    await sql.unsafe("reset session_replication_role");
    await step("vacuum analyze", 0, () => sql.unsafe("vacuum analyze"));
  } finally {
    await sql.end({ timeout: 5 });
  }
  return timings;
}

/**
 * The engine benchmarks' floor: one random permission word per user, keyed by
 * the user's id as the checks carry it (what a Map.get and one bit test cost).
 */
export function floorTable(users: number): Map<string, Uint32Array> {
  const floor = new Map<string, Uint32Array>();
  const rand = prng(3);
  for (let u = 0; u < users; u++) floor.set(userId(u), Uint32Array.of((rand() * 2 ** 32) >>> 0));
  return floor;
}

/** n floor operations over the queries (their count a power of two): how many found their bit set. */
export function runFloor(floor: Map<string, Uint32Array>, Q: readonly CheckQuery[], n: number): number {
  const mask = Q.length - 1;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    const x = Q[i & mask] as CheckQuery;
    const b = floor.get(x.subject.id);
    if (b !== undefined && ((b[0] as number) & (1 << x.bit)) !== 0) acc++;
  }
  return acc;
}
