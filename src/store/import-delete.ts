// Deletions in the import format: a record with "$delete": true removes the
// row it names by its key (docs/data-model.md, "Import file format"). Each
// section's deletions run as one statement per CHUNK_ROWS records; a chunk
// the database refuses (a row still referred to by an ownership transfer) is
// rolled back and run record by record, so the refusal names its record.

import { CHUNK_ROWS, RecordRefused } from "./import-bulk.js";
import { RecordError, type Validated } from "./import-rows.js";
import { SqlError, type SqlQuerier } from "./sql.js";

/** How a section's record names the row it deletes. */
interface DeleteKey {
  table: string;
  /** [seed field, column, SQL type, nullable] */
  keys: Array<[string, string, string, boolean?]>;
  /** Extra FROM items and conditions (the table is `t`, the record `e.r`). */
  using?: string;
  where?: string;
}

const byId = (table: string, field: string, column = "id"): DeleteKey => ({ table, keys: [[field, column, "uuid"]] });

/** The key of every section's deletions. */
export const DELETE_KEYS: Record<string, DeleteKey | ((rec: Validated) => DeleteKey)> = {
  TENANT: byId("tenants", "id"),
  Organization: byId("organizations", "org_id"),
  ORGANIZATION: byId("organizations", "id"),
  User: byId("users", "user_id"),
  USER: byId("users", "id"),
  STAFF: byId("staff", "id"),
  ACCOUNT: byId("accounts", "id"),
  PRINCIPAL: byId("principals", "id"),
  AVATAR: byId("avatars", "id"),
  MEMBERSHIP: byId("memberships", "id"),
  Role: byId("roles", "role_id"),
  ROLE: byId("roles", "id"),
  Permission: byId("permissions", "permission_id"),
  CAPABILITY: {
    table: "permissions",
    keys: [
      ["organization_id", "organization_id", "uuid", true],
      ["key", "key", "text"],
    ],
  },
  RolePermission: {
    table: "role_permissions",
    keys: [
      ["role_id", "role_id", "uuid"],
      ["permission_id", "permission_id", "uuid"],
    ],
  },
  ROLE_PERMISSION: byId("role_permissions", "id"),
  RoleInheritance: {
    table: "role_inheritance",
    keys: [
      ["role_id", "role_id", "uuid"],
      ["parent_role_id", "parent_role_id", "uuid"],
    ],
  },
  UserRole: {
    table: "role_assignments",
    keys: [
      ["user_id", "subject_id", "uuid"],
      ["role_id", "role_id", "uuid"],
    ],
    // The assignment the UserRole record made: on the role's organization, or global for a global role.
    using: "roles ro",
    where: `ro.id = t.role_id and t.subject_type = 'user'
      and t.scope_type = case when ro.organization_id is null then 'global' else 'organization' end
      and t.scope_id is not distinct from ro.organization_id`,
  },
  ROLE_ASSIGNMENT: byId("role_assignments", "id"),
  UserOrganizationInfo: {
    table: "user_organizations",
    keys: [
      ["user_id", "user_id", "uuid"],
      ["org_id", "organization_id", "uuid"],
    ],
  },
  OWNERSHIP_TRANSFER: byId("ownership_transfers", "id"),
  RateLimitPolicy: (rec) =>
    rec.values.has("policy_id")
      ? { table: "rate_limit_policies", keys: [["policy_id", "id", "integer"]] }
      : { table: "rate_limit_policies", keys: [["name", "name", "text"]] },
  RateLimitAssignment: {
    table: "rate_limit_assignments",
    keys: [
      ["policy_id", "policy_id", "integer"],
      ["user_id", "user_id", "uuid", true],
      ["org_id", "org_id", "uuid", true],
    ],
  },
};

/** The fields a deletion record of the section must give (RateLimitPolicy: policy_id or name). */
export function deleteKeyFields(section: string): string[][] {
  const k = DELETE_KEYS[section];
  if (k === undefined) return [];
  if (typeof k === "function") return [["policy_id"], ["name"]];
  return [k.keys.filter(([, , , nullable]) => !nullable).map(([f]) => f)];
}

const keyOf =
  (d: DeleteKey): ((rec: Validated) => string) =>
  (rec) =>
    d.keys.map(([f]) => rec.values.get(f) ?? "\u0001").join("|");

function keySpec(rec: Validated): DeleteKey {
  const k = DELETE_KEYS[rec.section];
  if (k === undefined) throw new RecordError(`section ${rec.section} has no deletion`);
  return typeof k === "function" ? k(rec) : k;
}

async function deleteStatement(tx: SqlQuerier, d: DeleteKey, recs: Validated[]): Promise<Set<string>> {
  const match = d.keys.map(([, c, type, nullable], i) => `t.${c} ${nullable ? "is not distinct from" : "="} (e.r->>${i})::${type}`);
  const returned = d.keys.map(([, c]) => `coalesce(t.${c}::text, chr(1))`).join(` || '|' || `);
  const rows = await tx.query<{ k: string }>(
    `delete from ${d.table} t using jsonb_array_elements($1::text::jsonb) e(r)${d.using ? `, ${d.using}` : ""}
      where ${[...match, ...(d.where ? [d.where] : [])].join(" and ")} returning ${returned} as k`,
    [JSON.stringify(recs.map((rec) => d.keys.map(([f]) => rec.values.get(f) ?? null)))],
  );
  return new Set(rows.map((r) => r.k));
}

function refused(rec: Validated, err: unknown): RecordRefused {
  if (err instanceof SqlError && err.code === "23503") {
    const detail = err.detail?.replace(/^Key /, "") ?? "";
    return new RecordRefused(rec, new RecordError(`cannot be deleted while other records refer to it${detail ? `: ${detail}` : ""}`));
  }
  return new RecordRefused(rec, err);
}

/** Runs one section's deletions; returns, per record, whether it deleted its row (false: there was none). */
export async function deleteSection(tx: SqlQuerier, recs: Validated[], onRows?: (n: number) => void): Promise<boolean[]> {
  const groups = new Map<DeleteKey, Validated[]>();
  for (const rec of recs) {
    const d = keySpec(rec);
    groups.set(d, [...(groups.get(d) ?? []), rec]);
  }
  const deleted = new Map<Validated, boolean>();
  for (const [d, list] of groups) {
    const key = keyOf(d);
    for (let i = 0; i < list.length; i += CHUNK_ROWS) {
      const chunk = list.slice(i, i + CHUNK_ROWS);
      await tx.query("savepoint authz_import_delete");
      let gone: Set<string>;
      try {
        gone = await deleteStatement(tx, d, chunk);
        await tx.query("release savepoint authz_import_delete");
      } catch (err) {
        if (!(err instanceof SqlError)) throw err;
        await tx.query("rollback to savepoint authz_import_delete");
        gone = new Set();
        for (const rec of chunk) {
          const one = await deleteStatement(tx, d, [rec]).catch((e: unknown) => Promise.reject(refused(rec, e)));
          for (const k of one) gone.add(k);
        }
      }
      for (const rec of chunk) deleted.set(rec, gone.delete(key(rec)));
      onRows?.(chunk.length);
    }
  }
  return recs.map((rec) => deleted.get(rec) === true);
}
