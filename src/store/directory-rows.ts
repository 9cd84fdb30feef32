// Row helpers of the directory writer: existence checks that name the field,
// duplicate checks that name the conflicting record, a partial upsert that
// writes only the columns given (and reports a no-op as unchanged), and the
// deletion guards (ownership, contents). SQL of the directory writer only.

import { AuthzError } from "../errors.js";
import type { SqlQuerier } from "./sql.js";
import { refusal } from "./write-pipeline.js";

export interface DirectoryResult {
  /** The record's UUID (a user's place: the user's). */
  id: string;
  /** False when the mutation was a no-op. */
  changed: boolean;
}

/** A column to write: its name, its value and the SQL type the text parameter is cast to. */
export type Col = readonly [column: string, value: unknown, cast: string];

/** Tables the directory writer names by id. */
export type DirectoryTable = "tenants" | "organizations" | "users" | "staff" | "accounts" | "principals" | "avatars" | "memberships";

export const WHAT: Record<DirectoryTable, string> = {
  tenants: "tenant",
  organizations: "organization",
  users: "user",
  staff: "staff member",
  accounts: "account",
  principals: "principal",
  avatars: "avatar",
  memberships: "membership",
};

/** A parameter as text (postgres.js and PGlite take every value as text, cast in SQL). */
export function param(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export async function exists(tx: SqlQuerier, table: DirectoryTable, id: string): Promise<boolean> {
  return (await tx.query(`select 1 from ${table} where id = $1::text::uuid`, [id])).length > 0;
}

/**
 * Whether `table.id` exists, its row locked until commit when it does: a concurrent delete then waits for
 * this write (or, committed first, is seen: the row is gone), so an update never reports "unchanged" for a
 * row another transaction deleted under it.
 */
async function lockedExists(tx: SqlQuerier, table: DirectoryTable, id: string): Promise<boolean> {
  return (await tx.query(`select 1 from ${table} where id = $1::text::uuid for no key update`, [id])).length > 0;
}

/** NOT_FOUND naming the field unless `table.id` exists. */
export async function mustExist(tx: SqlQuerier, table: DirectoryTable, id: string, field: string): Promise<void> {
  if (!(await exists(tx, table, id))) throw refusal("NOT_FOUND", `${field}: ${WHAT[table]} ${id} not found`);
}

/**
 * Unique keys whose holder is always in the writer's own scope (a slug within the organization's tenant, a handle
 * within the avatar's organization): only these name the record that holds the key. A tenant's slug and a user's or
 * staff member's logical key are unique across tenants, so their holder may be a row the caller must not learn of.
 */
const NAMES_HOLDER: ReadonlySet<DirectoryTable> = new Set<DirectoryTable>(["organizations", "avatars"]);

/**
 * ALREADY_EXISTS when another row than `self` matches `where` (a unique key: slug, handle, logical_key),
 * naming that row where it is in the caller's scope (NAMES_HOLDER).
 */
export async function mustBeUnique(
  tx: SqlQuerier,
  table: DirectoryTable,
  where: string,
  params: unknown[],
  self: string | undefined,
  field: string,
  value: string,
): Promise<void> {
  const rows = await tx.query<{ id: string }>(
    `select id::text as id from ${table} where (${where}) and id is distinct from $${params.length + 1}::text::uuid limit 1`,
    [...params.map(param), self ?? null],
  );
  const other = rows[0];
  if (!other) return;
  const holder = NAMES_HOLDER.has(table) ? ` by ${WHAT[table]} ${other.id}` : "";
  throw refusal("ALREADY_EXISTS", `${field}: "${value}" is already taken${holder}`);
}

/**
 * Writes the given columns of `table.id`: an update of the columns that
 * differ when the row exists, else an insert (UUID generated when id is
 * undefined) that needs every `required` column.
 */
export async function upsertRow(
  tx: SqlQuerier,
  table: DirectoryTable,
  id: string | undefined,
  cols: readonly Col[],
  required: readonly string[],
  p: string,
): Promise<DirectoryResult> {
  const given = cols.filter(([, v]) => v !== undefined);
  if (id !== undefined && (await lockedExists(tx, table, id))) {
    if (given.length === 0) return { id, changed: false };
    const values = given.map(([, , cast], i) => `$${i + 2}::text::${cast}`);
    const names = given.map(([c]) => c);
    const rows = await tx.query(
      `update ${table} set ${names.map((c, i) => `${c} = ${values[i]}`).join(", ")}
        where id = $1::text::uuid and row(${names.join(", ")}) is distinct from row(${values.join(", ")}) returning id`,
      [id, ...given.map(([, v]) => param(v))],
    );
    return { id, changed: rows.length > 0 };
  }
  for (const r of required) {
    if (!given.some(([c]) => c === r)) throw refusal("INVALID_ARGUMENT", `${p}.${r} is required for a new ${WHAT[table]}`);
  }
  const rows = await tx.query<{ id: string }>(
    `insert into ${table} (id${given.map(([c]) => `, ${c}`).join("")})
     values (coalesce($1::text::uuid, gen_random_uuid())${given.map(([, , cast], i) => `, $${i + 2}::text::${cast}`).join("")})
     on conflict (id) do nothing
     returning id::text as id`,
    [id ?? null, ...given.map(([, v]) => param(v))],
  );
  // Not there when checked, there now: a concurrent write created this very record. A retry updates it.
  if (rows.length === 0) throw refusal("ABORTED", `${p}: ${WHAT[table]} ${id} was created by a concurrent write; retry`, "ABORTED");
  return { id: (rows[0] as { id: string }).id, changed: true };
}

/** Sets columns of an existing row (NOT_FOUND naming the field otherwise); unchanged when they already hold the values. */
export async function updateExisting(tx: SqlQuerier, table: DirectoryTable, id: string, cols: readonly Col[], p: string): Promise<DirectoryResult> {
  if (!(await lockedExists(tx, table, id))) throw refusal("NOT_FOUND", `${p}: ${WHAT[table]} ${id} not found`);
  return upsertRow(tx, table, id, cols, [], p);
}

/** Deletes `table.id`; NOT_FOUND naming the field when it does not exist. */
export async function deleteRow(tx: SqlQuerier, table: DirectoryTable, id: string, p: string): Promise<DirectoryResult> {
  await dropTransfersOf(tx, table, id);
  const rows = await tx.query(`delete from ${table} where id = $1::text::uuid returning id`, [id]);
  if (rows.length === 0) throw refusal("NOT_FOUND", `${p}: ${WHAT[table]} ${id} not found`);
  return { id, changed: true };
}

/** Which memberships go with a deleted row (through principals, or avatars for a container), as a SQL condition on memberships m with $1 = the id. */
const MEMBERSHIPS_OF: Partial<Record<DirectoryTable, string>> = {
  users: "m.principal_id in (select id from principals where user_id = $1::text::uuid)",
  staff: "m.principal_id in (select id from principals where staff_id = $1::text::uuid)",
  accounts: "m.principal_id in (select id from principals where account_id = $1::text::uuid)",
  principals: "m.principal_id = $1::text::uuid",
  memberships: "m.id = $1::text::uuid",
  organizations:
    "m.principal_id in (select p.id from principals p join accounts a on a.id = p.account_id where a.organization_id = $1::text::uuid) or m.avatar_id in (select v.id from avatars v where v.organization_id = $1::text::uuid)",
  tenants: `m.principal_id in (select p.id from principals p join accounts a on a.id = p.account_id join organizations o on o.id = a.organization_id where o.tenant_id = $1::text::uuid)
            or m.avatar_id in (select v.id from avatars v join organizations o on o.id = v.organization_id where o.tenant_id = $1::text::uuid)`,
};

/**
 * Ownership transfers name their memberships without cascading (their
 * history); a membership that goes takes the transfers naming it along.
 */
async function dropTransfersOf(tx: SqlQuerier, table: DirectoryTable, id: string): Promise<void> {
  const cond = MEMBERSHIPS_OF[table];
  if (!cond) return;
  await tx.query(
    `delete from ownership_transfers t where t.from_membership_id in (select m.id from memberships m where ${cond})
        or t.to_membership_id in (select m.id from memberships m where ${cond})`,
    [id],
  );
}

/** FAILED_PRECONDITION (OWNS_AVATARS) naming the avatars while a principal of the row owns any. */
export async function mustOwnNoAvatars(tx: SqlQuerier, table: DirectoryTable, id: string, p: string): Promise<void> {
  const cond = MEMBERSHIPS_OF[table];
  if (!cond || table === "memberships" || table === "organizations" || table === "tenants") return;
  const rows = await tx.query<{ avatar_id: string }>(
    `select m.avatar_id::text as avatar_id from memberships m where m.owner and ${cond} order by m.avatar_id limit 21`,
    [id],
  );
  if (rows.length === 0) return;
  const listed = rows.slice(0, 20).map((r) => r.avatar_id);
  throw new AuthzError(
    "FAILED_PRECONDITION",
    `${p}: ${WHAT[table]} ${id} still owns avatar(s) ${listed.join(", ")}${rows.length > 20 ? ", …" : ""}; move their ownership first (TransferOwnership)`,
    { reason: "OWNS_AVATARS", metadata: { avatar_ids: listed.join(",") } },
  );
}

/** What an organization or tenant still holds, per kind ("3 accounts, 1 avatar"); empty when nothing. */
export async function contents(tx: SqlQuerier, table: "tenants" | "organizations", id: string): Promise<string> {
  const counts =
    table === "tenants"
      ? ["organizations where tenant_id = $1::text::uuid"]
      : [
          "roles where organization_id = $1::text::uuid",
          "permissions where organization_id = $1::text::uuid",
          "accounts where organization_id = $1::text::uuid",
          "avatars where organization_id = $1::text::uuid",
          "user_organizations where organization_id = $1::text::uuid",
          "role_assignments where organization_scope_id = $1::text::uuid",
        ];
  const names = table === "tenants" ? ["organizations"] : ["roles", "permissions", "accounts", "avatars", "user places", "role assignments"];
  const [row] = await tx.query<Record<string, string>>(`select ${counts.map((c, i) => `(select count(*) from ${c})::text as c${i}`).join(", ")}`, [id]);
  return names
    .map((n, i) => [n, Number(row?.[`c${i}`] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([n, k]) => `${k} ${n}`)
    .join(", ");
}
