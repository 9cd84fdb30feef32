// The importer's record model and its record-by-record writer. Each record
// of the import format becomes one or more upserts (table, columns, conflict
// target); the sections that refer to other rows by something other than
// their id (a role's organization, a capability key, a role key) resolve it
// through Lookups first. The bulk writer (import-bulk.ts) runs the same
// upserts many rows per statement; this writer runs them one by one, and is
// what names the bad record when a bulk statement is refused.

import type { FieldType, SectionSpec } from "./import-spec.js";
import { SECTIONS } from "./import-spec.js";
import { POLICY_NAME, POLICY_NAME_RULE } from "./manage-rate-limits.js";
import { SqlError, type SqlQuerier } from "./sql.js";

export type Value = string | null;
/** A validated record: seed field → SQL text value (or null). */
export type Clean = Map<string, Value>;

export interface Validated {
  section: string;
  index: number;
  label: string;
  values: Clean;
  arrays: Map<string, string[]>;
  /** The record carries the deletion marker ("$delete": true). */
  del: boolean;
}

export type Outcome = "inserted" | "updated" | "unchanged";

/** A problem found while writing a record: it aborts the import. */
export class RecordError extends Error {}

export const SQL_TYPE: Record<Exclude<FieldType, "text[]">, string> = {
  uuid: "uuid",
  text: "text",
  bool: "boolean",
  int: "integer",
  json: "jsonb",
  ts: "timestamptz",
  epoch: "timestamptz",
};

export type Col = [column: string, sqlType: string, value: Value];

export interface Upsert {
  table: string;
  cols: Col[];
  /** Conflict target, e.g. "(id)" or "on constraint x". */
  conflict: string;
  /** Columns never overwritten on conflict (identity, natural keys). */
  keep: string[];
}

/** What the import resolves against the database: a role's organization, permissions and roles by key. */
export interface Lookups {
  /** role id → its organization (null: global); absent: no such role. */
  roleOrg: Map<string, string | null>;
  /** `${org}|${key}` → the permission matched there (the organization's, else the global one). */
  permission: Map<string, string>;
  /** `${org}|${keyOrName}` → the role matched there (the organization's by key, by name, else a global one). */
  role: Map<string, string>;
}

export const emptyLookups = (): Lookups => ({ roleOrg: new Map(), permission: new Map(), role: new Map() });

/** The SQL of an upsert that returns one row per record it inserted or changed, with (xmax = 0) as inserted. */
export function conflictAction(table: string, names: string[], keep: string[]): string {
  const kept = new Set(keep);
  const updatable = names.filter((c) => !kept.has(c));
  if (updatable.length === 0) return "do nothing";
  return `do update set ${updatable.map((c) => `${c} = excluded.${c}`).join(", ")}
     where (${updatable.map((c) => `${table}.${c}`).join(", ")}) is distinct from (${updatable.map((c) => `excluded.${c}`).join(", ")})`;
}

async function upsert(tx: SqlQuerier, u: Upsert): Promise<Outcome> {
  const names = u.cols.map(([c]) => c);
  // Every value travels as text and is cast in SQL, so both drivers (which
  // serialize typed parameters differently) store exactly the same thing.
  const placeholders = u.cols.map(([, t], i) => `$${i + 1}::text::${t}`);
  const text = `insert into ${u.table} (${names.join(", ")}) values (${placeholders.join(", ")})
    on conflict ${u.conflict} ${conflictAction(u.table, names, u.keep)}
    returning (xmax = 0) as inserted`;
  const rows = await tx.query(
    text,
    u.cols.map(([, , v]) => v),
  );
  const row = rows[0];
  if (!row) return "unchanged";
  return row.inserted === true ? "inserted" : "updated";
}

/** The record's fields mapped to (column, type, value) through the spec. */
function columns(spec: SectionSpec, values: Clean, skip: string[] = []): Col[] {
  const out: Col[] = [];
  for (const [name, value] of values) {
    const field = spec.fields[name];
    if (!field?.column || field.column.includes(".") || skip.includes(name) || field.type === "text[]") continue;
    out.push([field.column, SQL_TYPE[field.type], value]);
  }
  return out;
}

function keyFromName(name: string): string {
  const key = name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9._:-]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 128);
  if (!key) throw new RecordError(`cannot derive a role key from name "${name}"; give "key"`);
  return key;
}

const get = (rec: Validated, k: string): Value => rec.values.get(k) ?? null;

function roleOrg(l: Lookups, roleId: Value): string | null {
  const org = l.roleOrg.get(roleId ?? "");
  if (org === undefined) throw new RecordError(`role_id ${roleId} is not a known role`);
  return org;
}

const ID_SECTIONS = new Set([
  "TENANT",
  "Organization",
  "ORGANIZATION",
  "User",
  "USER",
  "STAFF",
  "ACCOUNT",
  "PRINCIPAL",
  "AVATAR",
  "MEMBERSHIP",
  "Role",
  "ROLE",
  "Permission",
  "OWNERSHIP_TRANSFER",
]);

export const ASSIGNMENT_KEY = ["subject_type", "subject_id", "role_id", "scope_type", "scope_id"];

/** Sections whose records are each exactly one upsert (every importable section but UserOrganizationInfo). */
export function isSingleUpsert(section: string): boolean {
  return section !== "UserOrganizationInfo";
}

/** The one upsert of a record of a single-upsert section; RecordError when it cannot be written. */
export function upsertFor(rec: Validated, l: Lookups): Upsert {
  const spec = SECTIONS[rec.section] as SectionSpec;
  const v = rec.values;
  if (ID_SECTIONS.has(rec.section)) {
    const cols = columns(spec, v);
    if (rec.section === "Role" && !v.has("key")) cols.push(["key", "text", keyFromName(get(rec, "name") ?? "")]);
    if (rec.section === "ROLE" && !v.has("name")) cols.push(["name", "text", get(rec, "key")]);
    return { table: spec.table, cols, conflict: "(id)", keep: ["id"] };
  }
  switch (rec.section) {
    case "CAPABILITY":
      return { table: "permissions", cols: columns(spec, v), conflict: "on constraint permissions_organization_key", keep: ["organization_id", "key"] };
    case "RolePermission":
    case "RoleInheritance":
      return {
        table: spec.table,
        cols: columns(spec, v),
        conflict: rec.section === "RolePermission" ? "(role_id, permission_id)" : "(role_id, parent_role_id)",
        keep: ["role_id", "permission_id", "parent_role_id"],
      };
    case "ROLE_PERMISSION":
      return rolePermission(rec, l);
    case "UserRole": {
      // Seed 000 assignments have no scope: a role applies on its own organization.
      const org = roleOrg(l, get(rec, "role_id"));
      const cols = columns(spec, v);
      cols.push(["subject_type", "text", "user"], ["scope_type", "text", org ? "organization" : "global"], ["scope_id", "uuid", org]);
      return { table: "role_assignments", cols, conflict: "on constraint role_assignments_unique", keep: ASSIGNMENT_KEY };
    }
    case "ROLE_ASSIGNMENT":
      return roleAssignment(rec);
    case "RateLimitPolicy": {
      // A name the API could not name could never be changed, deleted or assigned through it.
      const policyName = get(rec, "name");
      if (policyName !== null && !POLICY_NAME.test(policyName)) throw new RecordError(`name ${POLICY_NAME_RULE} (the name the API calls it by)`);
      return { table: "rate_limit_policies", cols: columns(spec, v), conflict: v.has("policy_id") ? "(id)" : "(name)", keep: ["id"] };
    }
    case "RateLimitAssignment":
      return rateLimitAssignment(rec);
    default:
      throw new RecordError(`section ${rec.section} has no writer`);
  }
}

function rolePermission(rec: Validated, l: Lookups): Upsert {
  const org = roleOrg(l, get(rec, "role_id"));
  const key = get(rec, "capability_key");
  const perm = l.permission.get(`${org ?? ""}|${key}`);
  if (perm === undefined) throw new RecordError(`capability_key "${key}" is not a CAPABILITY (or Permission) of the role's organization, nor a global one`);
  return {
    table: "role_permissions",
    cols: [
      ["id", "uuid", get(rec, "id")],
      ["role_id", "uuid", get(rec, "role_id")],
      ["permission_id", "uuid", perm],
    ],
    conflict: "(role_id, permission_id)",
    keep: ["id", "role_id", "permission_id"],
  };
}

function roleAssignment(rec: Validated): Upsert {
  const subjectType = get(rec, "subject_type") ?? "account";
  const accountId = get(rec, "account_id");
  const subjectId = get(rec, "subject_id");
  if (accountId !== null && subjectId !== null && accountId !== subjectId) {
    throw new RecordError("give account_id or subject_type/subject_id, not both");
  }
  if (accountId !== null && subjectType !== "account") throw new RecordError("account_id requires subject_type account");
  if ((accountId ?? subjectId) === null) throw new RecordError("account_id is required");
  const cols = columns(SECTIONS.ROLE_ASSIGNMENT as SectionSpec, rec.values, ["account_id", "subject_type", "subject_id"]);
  cols.push(["subject_type", "text", subjectType], ["subject_id", "uuid", accountId ?? subjectId]);
  return { table: "role_assignments", cols, conflict: "(id)", keep: ["id"] };
}

const NATURAL_TYPES: Record<string, string> = { policy_id: "integer", key_id: "text", window_start: "timestamptz" };

function rateLimitAssignment(rec: Validated): Upsert {
  const targets = ["user_id", "org_id"].filter((k) => get(rec, k) !== null);
  if (targets.length !== 1) throw new RecordError("exactly one of user_id, org_id must be given");
  const natural = ["policy_id", "user_id", "org_id"];
  const cols = columns(SECTIONS.RateLimitAssignment as SectionSpec, rec.values);
  for (const c of natural) if (!cols.some(([n]) => n === c)) cols.push([c, NATURAL_TYPES[c] ?? "uuid", null]);
  return { table: "rate_limit_assignments", cols, conflict: "on constraint rate_limit_assignments_unique", keep: natural };
}

// ---------------------------------------------------------------------------
// Lookups

/** Reads the lookups the given records need (their roles' organizations, permissions and roles by key). */
export async function fetchLookups(tx: SqlQuerier, recs: readonly Validated[]): Promise<Lookups> {
  const l = emptyLookups();
  const roleIds = new Set<string>();
  for (const r of recs) {
    const id = r.section === "UserRole" || r.section === "ROLE_PERMISSION" ? get(r, "role_id") : null;
    if (id !== null) roleIds.add(id);
  }
  if (roleIds.size > 0) {
    const rows = await tx.query<{ id: string; org: string | null }>(
      "select id::text as id, organization_id::text as org from roles where id = any(string_to_array($1::text, ',')::uuid[])",
      [[...roleIds].join(",")],
    );
    for (const r of rows) l.roleOrg.set(r.id, r.org);
  }
  const permKeys = recs.filter((r) => r.section === "ROLE_PERMISSION" && l.roleOrg.has(get(r, "role_id") ?? ""));
  const pairs = permKeys.map((r): [string | null, Value] => [l.roleOrg.get(get(r, "role_id") ?? "") ?? null, get(r, "capability_key")]);
  for (const row of await resolveByKey(tx, "permission", pairs)) l.permission.set(`${row.org ?? ""}|${row.k}`, row.id);
  const rolePairs: Array<[string | null, Value]> = [];
  for (const r of recs) {
    if (r.section !== "UserOrganizationInfo") continue;
    for (const k of roleKeys(r)) rolePairs.push([get(r, "org_id"), k]);
  }
  for (const row of await resolveByKey(tx, "role", rolePairs)) l.role.set(`${row.org ?? ""}|${row.k}`, row.id);
  return l;
}

/** The role keys a UserOrganizationInfo record names: user_role first, then additional_roles. */
export function roleKeys(r: Validated): string[] {
  const primary = get(r, "user_role");
  return [...(primary !== null ? [primary] : []), ...(r.arrays.get("additional_roles") ?? [])];
}

/**
 * Resolves (organization, key) pairs in one statement: a permission by key, a
 * role by key or name; the organization's own first, else a global one.
 */
async function resolveByKey(
  tx: SqlQuerier,
  what: "permission" | "role",
  pairs: ReadonlyArray<readonly [string | null, Value]>,
): Promise<Array<{ org: string | null; k: string; id: string }>> {
  if (pairs.length === 0) return [];
  // Index lookups, in order of preference (the organization's by key, by name, then a global one likewise).
  const id =
    what === "permission"
      ? `coalesce((select p.id from permissions p where p.organization_id = q.org and p.key = q.k),
                  (select p.id from permissions p where p.organization_id is null and p.key = q.k))`
      : `coalesce((select r.id from roles r where r.organization_id = q.org and r.key = q.k),
                  (select r.id from roles r where r.organization_id = q.org and r.name = q.k order by r.key limit 1),
                  (select r.id from roles r where r.organization_id is null and r.key = q.k),
                  (select r.id from roles r where r.organization_id is null and r.name = q.k order by r.key limit 1))`;
  return tx.query<{ org: string | null; k: string; id: string }>(
    `select org, k, id from (
       select q.org::text as org, q.k, (${id})::text as id
         from (select distinct (e.r->>0)::uuid as org, e.r->>1 as k from jsonb_array_elements($1::text::jsonb) e(r)) q) m
      where id is not null`,
    [JSON.stringify(pairs)],
  );
}

// ---------------------------------------------------------------------------
// Writing

/** Writes one record, all its upserts; RecordError or SqlError when refused. */
export async function writeRecord(tx: SqlQuerier, rec: Validated): Promise<Outcome> {
  const l = await fetchLookups(tx, [rec]);
  if (rec.section === "UserOrganizationInfo") return writePlace(tx, rec, l);
  return upsert(tx, upsertFor(rec, l));
}

/** Combines the outcomes of one record's several upserts. */
export function combine(a: Outcome, b: Outcome): Outcome {
  if (a === "inserted" || b === "inserted") return "inserted";
  return a === "updated" || b === "updated" ? "updated" : "unchanged";
}

/** The organization fields a UserOrganizationInfo record sets (slug, role structure), as columns. */
export function placeOrgCols(rec: Validated): Col[] {
  const cols: Col[] = [];
  if (rec.values.has("url_safe_org_name")) cols.push(["slug", "text", get(rec, "url_safe_org_name")]);
  if (rec.values.has("org_role_structure")) cols.push(["role_structure", "text", get(rec, "org_role_structure")]);
  return cols;
}

/** The upserts of a UserOrganizationInfo record after its organization fields: its place, then one assignment per role. */
export function placeUpserts(rec: Validated, l: Lookups): Upsert[] {
  const orgId = get(rec, "org_id");
  const userId = get(rec, "user_id");
  const roleIds = roleKeys(rec).map((k) => {
    const id = l.role.get(`${orgId}|${k}`);
    if (id === undefined) throw new RecordError(`role "${k}" is neither a role of organization ${orgId} nor a global role`);
    return id;
  });
  if (rec.values.has("primary_role_id") && rec.values.has("user_role")) throw new RecordError("give user_role or primary_role_id, not both");
  // primary_role_id (an extension, what export writes) names the primary role by id and assigns nothing.
  const primary = rec.values.has("primary_role_id") ? get(rec, "primary_role_id") : get(rec, "user_role") !== null ? (roleIds[0] as string) : null;
  const setsPrimary = rec.values.has("user_role") || rec.values.has("primary_role_id");
  const place: Upsert = {
    table: "user_organizations",
    cols: [["user_id", "uuid", userId], ["organization_id", "uuid", orgId], ...(setsPrimary ? [["primary_role_id", "uuid", primary] as Col] : [])],
    conflict: "(user_id, organization_id)",
    keep: ["user_id", "organization_id"],
  };
  // The role belongs to this organization or is global: either way the grant is made on this organization.
  const grants = roleIds.map(
    (roleId): Upsert => ({
      table: "role_assignments",
      cols: [
        ["subject_type", "text", "user"],
        ["subject_id", "uuid", userId],
        ["role_id", "uuid", roleId],
        ["scope_type", "text", "organization"],
        ["scope_id", "uuid", orgId],
      ],
      conflict: "on constraint role_assignments_unique",
      keep: ASSIGNMENT_KEY,
    }),
  );
  return [place, ...grants];
}

async function writePlace(tx: SqlQuerier, rec: Validated, l: Lookups): Promise<Outcome> {
  const orgId = get(rec, "org_id");
  let outcome: Outcome = "unchanged";
  const orgCols = placeOrgCols(rec);
  if (orgCols.length > 0) {
    const sets = orgCols.map(([c], i) => `${c} = $${i + 2}::text`);
    const rows = await tx.query(
      `update organizations set ${sets.join(", ")} where id = $1::uuid
         and (${orgCols.map(([c]) => c).join(", ")}) is distinct from (${orgCols.map((_, i) => `$${i + 2}::text`).join(", ")})
       returning id`,
      [orgId, ...orgCols.map(([, , x]) => x)],
    );
    if (rows.length) outcome = "updated";
    else if ((await tx.query("select 1 from organizations where id = $1::uuid", [orgId])).length === 0) {
      throw new RecordError(`org_id ${orgId} is not a known organization`);
    }
  }
  for (const u of placeUpserts(rec, l)) outcome = combine(outcome, await upsert(tx, u));
  return outcome;
}

/** Explains a database refusal in terms of the record, without SQL text; rethrows anything else. */
export function explain(err: unknown): string {
  if (err instanceof RecordError) return err.message;
  if (err instanceof SqlError) {
    switch (err.code) {
      case "23503":
        return `refers to a record that does not exist${err.detail ? `: ${err.detail.replace(/^Key /, "")}` : ""}`;
      case "23505":
        return `conflicts with an existing record${err.detail ? `: ${err.detail.replace(/^Key /, "")}` : ""}`;
      case "23514":
      case "23P01":
        // Check constraints name the rule; the triggers' messages are plain sentences.
        return err.message;
      case "23502":
        return `misses a required value (${err.message.replace(/^null value in column "(\w+)".*$/, "$1")})`;
      case "22P02":
      case "22007":
      case "22008":
        return `has a value of the wrong form (${err.message})`;
      default:
        break;
    }
  }
  throw err;
}
