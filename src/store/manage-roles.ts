// ManageRoles: an atomic batch of role, permission, grant, inheritance and
// assignment changes, in domain types, run through the one write pipeline
// (write-pipeline.ts: lock, idempotency, confinement, expected_revision).
// rpc/admin-handlers.ts translates the generated messages to and from these types.

import { AuthzError, invalidArgument } from "../errors.js";
import { key, MAX_NAME_BYTES, MAX_TEXT_BYTES, optional, optionalUuid, text, uuid } from "../validation.js";
import { enforceRoleStructure } from "./role-structure.js";
import type { SqlClient, SqlQuerier } from "./sql.js";
import type { TenantTable, WriteConfinement } from "./tenant-lookup.js";
import { INTERNAL_WRITER, refusal, runBatch, validateBatch, type WriteCaller } from "./write-pipeline.js";

/** A role (or permission) by UUID, or by key within its organization (null = global). */
export type RoleRefInput = { id: string } | { organizationId: string | null; key: string };
export type PermissionRefInput = { id: string } | { organizationId: string | null; key: string };

export const SUBJECT_TYPES = ["user", "account", "principal", "staff"] as const;
export const SCOPE_TYPES = ["tenant", "organization", "avatar"] as const;
export type SubjectType = (typeof SUBJECT_TYPES)[number];
export type ScopeType = (typeof SCOPE_TYPES)[number];

export interface SubjectInput {
  type: string;
  id: string;
}
export interface ScopeInput {
  type: string;
  id: string;
}

/** One change; `kind` mirrors the RoleMutation oneof case. */
export type Mutation =
  | {
      kind: "upsertRole";
      organizationId: string | null;
      key: string;
      /** Defaults to the key for a new role; left as is on an existing one when absent. */
      name?: string;
      /** Left as is on an existing role when absent. */
      description?: string;
      /** UUID for a new role; generated when absent. */
      id?: string;
    }
  | { kind: "deleteRole"; role: RoleRefInput }
  | {
      kind: "upsertPermission";
      organizationId: string | null;
      key: string;
      /** Left as is on an existing permission when absent. */
      description?: string;
      id?: string;
    }
  | { kind: "deletePermission"; permission: PermissionRefInput }
  | { kind: "grantPermission"; role: RoleRefInput; permission: PermissionRefInput }
  | { kind: "revokePermission"; role: RoleRefInput; permission: PermissionRefInput }
  | { kind: "addInheritance"; role: RoleRefInput; parent: RoleRefInput }
  | { kind: "removeInheritance"; role: RoleRefInput; parent: RoleRefInput }
  | {
      kind: "assignRole";
      subject: SubjectInput;
      role: RoleRefInput;
      /** null = a global assignment. */
      scope: ScopeInput | null;
      validUntil: Date | null;
      /** Replace the user's organization-level role in a single_role_in_hierarchy organization (role-structure.ts). */
      replace?: boolean;
      /** false: the assignment is (or becomes) suspended; absent or true: it is (or becomes) active. */
      active?: boolean;
    }
  | ({ kind: "unassignRole" } & ({ assignmentId: string } | { subject: SubjectInput; role: RoleRefInput; scope: ScopeInput | null }));

export interface ManageRolesInput {
  mutations: Mutation[];
  idempotencyKey?: string;
  expectedRevision?: string;
}

export interface MutationResult {
  /** The role, permission or assignment id; "" for edges. */
  id: string;
  /** False when the mutation was a no-op. */
  changed: boolean;
}

export interface ManageRolesResult {
  revision: string;
  results: MutationResult[];
}

export { MAX_MUTATIONS } from "./write-pipeline.js";

/** The proto field name of each mutation kind, for messages that name a field path. */
const FIELD: Record<Mutation["kind"], string> = {
  upsertRole: "upsert_role",
  deleteRole: "delete_role",
  upsertPermission: "upsert_permission",
  deletePermission: "delete_permission",
  grantPermission: "grant_permission",
  revokePermission: "revoke_permission",
  addInheritance: "add_inheritance",
  removeInheritance: "remove_inheritance",
  assignRole: "assign_role",
  unassignRole: "unassign_role",
};

/** Where a mutation's fields are, in messages: mutations[i].<its oneof case>. */
const pathOf = (m: Mutation, i: number) => `mutations[${i}].${FIELD[m.kind]}`;

// ---------------------------------------------------------------------------
// Validation: every field is checked (and UUIDs lower-cased) before the
// transaction starts. The normalized batch is also what the idempotency hash
// is computed over.
// ---------------------------------------------------------------------------

const orgId = (v: unknown, path: string): string | null => optionalUuid(v, path);

function ref(r: unknown, path: string): RoleRefInput {
  if (typeof r !== "object" || r === null) throw invalidArgument(`${path} is required`, path);
  if ("id" in r) return { id: uuid(r.id, `${path}.id`) };
  if ("key" in r) {
    const o = (r as { organizationId?: unknown }).organizationId;
    return { organizationId: orgId(o, `${path}.key.organization_id`), key: key(r.key, `${path}.key.key`) };
  }
  throw invalidArgument(`${path} must give an id or a key`, path);
}

function subject(s: unknown, path: string): SubjectInput {
  if (typeof s !== "object" || s === null) throw invalidArgument(`${path} is required`, path);
  const { type, id } = s as { type?: unknown; id?: unknown };
  if (!SUBJECT_TYPES.includes(type as SubjectType)) {
    throw invalidArgument(`${path}.type must be one of ${SUBJECT_TYPES.join(", ")}`, `${path}.type`);
  }
  return { type: type as SubjectType, id: uuid(id, `${path}.id`) };
}

function scope(s: unknown, path: string): ScopeInput | null {
  if (s === null || s === undefined) return null;
  if (typeof s !== "object") throw invalidArgument(`${path} must be a resource`, path);
  const { type, id } = s as { type?: unknown; id?: unknown };
  if (!SCOPE_TYPES.includes(type as ScopeType)) {
    throw invalidArgument(`${path}.type must be one of ${SCOPE_TYPES.join(", ")} (omit the scope for a global assignment)`, `${path}.type`);
  }
  return { type: type as ScopeType, id: uuid(id, `${path}.id`) };
}

function validateMutation(m: Mutation, i: number): Mutation {
  if (typeof m !== "object" || m === null || !Object.hasOwn(FIELD, m.kind)) {
    throw invalidArgument(`mutations[${i}] must set exactly one change (${Object.values(FIELD).join(", ")})`, `mutations[${i}]`);
  }
  const p = pathOf(m, i);
  switch (m.kind) {
    case "upsertRole":
    case "upsertPermission": {
      const common = {
        organizationId: orgId(m.organizationId, `${p}.key.organization_id`),
        key: key(m.key, `${p}.key.key`),
        ...optional("description", text(m.description, `${p}.description`, MAX_TEXT_BYTES)),
        ...optional("id", m.id === undefined || m.id === "" ? undefined : uuid(m.id, `${p}.id`)),
      };
      if (m.kind === "upsertPermission") return { kind: m.kind, ...common };
      const name = text(m.name, `${p}.name`, MAX_NAME_BYTES);
      return { kind: m.kind, ...common, ...optional("name", name === "" ? undefined : name) };
    }
    case "deleteRole":
      return { kind: m.kind, role: ref(m.role, p) };
    case "deletePermission":
      return { kind: m.kind, permission: ref(m.permission, p) };
    case "grantPermission":
    case "revokePermission":
      return { kind: m.kind, role: ref(m.role, `${p}.role`), permission: ref(m.permission, `${p}.permission`) };
    case "addInheritance":
    case "removeInheritance":
      return { kind: m.kind, role: ref(m.role, `${p}.role`), parent: ref(m.parent, `${p}.parent`) };
    case "assignRole": {
      const v = m.validUntil;
      if (v !== null && v !== undefined && (!(v instanceof Date) || Number.isNaN(v.getTime()))) {
        throw invalidArgument(`${p}.valid_until must be a valid timestamp`, `${p}.valid_until`);
      }
      if (m.active !== undefined && typeof m.active !== "boolean") throw invalidArgument(`${p}.active must be a boolean`, `${p}.active`);
      return {
        kind: m.kind,
        subject: subject(m.subject, `${p}.subject`),
        role: ref(m.role, `${p}.role`),
        scope: scope(m.scope, `${p}.scope`),
        validUntil: v ?? null,
        ...(m.replace ? { replace: true } : {}),
        // Only false is kept: absent and true mean the same, so they hash alike for idempotency (as before the field).
        ...(m.active === false ? { active: false } : {}),
      };
    }
    case "unassignRole":
      if ("assignmentId" in m) return { kind: m.kind, assignmentId: uuid(m.assignmentId, `${p}.assignment_id`) };
      return { kind: m.kind, subject: subject(m.subject, `${p}.subject`), role: ref(m.role, `${p}.role`), scope: scope(m.scope, `${p}.scope`) };
  }
}

/** Checks and normalizes the whole input; throws INVALID_ARGUMENT naming the first bad field. */
export function validateManageRoles(input: ManageRolesInput): ManageRolesInput {
  return validateBatch(input, validateMutation);
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

interface Resolved {
  id: string;
  organizationId: string | null;
  key: string;
}

/** The table of each kind of record. */
const TABLE = { role: "roles", permission: "permissions" } as const;

export function describeRef(kind: "role" | "permission", r: RoleRefInput): string {
  if ("id" in r) return `${kind} ${r.id}`;
  return r.organizationId === null ? `global ${kind} "${r.key}"` : `${kind} "${r.key}" of organization ${r.organizationId}`;
}

const describeResolved = (kind: "role" | "permission", r: Resolved): string =>
  r.organizationId === null ? `global ${kind} "${r.key}"` : `${kind} "${r.key}" of organization ${r.organizationId}`;

/**
 * The (organization_id, key) match on the unique index: `is not distinct from`
 * cannot use an index (a scan of every role or permission per lookup), so a
 * global key (null organization) gets its own `is null` form.
 */
function orgKey(org: string | null, key: string, firstParam: number): { sql: string; params: string[] } {
  if (org === null) return { sql: `organization_id is null and key = $${firstParam}::text`, params: [key] };
  return { sql: `organization_id = $${firstParam}::text::uuid and key = $${firstParam + 1}::text`, params: [org, key] };
}

async function resolve(tx: SqlQuerier, table: "roles" | "permissions", r: RoleRefInput): Promise<Resolved | undefined> {
  const cols = "id::text as id, organization_id::text as organization_id, key";
  const match = "id" in r ? { sql: "id = $1::text::uuid", params: [r.id] } : orgKey(r.organizationId, r.key, 1);
  const rows = await tx.query<{ id: string; organization_id: string | null; key: string }>(`select ${cols} from ${table} where ${match.sql}`, match.params);
  const row = rows[0];
  return row && { id: row.id, organizationId: row.organization_id, key: row.key };
}

export async function mustResolve(tx: SqlQuerier, kind: "role" | "permission", r: RoleRefInput, field: string): Promise<Resolved> {
  const found = await resolve(tx, TABLE[kind], r);
  if (!found) throw refusal("NOT_FOUND", `${field}: ${describeRef(kind, r)} not found`);
  return found;
}

type UpsertFields = { organizationId: string | null; key: string; name?: string; description?: string; id?: string };

/**
 * The upsert in one statement, so a batch can send it without waiting for the
 * mutation before (write-pipeline.ts, BatchWriter.pipelined): the rows that
 * hold the id or the key; then, unless the id names another row than the key
 * (refused below), the update of the row with the key (only when a field
 * changes, so a no-op stays out of the change log) or the insert of a new one.
 * Parameters: $1 the id (null: generated), $2.. the key match, then the fields.
 */
function upsertStatement(table: "roles" | "permissions", m: UpsertFields): { sql: string; params: unknown[] } {
  const match = orgKey(m.organizationId, m.key, 2);
  const k = 2 + match.params.length; // the key, as text, for a new role's default name
  // Absent fields (null here) keep their value on an existing record; a new role is named after its key.
  const fields: Array<[string, string | null]> =
    table === "roles"
      ? [
          ["name", m.name ?? null],
          ["description", m.description ?? null],
        ]
      : [["description", m.description ?? null]];
  const f = (i: number) => `$${k + 1 + i}::text`;
  const wanted = fields.map(([c], i) => `coalesce(${f(i)}, t.${c})`);
  const org = `$${k + 1 + fields.length}::text::uuid`;
  const isKey = `organization_id is not distinct from ${org} and key = $${k}::text`;
  const sql = `with found as (
      select id, organization_id, key from ${table} where id = $1::text::uuid or (${match.sql})
    ), clash as (
      select 1 from found where $1::text is not null and (id = $1::text::uuid) <> (${isKey})
    ), same as (
      select id from found where ${isKey}
    ), updated as (
      update ${table} t set ${fields.map(([c], i) => `${c} = ${wanted[i]}`).join(", ")}
        from same where t.id = same.id and not exists (select 1 from clash)
         and (${fields.map(([c]) => `t.${c}`).join(", ")}) is distinct from (${wanted.join(", ")})
      returning t.id
    ), inserted as (
      insert into ${table} (id, organization_id, key, ${fields.map(([c]) => c).join(", ")})
      select coalesce($1::text::uuid, gen_random_uuid()), ${org}, $${k}::text,
             ${fields.map(([c], i) => (c === "name" ? `coalesce(${f(i)}, $${k}::text)` : f(i))).join(", ")}
       where not exists (select 1 from same) and not exists (select 1 from clash)
      returning id
    )
    select id::text as id, organization_id::text as organization_id, key, 'found' as what from found
    union all select id::text, null, null, 'updated' from updated
    union all select id::text, null, null, 'inserted' from inserted`;
  return { sql, params: [m.id ?? null, ...match.params, m.key, ...fields.map(([, v]) => v), m.organizationId] };
}

type UpsertRow = { id: string; organization_id: string | null; key: string; what: "found" | "updated" | "inserted"; n?: string };

/** An upsert's result from its statement's rows: the rows that hold its id or key, and what it updated or inserted. */
function upsertOutcome(kind: "role" | "permission", m: UpsertFields, out: readonly UpsertRow[], field: string): MutationResult {
  const rows = out.filter((r) => r.what === "found");
  const same = rows.find((r) => r.organization_id === m.organizationId && r.key === m.key);
  if (m.id !== undefined) {
    const byId = rows.find((r) => r.id === m.id);
    if (byId && byId !== same) {
      throw refusal(
        "ALREADY_EXISTS",
        `${field}.id: ${kind} ${m.id} already exists as ${describeResolved(kind, { id: byId.id, organizationId: byId.organization_id, key: byId.key })}`,
      );
    }
    if (same && same.id !== m.id) {
      throw refusal(
        "ALREADY_EXISTS",
        `${field}.id: ${describeResolved(kind, { id: same.id, organizationId: m.organizationId, key: m.key })} already exists with id ${same.id}, not ${m.id}`,
      );
    }
  }
  if (same) return { id: same.id, changed: out.some((r) => r.what === "updated") };
  const inserted = out.find((r) => r.what === "inserted");
  return { id: (inserted as UpsertRow).id, changed: true };
}

async function upsertRecord(tx: SqlQuerier, table: "roles" | "permissions", m: UpsertFields, field: string): Promise<MutationResult> {
  const st = upsertStatement(table, m);
  return upsertOutcome(table === "roles" ? "role" : "permission", m, await tx.query<UpsertRow>(st.sql, st.params), field);
}

/**
 * A run of upserts of one table in one statement: upsertStatement for many
 * rows at once (the input numbered by n, its position in the run). Only for
 * runs whose ids and keys are all distinct: then no upsert in the run sees
 * another's effect, and one statement gives what one at a time would.
 */
function upsertRunStatement(table: "roles" | "permissions"): string {
  const roles = table === "roles";
  const fields = roles ? ["name", "description"] : ["description"];
  const wanted = fields.map((c) => `coalesce(i.${c}, t.${c})`);
  const cols = "id::text as id, organization_id::text as organization_id, key";
  return `with input as (
      select u.n, u.id::uuid as id, u.org::uuid as org, u.key, u.name, u.description
        from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) with ordinality as u(id, org, key, name, description, n)
    ), found as (
      select i.n, f.id, f.organization_id, f.key from input i cross join lateral (
        select ${cols} from ${table} where id = i.id
        union select ${cols} from ${table} where organization_id = i.org and key = i.key
        union select ${cols} from ${table} where i.org is null and organization_id is null and key = i.key
      ) f
    ), clash as (
      select distinct f.n from found f join input i using (n)
       where i.id is not null and (f.id::uuid = i.id) <> (f.organization_id::uuid is not distinct from i.org and f.key = i.key)
    ), same as (
      select f.n, f.id::uuid as id from found f join input i using (n) where f.organization_id::uuid is not distinct from i.org and f.key = i.key
    ), updated as (
      update ${table} t set ${fields.map((c, k) => `${c} = ${wanted[k]}`).join(", ")}
        from same join input i using (n)
       where t.id = same.id and same.n not in (select n from clash)
         and (${fields.map((c) => `t.${c}`).join(", ")}) is distinct from (${wanted.join(", ")})
      returning same.n, t.id
    ), inserted as (
      insert into ${table} (id, organization_id, key, ${fields.join(", ")})
      select coalesce(i.id, gen_random_uuid()), i.org, i.key, ${fields.map((c) => (c === "name" ? "coalesce(i.name, i.key)" : `i.${c}`)).join(", ")}
        from input i
       where i.n not in (select n from same) and i.n not in (select n from clash)
       order by i.n
      returning id, organization_id, key
    )
    select n::text, id, organization_id, key, 'found' as what from found
    union all select n::text, id::text, null, null, 'updated' from updated
    union all select i.n::text, x.id::text, null, null, 'inserted' from inserted x
      join input i on i.key = x.key and i.org is not distinct from x.organization_id`;
}

type UpsertMutation = Extract<Mutation, { kind: "upsertRole" | "upsertPermission" }>;

function applyUpserts(tx: SqlQuerier, run: ReadonlyArray<{ m: Mutation; index: number }>): Promise<Array<MutationResult | AuthzError>> | undefined {
  const ms = run.map((r) => r.m as UpsertMutation);
  const keys = new Set(ms.map((m) => `${m.organizationId ?? ""}/${m.key}`));
  const ids = ms.flatMap((m) => (m.id === undefined ? [] : [m.id]));
  if (keys.size < ms.length || new Set(ids).size < ids.length) return undefined;
  const roles = ms[0]?.kind === "upsertRole";
  const list = (f: (m: UpsertMutation) => string | null | undefined) => ms.map((m) => f(m) ?? null);
  const sent = tx.query<UpsertRow>(upsertRunStatement(roles ? "roles" : "permissions"), [
    list((m) => m.id),
    list((m) => m.organizationId),
    list((m) => m.key),
    list((m) => (m.kind === "upsertRole" ? m.name : null)),
    list((m) => m.description),
  ]);
  return sent.then((rows) =>
    run.map(({ m, index }, k) => {
      const mine = rows.filter((r) => r.n === String(k + 1));
      try {
        return upsertOutcome(roles ? "role" : "permission", m as UpsertMutation, mine, pathOf(m, index));
      } catch (err) {
        if (err instanceof AuthzError) return err;
        throw err;
      }
    }),
  );
}

/** The shortest inheritance path from `from` up to `to` (role ids), if `from` already inherits `to`. */
async function inheritancePath(tx: SqlQuerier, from: string, to: string): Promise<string[] | undefined> {
  const edges = await tx.query<{ role_id: string; parent_role_id: string }>(
    `with recursive reach(id) as (
       select $1::text::uuid
       union
       select ri.parent_role_id from role_inheritance ri join reach on ri.role_id = reach.id
     )
     select ri.role_id::text as role_id, ri.parent_role_id::text as parent_role_id
       from role_inheritance ri join reach on ri.role_id = reach.id`,
    [from],
  );
  if (from === to) return [from];
  const parents = new Map<string, string[]>();
  for (const e of edges) parents.set(e.role_id, [...(parents.get(e.role_id) ?? []), e.parent_role_id]);
  const prev = new Map<string, string>([[from, from]]);
  const queue = [from];
  while (queue.length) {
    const cur = queue.shift() as string;
    for (const p of parents.get(cur) ?? []) {
      if (prev.has(p)) continue;
      prev.set(p, cur);
      if (p === to) {
        const path = [to];
        for (let at = to; at !== from; at = prev.get(at) as string) path.unshift(prev.get(at) as string);
        return path;
      }
      queue.push(p);
    }
  }
  return undefined;
}

async function roleKeys(tx: SqlQuerier, ids: string[]): Promise<Map<string, string>> {
  const rows = await tx.query<{ id: string; key: string }>("select id::text as id, key from roles where id = any($1::text::uuid[])", [`{${ids.join(",")}}`]);
  return new Map(rows.map((r) => [r.id, r.key]));
}

const SUBJECT_TABLE: Record<SubjectType, string> = { user: "users", account: "accounts", principal: "principals", staff: "staff" };
const SCOPE_TABLE: Record<ScopeType, string> = { tenant: "tenants", organization: "organizations", avatar: "avatars" };

async function mustExist(tx: SqlQuerier, table: string, id: string, what: string): Promise<void> {
  const rows = await tx.query(`select 1 from ${table} where id = $1::text::uuid`, [id]);
  if (rows.length === 0) throw refusal("NOT_FOUND", `${what} not found`);
}

const scopeParams = (s: ScopeInput | null): [string, string | null] => (s === null ? ["global", null] : [s.type, s.id]);

/** The role assignment with this subject, role and scope (parameters $1 to $5). */
const SAME_ASSIGNMENT = `subject_type = $1::text and subject_id = $2::text::uuid and role_id = $3::text::uuid
            and scope_type = $4::text and scope_id is not distinct from $5::text::uuid`;

async function apply(tx: SqlQuerier, m: Mutation, i: number): Promise<MutationResult> {
  const p = pathOf(m, i);
  switch (m.kind) {
    case "upsertRole":
      return upsertRecord(tx, "roles", m, p);
    case "upsertPermission":
      return upsertRecord(tx, "permissions", m, p);
    case "deleteRole":
      return deleteRecord(tx, "role", m.role, p);
    case "deletePermission":
      return deleteRecord(tx, "permission", m.permission, p);
    case "grantPermission":
    case "revokePermission":
      return changeGrant(tx, m, p);
    case "addInheritance":
    case "removeInheritance": {
      const role = await mustResolve(tx, "role", m.role, `${p}.role`);
      const parent = await mustResolve(tx, "role", m.parent, `${p}.parent`);
      if (m.kind === "addInheritance") return addInheritance(tx, role, parent, p);
      const rows = await tx.query("delete from role_inheritance where role_id = $1::text::uuid and parent_role_id = $2::text::uuid returning role_id", [
        role.id,
        parent.id,
      ]);
      return { id: "", changed: rows.length > 0 };
    }
    case "assignRole":
      return assignRole(tx, m, p);
    case "unassignRole":
      return unassignRole(tx, m, p);
  }
}

async function deleteRecord(tx: SqlQuerier, kind: "role" | "permission", r: RoleRefInput, p: string): Promise<MutationResult> {
  const found = await mustResolve(tx, kind, r, p);
  const rows = await tx.query(`delete from ${TABLE[kind]} where id = $1::text::uuid returning id`, [found.id]);
  return { id: found.id, changed: rows.length > 0 };
}

/** A role holds, or inherits, only permissions or roles of its own organization or global ones. */
function mustFitOrganization(role: Resolved, kind: "role" | "permission", other: Resolved, p: string): void {
  if (other.organizationId === null || other.organizationId === role.organizationId) return;
  const verb = kind === "permission" ? "hold" : "inherit";
  throw refusal(
    "FAILED_PRECONDITION",
    `${p}: ${describeResolved("role", role)} cannot ${verb} ${describeResolved(kind, other)}: a role ${verb}s only ${kind}s of its own organization or global ones`,
    "CROSS_ORGANIZATION",
  );
}

async function changeGrant(tx: SqlQuerier, m: Extract<Mutation, { kind: "grantPermission" | "revokePermission" }>, p: string): Promise<MutationResult> {
  const role = await mustResolve(tx, "role", m.role, `${p}.role`);
  const perm = await mustResolve(tx, "permission", m.permission, `${p}.permission`);
  if (m.kind === "revokePermission") {
    const rows = await tx.query("delete from role_permissions where role_id = $1::text::uuid and permission_id = $2::text::uuid returning id", [
      role.id,
      perm.id,
    ]);
    return { id: "", changed: rows.length > 0 };
  }
  mustFitOrganization(role, "permission", perm, p);
  const rows = await tx.query(
    `insert into role_permissions (role_id, permission_id) values ($1::text::uuid, $2::text::uuid)
       on conflict (role_id, permission_id) do nothing returning id`,
    [role.id, perm.id],
  );
  return { id: "", changed: rows.length > 0 };
}

async function addInheritance(tx: SqlQuerier, role: Resolved, parent: Resolved, p: string): Promise<MutationResult> {
  mustFitOrganization(role, "role", parent, p);
  // The organization's role graph is locked until commit: no concurrent write can add the other half of a cycle.
  const existing = await tx.query(
    `select authz_lock_role_graph($3::text::uuid),
            exists (select 1 from role_inheritance where role_id = $1::text::uuid and parent_role_id = $2::text::uuid) as present`,
    [role.id, parent.id, role.organizationId],
  );
  if ((existing[0] as { present: boolean }).present) return { id: "", changed: false };
  const path = await inheritancePath(tx, parent.id, role.id);
  if (path) {
    const cycle = [...path, parent.id];
    const keys = await roleKeys(tx, cycle);
    throw refusal(
      "FAILED_PRECONDITION",
      `${p}: role inheritance would form a cycle: ${cycle.map((id) => keys.get(id) ?? id).join(" → ")}`,
      "INHERITANCE_CYCLE",
    );
  }
  await tx.query("insert into role_inheritance (role_id, parent_role_id) values ($1::text::uuid, $2::text::uuid)", [role.id, parent.id]);
  return { id: "", changed: true };
}

async function assignRole(tx: SqlQuerier, m: Extract<Mutation, { kind: "assignRole" }>, p: string): Promise<MutationResult> {
  const role = await mustResolve(tx, "role", m.role, `${p}.role`);
  await mustExist(tx, SUBJECT_TABLE[m.subject.type as SubjectType], m.subject.id, `${p}.subject: ${m.subject.type} ${m.subject.id}`);
  // Checked here because the scope trigger would otherwise report a missing avatar as a scope mismatch.
  if (m.scope) await mustExist(tx, SCOPE_TABLE[m.scope.type as ScopeType], m.scope.id, `${p}.scope: ${m.scope.type} ${m.scope.id}`);
  if (m.subject.type === "user" && m.scope?.type === "organization") {
    await enforceRoleStructure(tx, { userId: m.subject.id, organizationId: m.scope.id, roleId: role.id, replace: m.replace === true }, p);
  }
  const [scopeType, scopeId] = scopeParams(m.scope);
  const validUntil = m.validUntil ? m.validUntil.toISOString() : null;
  // An existing assignment is updated in place (id and assigned_at kept), and only when something differs,
  // so a no-op reports changed = false and stays out of the change log.
  const rows = await tx.query<{ id: string }>(
    `insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id, valid_until, active)
       values ($1::text, $2::text::uuid, $3::text::uuid, $4::text, $5::text::uuid, $6::text::timestamptz, $7::text::boolean)
     on conflict on constraint role_assignments_unique do update
       set valid_until = excluded.valid_until, active = excluded.active
       where (role_assignments.valid_until, role_assignments.active) is distinct from (excluded.valid_until, excluded.active)
     returning id::text as id`,
    [m.subject.type, m.subject.id, role.id, scopeType, scopeId, validUntil, String(m.active !== false)],
  );
  if (rows[0]) return { id: rows[0].id, changed: true };
  const same = await tx.query<{ id: string }>(`select id::text as id from role_assignments where ${SAME_ASSIGNMENT}`, [
    m.subject.type,
    m.subject.id,
    role.id,
    scopeType,
    scopeId,
  ]);
  return { id: same[0]?.id ?? "", changed: false };
}

async function unassignRole(tx: SqlQuerier, m: Extract<Mutation, { kind: "unassignRole" }>, p: string): Promise<MutationResult> {
  if ("assignmentId" in m) {
    const rows = await tx.query("delete from role_assignments where id = $1::text::uuid returning id", [m.assignmentId]);
    return { id: m.assignmentId, changed: rows.length > 0 };
  }
  const role = await mustResolve(tx, "role", m.role, `${p}.role`);
  const [scopeType, scopeId] = scopeParams(m.scope);
  const rows = await tx.query<{ id: string }>(`delete from role_assignments where ${SAME_ASSIGNMENT} returning id::text as id`, [
    m.subject.type,
    m.subject.id,
    role.id,
    scopeType,
    scopeId,
  ]);
  return { id: rows[0]?.id ?? "", changed: rows.length > 0 };
}

// ---------------------------------------------------------------------------
// Confinement: every row a mutation refers to, for a tenant-bound caller
// ---------------------------------------------------------------------------

/** A role or permission reference: by id (the row's tenant) or by key (its organization's tenant; null = global). */
async function confineRef(c: WriteConfinement, kind: "role" | "permission", r: RoleRefInput, what: string, global: "allowed" | "denied"): Promise<void> {
  if ("id" in r) {
    await (global === "allowed" ? c.ownOrGlobal(TABLE[kind], r.id, what) : c.own(TABLE[kind], r.id, what));
  } else if (r.organizationId !== null) {
    await c.organization(r.organizationId, what);
  } else if (global === "denied") {
    c.global(what);
  }
}

const SUBJECT_TENANT_TABLE: Partial<Record<SubjectType, TenantTable>> = { account: "accounts", principal: "principals" };
const SCOPE_TENANT_TABLE: Record<ScopeType, TenantTable> = { tenant: "tenants", organization: "organizations", avatar: "avatars" };

/** An assignment's subject, role and scope: the scope and a tenant-owned subject in the tenant; a global role only on them. */
async function confineAssignment(c: WriteConfinement, m: { subject: SubjectInput; role: RoleRefInput; scope: ScopeInput | null }, p: string): Promise<void> {
  if (m.scope === null) c.global(`${p}.scope: the global scope`);
  else await c.own(SCOPE_TENANT_TABLE[m.scope.type as ScopeType], m.scope.id, `${p}.scope: ${m.scope.type} ${m.scope.id}`);
  const subjectTable = SUBJECT_TENANT_TABLE[m.subject.type as SubjectType];
  if (subjectTable) await c.own(subjectTable, m.subject.id, `${p}.subject: ${m.subject.type} ${m.subject.id}`);
  await confineRef(c, "role", m.role, `${p}.role: ${describeRef("role", m.role)}`, "allowed");
}

async function confineMutation(c: WriteConfinement, m: Mutation, i: number): Promise<void> {
  const p = pathOf(m, i);
  switch (m.kind) {
    case "upsertRole":
    case "upsertPermission": {
      const kind = m.kind === "upsertRole" ? "role" : "permission";
      if (m.organizationId === null) c.global(`${p}: a global ${kind}`);
      else await c.organization(m.organizationId, `${p}.key.organization_id: organization ${m.organizationId}`);
      if (m.id !== undefined) await c.own(TABLE[kind], m.id, `${p}.id: ${kind} ${m.id}`);
      return;
    }
    case "deleteRole":
      return confineRef(c, "role", m.role, `${p}: ${describeRef("role", m.role)}`, "denied");
    case "deletePermission":
      return confineRef(c, "permission", m.permission, `${p}: ${describeRef("permission", m.permission)}`, "denied");
    case "grantPermission":
    case "revokePermission":
      await confineRef(c, "role", m.role, `${p}.role: ${describeRef("role", m.role)}`, "denied");
      return confineRef(c, "permission", m.permission, `${p}.permission: ${describeRef("permission", m.permission)}`, "allowed");
    case "addInheritance":
    case "removeInheritance":
      await confineRef(c, "role", m.role, `${p}.role: ${describeRef("role", m.role)}`, "denied");
      return confineRef(c, "role", m.parent, `${p}.parent: ${describeRef("role", m.parent)}`, "allowed");
    case "assignRole":
      return confineAssignment(c, m, p);
    case "unassignRole":
      if ("assignmentId" in m) return c.own("role_assignments", m.assignmentId, `${p}.assignment_id: assignment ${m.assignmentId}`);
      return confineAssignment(c, m, p);
  }
}

// ---------------------------------------------------------------------------
// The batch
// ---------------------------------------------------------------------------

/**
 * Applies the batch atomically: every mutation or none. Returns the revision
 * the batch committed at (unchanged when nothing changed) and one result per
 * mutation. With an idempotency key, a retry of the same batch by the same
 * caller returns the first response without writing.
 */
export async function manageRoles(db: SqlClient, raw: ManageRolesInput, caller: WriteCaller = INTERNAL_WRITER): Promise<ManageRolesResult> {
  return runBatch(db, caller, validateManageRoles(raw), {
    rpc: "ManageRoles",
    field: (m) => FIELD[m.kind],
    confine: confineMutation,
    apply,
    // An upsert is one statement (upsertStatement); a run of them, one statement too (upsertRunStatement).
    pipelined: (m) => m.kind === "upsertRole" || m.kind === "upsertPermission",
    runKey: (m) => (m.kind === "upsertRole" || m.kind === "upsertPermission" ? m.kind : undefined),
    applyRun: applyUpserts,
  });
}
