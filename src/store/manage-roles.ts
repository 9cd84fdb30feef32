// ManageRoles: an atomic batch of role, permission, grant, inheritance and
// assignment changes, in domain types. The transaction takes the writers'
// lock (the authz_revision row) before anything else, so batches serialize:
// expected_revision, idempotency and cycle checks cannot race another batch.
// rpc/admin-handlers.ts translates the generated messages to and from these types.

import { createHash } from "node:crypto";
import { AuthzError, invalidArgument } from "../errors.js";
import { type SqlClient, SqlError, type SqlQuerier } from "./sql.js";
import { UUID } from "../validation.js";

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

export const MAX_MUTATIONS = 1000;
export const MAX_IDEMPOTENCY_KEY_BYTES = 128;
const IDEMPOTENCY_SCOPE = "ManageRoles";
const KEY = /^[A-Za-z0-9._:-]{1,128}$/;
const REVISION = /^\d{1,20}$/;

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

// ---------------------------------------------------------------------------
// Validation: every field is checked (and UUIDs lower-cased) before the
// transaction starts. The normalized batch is also what the idempotency hash
// is computed over.
// ---------------------------------------------------------------------------

function uuid(v: unknown, path: string): string {
  if (typeof v !== "string" || !UUID.test(v)) throw invalidArgument(`${path} must be a UUID in canonical text form`, path);
  return v.toLowerCase();
}

function key(v: unknown, path: string): string {
  if (typeof v !== "string" || !KEY.test(v)) {
    throw invalidArgument(`${path} must be 1 to 128 characters of letters, digits and "._:-"`, path);
  }
  return v;
}

function optionalText(v: unknown, path: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw invalidArgument(`${path} must be a string`, path);
  return v;
}

function orgId(v: unknown, path: string): string | null {
  return v === null || v === undefined || v === "" ? null : uuid(v, path);
}

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

/** `{ [k]: v }`, or nothing when v is undefined (keeps absent fields absent, not undefined). */
function optional<K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
}

function validateMutation(m: Mutation, i: number): Mutation {
  if (typeof m !== "object" || m === null || !Object.hasOwn(FIELD, m.kind)) {
    throw invalidArgument(`mutations[${i}] must set exactly one change (${Object.values(FIELD).join(", ")})`, `mutations[${i}]`);
  }
  const p = `mutations[${i}].${FIELD[m.kind]}`;
  switch (m.kind) {
    case "upsertRole":
    case "upsertPermission": {
      const common = {
        organizationId: orgId(m.organizationId, `${p}.key.organization_id`),
        key: key(m.key, `${p}.key.key`),
        ...optional("description", optionalText(m.description, `${p}.description`)),
        ...optional("id", m.id === undefined || m.id === "" ? undefined : uuid(m.id, `${p}.id`)),
      };
      if (m.kind === "upsertPermission") return { kind: m.kind, ...common };
      const name = optionalText(m.name, `${p}.name`);
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
      return {
        kind: m.kind,
        subject: subject(m.subject, `${p}.subject`),
        role: ref(m.role, `${p}.role`),
        scope: scope(m.scope, `${p}.scope`),
        validUntil: v ?? null,
      };
    }
    case "unassignRole":
      if ("assignmentId" in m) return { kind: m.kind, assignmentId: uuid(m.assignmentId, `${p}.assignment_id`) };
      return { kind: m.kind, subject: subject(m.subject, `${p}.subject`), role: ref(m.role, `${p}.role`), scope: scope(m.scope, `${p}.scope`) };
  }
}

/** Checks and normalizes the whole input; throws INVALID_ARGUMENT naming the first bad field. */
export function validateManageRoles(input: ManageRolesInput): ManageRolesInput {
  if (!Array.isArray(input.mutations) || input.mutations.length === 0 || input.mutations.length > MAX_MUTATIONS) {
    throw invalidArgument(`mutations must hold 1 to ${MAX_MUTATIONS} changes`, "mutations");
  }
  const out: ManageRolesInput = { mutations: input.mutations.map(validateMutation) };
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== "") {
    if (typeof input.idempotencyKey !== "string" || Buffer.byteLength(input.idempotencyKey, "utf8") > MAX_IDEMPOTENCY_KEY_BYTES) {
      throw invalidArgument(`idempotency_key must be at most ${MAX_IDEMPOTENCY_KEY_BYTES} bytes`, "idempotency_key");
    }
    out.idempotencyKey = input.idempotencyKey;
  }
  if (input.expectedRevision !== undefined && input.expectedRevision !== "") {
    if (typeof input.expectedRevision !== "string" || !REVISION.test(input.expectedRevision)) {
      throw invalidArgument("expected_revision must be a revision (a decimal number) returned by an earlier call", "expected_revision");
    }
    out.expectedRevision = BigInt(input.expectedRevision).toString();
  }
  return out;
}

// ---------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------

/** JSON with sorted keys, undefined left out and dates as ISO strings: equal requests, equal text. */
function canonicalJson(v: unknown): string {
  if (v instanceof Date) return JSON.stringify(v.toISOString());
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    const entries = Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v ?? null);
}

function requestHash(input: ManageRolesInput): string {
  return createHash("sha256")
    .update(canonicalJson({ mutations: input.mutations, expectedRevision: input.expectedRevision ?? null }))
    .digest("hex");
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/** A refusal found while applying one mutation; gets the mutation's index prefixed. */
class MutationError extends Error {
  constructor(
    readonly code: "NOT_FOUND" | "ALREADY_EXISTS" | "FAILED_PRECONDITION",
    message: string,
    readonly reason?: string,
  ) {
    super(message);
  }
}

interface Resolved {
  id: string;
  organizationId: string | null;
  key: string;
}

const orgText = (org: string | null): string => (org === null ? "global" : `of organization ${org}`);

function describeRef(kind: "role" | "permission", r: RoleRefInput): string {
  if ("id" in r) return `${kind} ${r.id}`;
  return r.organizationId === null ? `global ${kind} "${r.key}"` : `${kind} "${r.key}" of organization ${r.organizationId}`;
}

const describeResolved = (kind: "role" | "permission", r: Resolved): string =>
  r.organizationId === null ? `global ${kind} "${r.key}"` : `${kind} "${r.key}" of organization ${r.organizationId}`;

async function resolve(tx: SqlQuerier, table: "roles" | "permissions", r: RoleRefInput): Promise<Resolved | undefined> {
  const cols = "id::text as id, organization_id::text as organization_id, key";
  const rows =
    "id" in r
      ? await tx.query<{ id: string; organization_id: string | null; key: string }>(`select ${cols} from ${table} where id = $1::text::uuid`, [r.id])
      : await tx.query<{ id: string; organization_id: string | null; key: string }>(
          `select ${cols} from ${table} where organization_id is not distinct from $1::text::uuid and key = $2::text`,
          [r.organizationId, r.key],
        );
  const row = rows[0];
  return row && { id: row.id, organizationId: row.organization_id, key: row.key };
}

async function mustResolve(tx: SqlQuerier, kind: "role" | "permission", r: RoleRefInput, field: string): Promise<Resolved> {
  const found = await resolve(tx, kind === "role" ? "roles" : "permissions", r);
  if (!found) throw new MutationError("NOT_FOUND", `${field}: ${describeRef(kind, r)} not found`);
  return found;
}

async function upsertRecord(
  tx: SqlQuerier,
  table: "roles" | "permissions",
  m: { organizationId: string | null; key: string; name?: string; description?: string; id?: string },
  field: string,
): Promise<MutationResult> {
  const kind = table === "roles" ? "role" : "permission";
  const rows = await tx.query<{ id: string; organization_id: string | null; key: string }>(
    `select id::text as id, organization_id::text as organization_id, key from ${table}
      where id = $1::text::uuid or (organization_id is not distinct from $2::text::uuid and key = $3::text)`,
    [m.id ?? null, m.organizationId, m.key],
  );
  const same = rows.find((r) => r.organization_id === m.organizationId && r.key === m.key);
  if (m.id !== undefined) {
    const byId = rows.find((r) => r.id === m.id);
    if (byId && byId !== same) {
      throw new MutationError(
        "ALREADY_EXISTS",
        `${field}.id: ${kind} ${m.id} already exists as ${describeResolved(kind, { id: byId.id, organizationId: byId.organization_id, key: byId.key })}`,
      );
    }
    if (same && same.id !== m.id) {
      throw new MutationError("ALREADY_EXISTS", `${field}.id: ${describeResolved(kind, { id: same.id, organizationId: m.organizationId, key: m.key })} already exists with id ${same.id}, not ${m.id}`);
    }
  }
  // Absent fields (null here) keep their value on an existing record.
  const fields: Array<[string, string | null]> =
    table === "roles" ? [["name", m.name ?? null], ["description", m.description ?? null]] : [["description", m.description ?? null]];
  if (same) {
    // "is distinct from" keeps a no-op out of the change log (and reports it unchanged).
    const wanted = fields.map(([c], i) => `coalesce($${i + 2}::text, ${c})`);
    const updated = await tx.query(
      `update ${table} set ${fields.map(([c], i) => `${c} = ${wanted[i]}`).join(", ")}
        where id = $1::text::uuid and (${fields.map(([c]) => c).join(", ")}) is distinct from (${wanted.join(", ")})
        returning id`,
      [same.id, ...fields.map(([, v]) => v)],
    );
    return { id: same.id, changed: updated.length > 0 };
  }
  // A new role is named after its key unless a name is given.
  const inserted = await tx.query<{ id: string }>(
    `insert into ${table} (id, organization_id, key, ${fields.map(([c]) => c).join(", ")})
     values (coalesce($1::text::uuid, gen_random_uuid()), $2::text::uuid, $3::text,
             ${fields.map(([c], i) => (c === "name" ? `coalesce($${i + 4}::text, $3::text)` : `$${i + 4}::text`)).join(", ")})
     returning id::text as id`,
    [m.id ?? null, m.organizationId, m.key, ...fields.map(([, v]) => v)],
  );
  return { id: (inserted[0] as { id: string }).id, changed: true };
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
  const rows = await tx.query<{ id: string; key: string }>(
    "select id::text as id, key from roles where id = any($1::text::uuid[])",
    [`{${ids.join(",")}}`],
  );
  return new Map(rows.map((r) => [r.id, r.key]));
}

const SUBJECT_TABLE: Record<SubjectType, string> = { user: "users", account: "accounts", principal: "principals", staff: "staff" };
const SCOPE_TABLE: Record<ScopeType, string> = { tenant: "tenants", organization: "organizations", avatar: "avatars" };

async function mustExist(tx: SqlQuerier, table: string, id: string, what: string): Promise<void> {
  const rows = await tx.query(`select 1 from ${table} where id = $1::text::uuid`, [id]);
  if (rows.length === 0) throw new MutationError("NOT_FOUND", `${what} not found`);
}

const scopeParams = (s: ScopeInput | null): [string, string | null] => (s === null ? ["global", null] : [s.type, s.id]);

async function apply(tx: SqlQuerier, m: Mutation, i: number): Promise<MutationResult> {
  const p = `mutations[${i}].${FIELD[m.kind]}`;
  switch (m.kind) {
    case "upsertRole":
      return upsertRecord(tx, "roles", m, p);
    case "upsertPermission":
      return upsertRecord(tx, "permissions", m, p);
    case "deleteRole": {
      const role = await mustResolve(tx, "role", m.role, p);
      const rows = await tx.query("delete from roles where id = $1::text::uuid returning id", [role.id]);
      return { id: role.id, changed: rows.length > 0 };
    }
    case "deletePermission": {
      const perm = await mustResolve(tx, "permission", m.permission, p);
      const rows = await tx.query("delete from permissions where id = $1::text::uuid returning id", [perm.id]);
      return { id: perm.id, changed: rows.length > 0 };
    }
    case "grantPermission":
    case "revokePermission": {
      const role = await mustResolve(tx, "role", m.role, `${p}.role`);
      const perm = await mustResolve(tx, "permission", m.permission, `${p}.permission`);
      if (m.kind === "revokePermission") {
        const rows = await tx.query(
          "delete from role_permissions where role_id = $1::text::uuid and permission_id = $2::text::uuid returning id",
          [role.id, perm.id],
        );
        return { id: "", changed: rows.length > 0 };
      }
      if (perm.organizationId !== null && perm.organizationId !== role.organizationId) {
        throw new MutationError(
          "FAILED_PRECONDITION",
          `${p}: ${describeResolved("role", role)} cannot hold ${describeResolved("permission", perm)}: a role holds only permissions of its own organization or global ones`,
          "CROSS_ORGANIZATION",
        );
      }
      const rows = await tx.query(
        `insert into role_permissions (role_id, permission_id) values ($1::text::uuid, $2::text::uuid)
           on conflict (role_id, permission_id) do nothing returning id`,
        [role.id, perm.id],
      );
      return { id: "", changed: rows.length > 0 };
    }
    case "addInheritance":
    case "removeInheritance": {
      const role = await mustResolve(tx, "role", m.role, `${p}.role`);
      const parent = await mustResolve(tx, "role", m.parent, `${p}.parent`);
      if (m.kind === "removeInheritance") {
        const rows = await tx.query(
          "delete from role_inheritance where role_id = $1::text::uuid and parent_role_id = $2::text::uuid returning role_id",
          [role.id, parent.id],
        );
        return { id: "", changed: rows.length > 0 };
      }
      if (parent.organizationId !== null && parent.organizationId !== role.organizationId) {
        throw new MutationError(
          "FAILED_PRECONDITION",
          `${p}: ${describeResolved("role", role)} cannot inherit ${describeResolved("role", parent)}: a role inherits only roles of its own organization or global ones`,
          "CROSS_ORGANIZATION",
        );
      }
      const existing = await tx.query(
        "select 1 from role_inheritance where role_id = $1::text::uuid and parent_role_id = $2::text::uuid",
        [role.id, parent.id],
      );
      if (existing.length > 0) return { id: "", changed: false };
      // The batch holds the writers' lock, so no other batch can add the other half of a cycle meanwhile.
      const path = await inheritancePath(tx, parent.id, role.id);
      if (path) {
        const cycle = [...path, parent.id];
        const keys = await roleKeys(tx, cycle);
        throw new MutationError(
          "FAILED_PRECONDITION",
          `${p}: role inheritance would form a cycle: ${cycle.map((id) => keys.get(id) ?? id).join(" → ")}`,
          "INHERITANCE_CYCLE",
        );
      }
      await tx.query("insert into role_inheritance (role_id, parent_role_id) values ($1::text::uuid, $2::text::uuid)", [role.id, parent.id]);
      return { id: "", changed: true };
    }
    case "assignRole": {
      const role = await mustResolve(tx, "role", m.role, `${p}.role`);
      await mustExist(tx, SUBJECT_TABLE[m.subject.type as SubjectType], m.subject.id, `${p}.subject: ${m.subject.type} ${m.subject.id}`);
      // Checked here because the scope trigger would otherwise report a missing avatar as a scope mismatch.
      if (m.scope) await mustExist(tx, SCOPE_TABLE[m.scope.type as ScopeType], m.scope.id, `${p}.scope: ${m.scope.type} ${m.scope.id}`);
      const [scopeType, scopeId] = scopeParams(m.scope);
      const validUntil = m.validUntil ? m.validUntil.toISOString() : null;
      const rows = await tx.query<{ id: string }>(
        `insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id, valid_until)
           values ($1::text, $2::text::uuid, $3::text::uuid, $4::text, $5::text::uuid, $6::text::timestamptz)
         on conflict on constraint role_assignments_unique do update
           set valid_until = excluded.valid_until, active = true
           where (role_assignments.valid_until, role_assignments.active) is distinct from (excluded.valid_until, true)
         returning id::text as id`,
        [m.subject.type, m.subject.id, role.id, scopeType, scopeId, validUntil],
      );
      if (rows[0]) return { id: rows[0].id, changed: true };
      const same = await tx.query<{ id: string }>(
        `select id::text as id from role_assignments
          where subject_type = $1::text and subject_id = $2::text::uuid and role_id = $3::text::uuid
            and scope_type = $4::text and scope_id is not distinct from $5::text::uuid`,
        [m.subject.type, m.subject.id, role.id, scopeType, scopeId],
      );
      return { id: same[0]?.id ?? "", changed: false };
    }
    case "unassignRole": {
      if ("assignmentId" in m) {
        const rows = await tx.query("delete from role_assignments where id = $1::text::uuid returning id", [m.assignmentId]);
        return { id: m.assignmentId, changed: rows.length > 0 };
      }
      const role = await mustResolve(tx, "role", m.role, `${p}.role`);
      const [scopeType, scopeId] = scopeParams(m.scope);
      const rows = await tx.query<{ id: string }>(
        `delete from role_assignments
          where subject_type = $1::text and subject_id = $2::text::uuid and role_id = $3::text::uuid
            and scope_type = $4::text and scope_id is not distinct from $5::text::uuid
          returning id::text as id`,
        [m.subject.type, m.subject.id, role.id, scopeType, scopeId],
      );
      return { id: rows[0]?.id ?? "", changed: rows.length > 0 };
    }
  }
}

// ---------------------------------------------------------------------------
// Database refusals → domain errors, never SQL text
// ---------------------------------------------------------------------------

/** Rules enforced by triggers whose messages are plain sentences fit for callers. */
const TRIGGER_RULES = new Set([
  "roles_builtin",
  "roles_organization_fixed",
  "permissions_organization_fixed",
  "role_permissions_same_organization",
  "role_inheritance_same_organization",
  "role_inheritance_acyclic",
  "role_assignments_scope_in_role_organization",
]);

const MISSING: Record<string, string> = {
  roles_organization_id_fkey: "the organization does not exist",
  permissions_organization_id_fkey: "the organization does not exist",
  role_assignments_user_id_fkey: "the subject user does not exist",
  role_assignments_account_id_fkey: "the subject account does not exist",
  role_assignments_principal_id_fkey: "the subject principal does not exist",
  role_assignments_staff_id_fkey: "the subject staff member does not exist",
  role_assignments_tenant_scope_id_fkey: "the scope tenant does not exist",
  role_assignments_organization_scope_id_fkey: "the scope organization does not exist",
  role_assignments_avatar_scope_id_fkey: "the scope avatar does not exist",
  role_assignments_role_id_fkey: "the role does not exist",
  role_permissions_role_id_fkey: "the role does not exist",
  role_permissions_permission_id_fkey: "the permission does not exist",
  role_inheritance_role_id_fkey: "the role does not exist",
  role_inheritance_parent_role_id_fkey: "the parent role does not exist",
};

/** Maps a database error to an AuthzError; `where` names the mutation ("mutations[3].assign_role") or the batch. */
function fromSqlError(err: SqlError, where: string): AuthzError | SqlError {
  const c = err.constraint;
  switch (err.code) {
    case "23503":
      return new AuthzError("NOT_FOUND", `${where}: ${(c && MISSING[c]) ?? "refers to a record that does not exist"}`, { cause: err });
    case "23505":
      return new AuthzError("ALREADY_EXISTS", `${where}: conflicts with an existing record${c ? ` (${c})` : ""}`, { cause: err });
    case "23514":
    case "23P01": {
      const reason = c === "role_inheritance_acyclic" ? "INHERITANCE_CYCLE" : undefined;
      const text = c && TRIGGER_RULES.has(c) ? err.message : `violates the rule ${c ?? "of the data model"}`;
      return new AuthzError("FAILED_PRECONDITION", `${where}: ${text}`, { cause: err, ...(reason ? { reason } : {}) });
    }
    case "40001":
    case "40P01":
      return new AuthzError("ABORTED", "concurrent write, retry", { cause: err });
    case "22P02":
    case "22007":
    case "22008":
      return new AuthzError("INVALID_ARGUMENT", `${where}: a value has the wrong form`, { cause: err });
    default:
      // Anything else (connection lost, a bug) stays unknown: INTERNAL for the caller, logged with the request id.
      return err;
  }
}

// ---------------------------------------------------------------------------
// The transaction
// ---------------------------------------------------------------------------

/**
 * Applies the batch atomically: every mutation or none. Returns the revision
 * the batch committed at (unchanged when nothing changed) and one result per
 * mutation. With an idempotency key, a retry of the same batch returns the
 * first response without writing.
 */
export async function manageRoles(db: SqlClient, raw: ManageRolesInput): Promise<ManageRolesResult> {
  const input = validateManageRoles(raw);
  const hash = input.idempotencyKey !== undefined ? requestHash(input) : "";
  try {
    return await db.readWriteTx(async (tx) => {
      // The writers' lock first: batches (and every other tracked write) serialize behind it until commit.
      const locked = await tx.query<{ revision: string }>("select revision::text as revision from authz_revision for update");
      const current = (locked[0] as { revision: string }).revision;

      // A replay is answered before the precondition: the first attempt already moved the revision.
      if (input.idempotencyKey !== undefined) {
        const stored = await tx.query<{ request_hash: string; response: string }>(
          "select request_hash, response::text as response from authz_idempotency where scope = $1::text and key = $2::text",
          [IDEMPOTENCY_SCOPE, input.idempotencyKey],
        );
        const first = stored[0];
        if (first) {
          if (first.request_hash !== hash) {
            throw new AuthzError("ALREADY_EXISTS", "idempotency_key was already used with a different request", {
              reason: "IDEMPOTENCY_KEY_REUSED",
            });
          }
          return JSON.parse(first.response) as ManageRolesResult;
        }
      }

      if (input.expectedRevision !== undefined && input.expectedRevision !== current) {
        throw new AuthzError(
          "FAILED_PRECONDITION",
          `expected_revision ${input.expectedRevision} is not the newest revision ${current}; nothing was written`,
          { reason: "REVISION_MOVED", metadata: { expected_revision: input.expectedRevision, revision: current } },
        );
      }

      const results: MutationResult[] = [];
      for (const [i, m] of input.mutations.entries()) {
        try {
          results.push(await apply(tx, m, i));
        } catch (err) {
          if (err instanceof MutationError) {
            throw new AuthzError(err.code, err.message, {
              metadata: { mutation_index: String(i) },
              ...(err.reason ? { reason: err.reason } : {}),
            });
          }
          if (err instanceof SqlError) throw fromSqlError(err, `mutations[${i}].${FIELD[m.kind]}`);
          throw err;
        }
      }

      const after = await tx.query<{ revision: string }>("select revision::text as revision from authz_revision");
      const result: ManageRolesResult = { revision: (after[0] as { revision: string }).revision, results };
      if (input.idempotencyKey !== undefined) {
        await tx.query(
          "insert into authz_idempotency (scope, key, request_hash, response) values ($1::text, $2::text, $3::text, $4::text::jsonb)",
          [IDEMPOTENCY_SCOPE, input.idempotencyKey, hash, JSON.stringify(result)],
        );
      }
      return result;
    });
  } catch (err) {
    // Failures outside a mutation: the lock or idempotency statements, or the deferred inheritance check at commit
    // (a backstop: the cycle and organization checks above run first).
    if (err instanceof SqlError) throw fromSqlError(err, "the batch");
    throw err;
  }
}
