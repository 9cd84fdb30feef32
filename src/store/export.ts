// Export: the directory in the import format (docs/data-model.md, "Import
// file format"), read in one repeatable-read transaction so every record is
// of one revision, section by section in import order, a page at a time
// (keyset pagination on each table's key), so importing the output into an
// empty database rebuilds the same state and the same decisions.
//
// One tenant's export holds the rows of that tenant (authz_row_tenant, the
// database's own tenancy rule), the global roles and permissions with their
// grants and inheritance (shared vocabulary its rows may refer to), the
// users and staff its rows refer to, and the rate-limit policies its
// organizations are assigned.

import { AuthzError } from "../errors.js";
import type { SqlClient, SqlQuerier } from "./sql.js";

/** Records per page read from the database. */
export const EXPORT_PAGE_ROWS = 1000;

export interface ExportOptions {
  /** Only this tenant's part of the directory. */
  tenantId?: string | null;
  pageRows?: number;
}

/** One page of one section's records, in the import format. */
export interface ExportPage {
  section: string;
  records: Array<Record<string, unknown>>;
}

type TenantRule = "own" | "own-or-global" | "referenced-user" | "referenced-staff" | "referenced-policy" | "referenced-assignment";

interface ExportSection {
  section: string;
  table: string;
  /** import field → SQL expression over `t` */
  fields: Record<string, string>;
  /** Keyset: [column, SQL type] */
  key: Array<[string, string]>;
  tenant: TenantRule;
  where?: string;
  /** More conditions for one tenant's export (memberships and transfers whose principal lies in another tenant are left out). */
  tenantWhere?: string;
}

/** The principal of membership `m` (an SQL expression) lies in the tenant $1. */
const principalInTenant = (m: string) =>
  `(select authz_row_tenant('principals', to_jsonb(p)) from principals p join memberships mm on mm.principal_id = p.id where mm.id = ${m}) = $1::uuid`;

/** Every section export writes, in import order, with every field it needs to rebuild the row. */
const SECTIONS_OUT: ExportSection[] = [
  { section: "TENANT", table: "tenants", fields: { id: "t.id", name: "t.name", slug: "t.slug" }, key: [["id", "uuid"]], tenant: "own" },
  {
    section: "ORGANIZATION",
    table: "organizations",
    fields: { id: "t.id", tenant_id: "t.tenant_id", name: "t.name", slug: "t.slug", metadata: "t.metadata", role_structure: "t.role_structure" },
    key: [["id", "uuid"]],
    tenant: "own",
  },
  {
    section: "User",
    table: "users",
    fields: {
      user_id: "t.id",
      legacy_user_id: "t.legacy_user_id",
      email: "t.email",
      email_confirmed: "t.email_confirmed",
      username: "t.username",
      first_name: "t.first_name",
      last_name: "t.last_name",
      picture_url: "t.picture_url",
      properties: "t.properties",
      has_password: "t.has_password",
      update_password_required: "t.update_password_required",
      locked: "t.locked",
      enabled: "t.enabled",
      mfa_enabled: "t.mfa_enabled",
      can_create_orgs: "t.can_create_orgs",
      created_at: "t.created_at",
      last_active_at: "t.last_active_at",
    },
    key: [["id", "uuid"]],
    tenant: "referenced-user",
  },
  {
    section: "USER",
    table: "users",
    fields: { id: "t.id", logical_key: "t.logical_key" },
    key: [["id", "uuid"]],
    tenant: "referenced-user",
    where: "t.logical_key is not null",
  },
  { section: "STAFF", table: "staff", fields: { id: "t.id", logical_key: "t.logical_key" }, key: [["id", "uuid"]], tenant: "referenced-staff" },
  {
    section: "ACCOUNT",
    table: "accounts",
    fields: { id: "t.id", organization_id: "t.organization_id", email: "t.email", active: "t.active", created_at: "t.created_at", updated_at: "t.updated_at" },
    key: [["id", "uuid"]],
    tenant: "own",
  },
  {
    section: "PRINCIPAL",
    table: "principals",
    fields: {
      id: "t.id",
      account_id: "t.account_id",
      subject_type: "t.subject_type",
      subject_id: "t.subject_id",
      identity_id: "t.identity_id",
      region: "t.region",
      personality_key: "t.personality_key",
      active: "t.active",
      accepted_at: "t.accepted_at",
      valid_until: "t.valid_until",
      created_at: "t.created_at",
      updated_at: "t.updated_at",
    },
    key: [["id", "uuid"]],
    tenant: "own",
  },
  {
    section: "AVATAR",
    table: "avatars",
    fields: {
      id: "t.id",
      organization_id: "t.organization_id",
      handle: "t.handle",
      active: "t.active",
      created_at: "t.created_at",
      updated_at: "t.updated_at",
    },
    key: [["id", "uuid"]],
    tenant: "own",
  },
  {
    section: "MEMBERSHIP",
    table: "memberships",
    fields: {
      id: "t.id",
      principal_id: "t.principal_id",
      avatar_id: "t.avatar_id",
      owner: "t.owner",
      active: "t.active",
      accepted_at: "t.accepted_at",
      valid_until: "t.valid_until",
      created_at: "t.created_at",
      updated_at: "t.updated_at",
    },
    key: [["id", "uuid"]],
    tenant: "own",
    tenantWhere: principalInTenant("t.id"),
  },
  {
    section: "Role",
    table: "roles",
    fields: { role_id: "t.id", org_id: "t.organization_id", name: "t.name", description: "t.description", created_at: "t.created_at", key: "t.key" },
    key: [["id", "uuid"]],
    tenant: "own-or-global",
  },
  {
    section: "Permission",
    table: "permissions",
    fields: { permission_id: "t.id", org_id: "t.organization_id", name: "t.key", description: "t.description", created_at: "t.created_at" },
    key: [["id", "uuid"]],
    tenant: "own-or-global",
  },
  {
    section: "RolePermission",
    table: "role_permissions",
    fields: { role_id: "t.role_id", permission_id: "t.permission_id" },
    key: [["id", "uuid"]],
    tenant: "own-or-global",
  },
  {
    section: "RoleInheritance",
    table: "role_inheritance",
    fields: { role_id: "t.role_id", parent_role_id: "t.parent_role_id" },
    key: [
      ["role_id", "uuid"],
      ["parent_role_id", "uuid"],
    ],
    tenant: "own-or-global",
  },
  {
    section: "ROLE_ASSIGNMENT",
    table: "role_assignments",
    fields: {
      id: "t.id",
      subject_type: "t.subject_type",
      subject_id: "t.subject_id",
      role_id: "t.role_id",
      scope_type: "t.scope_type",
      scope_id: "t.scope_id",
      active: "t.active",
      valid_until: "t.valid_until",
      assigned_at: "t.assigned_at",
    },
    key: [["id", "uuid"]],
    tenant: "own",
    // An account or principal subject of an organization without a tenant is not the tenant's to export.
    tenantWhere: `(t.subject_type in ('user', 'staff')
      or (select authz_row_tenant('accounts', to_jsonb(a)) from accounts a where a.id = t.account_id) = $1::uuid
      or (select authz_row_tenant('principals', to_jsonb(p)) from principals p where p.id = t.principal_id) = $1::uuid)`,
  },
  {
    section: "UserOrganizationInfo",
    table: "user_organizations",
    fields: { user_id: "t.user_id", org_id: "t.organization_id", primary_role_id: "t.primary_role_id" },
    key: [
      ["user_id", "uuid"],
      ["organization_id", "uuid"],
    ],
    tenant: "own",
  },
  {
    section: "OWNERSHIP_TRANSFER",
    table: "ownership_transfers",
    fields: {
      id: "t.id",
      avatar_id: "t.avatar_id",
      from_membership_id: "t.from_membership_id",
      to_membership_id: "t.to_membership_id",
      status: "t.status",
      occurred_at: "t.occurred_at",
      created_at: "t.created_at",
      expires_at: "t.expires_at",
    },
    key: [["id", "uuid"]],
    tenant: "own",
    tenantWhere: `${principalInTenant("t.from_membership_id")} and ${principalInTenant("t.to_membership_id")}`,
  },
  {
    section: "RateLimitPolicy",
    table: "rate_limit_policies",
    fields: {
      policy_id: "t.id",
      name: "t.name",
      scope: "t.scope",
      limit_count: "t.limit_count",
      window_sec: "t.window_sec",
      description: "t.description",
      created_at: "t.created_at",
      algorithm: "t.algorithm",
      failure_mode: "t.failure_mode",
      shadow: "t.shadow",
    },
    key: [["id", "integer"]],
    tenant: "referenced-policy",
  },
  {
    section: "RateLimitAssignment",
    table: "rate_limit_assignments",
    fields: { policy_id: "t.policy_id", user_id: "t.user_id", org_id: "t.org_id" },
    key: [["id", "bigint"]],
    // A user's assignment belongs to no tenant: a tenant's export carries those of the users it exports.
    tenant: "referenced-assignment",
  },
];

/** The tenant of a row of `table` aliased `alias` (migrations 0006/0007). */
const rowTenant = (table: string, alias = "t") => `authz_row_tenant('${table}', to_jsonb(${alias}))`;

/** The users the tenant's ($1) rows refer to: through its principals, its role assignments and its places. */
const USERS_OF_TENANT = `select p.user_id from principals p where ${rowTenant("principals", "p")} = $1::uuid
              union select a.user_id from role_assignments a where ${rowTenant("role_assignments", "a")} = $1::uuid
              union select u.user_id from user_organizations u join organizations o on o.id = u.organization_id where o.tenant_id = $1::uuid`;

/** A rate-limit assignment of the tenant: to one of its organizations, or to one of the users it refers to. */
const ASSIGNMENT_OF_TENANT = (alias: string) =>
  `(${alias}.org_id in (select o.id from organizations o where o.tenant_id = $1::uuid) or ${alias}.user_id in (${USERS_OF_TENANT}))`;

/** Users, staff, policies and rate-limit assignments the tenant's ($1) rows refer to. */
const REFERENCES = {
  user: `t.id in (${USERS_OF_TENANT})`,
  staff: `t.id in (select p.staff_id from principals p where ${rowTenant("principals", "p")} = $1::uuid
              union select a.staff_id from role_assignments a where ${rowTenant("role_assignments", "a")} = $1::uuid)`,
  policy: `t.id in (select r.policy_id from rate_limit_assignments r where ${ASSIGNMENT_OF_TENANT("r")})`,
  assignment: ASSIGNMENT_OF_TENANT("t"),
};

function tenantCondition(s: ExportSection): string {
  switch (s.tenant) {
    case "own":
      return `${rowTenant(s.table)} = $1::uuid`;
    case "own-or-global": {
      // Global: no organization (roles, permissions) or a global role's grants and edges; not an organization without a tenant.
      const global =
        s.table === "roles" || s.table === "permissions"
          ? "t.organization_id is null"
          : "(select r.organization_id from roles r where r.id = t.role_id) is null";
      return `(${rowTenant(s.table)} = $1::uuid or ${global})`;
    }
    case "referenced-user":
      return REFERENCES.user;
    case "referenced-staff":
      return REFERENCES.staff;
    case "referenced-policy":
      return REFERENCES.policy;
    case "referenced-assignment":
      return REFERENCES.assignment;
  }
}

/** One page of a section after the keyset position `after` (undefined: the first page). */
async function page(tx: SqlQuerier, s: ExportSection, tenantId: string | null, after: string[] | undefined, rows: number) {
  const params: unknown[] = [tenantId];
  const conditions = [tenantId !== null ? tenantCondition(s) : "$1::uuid is null", ...(s.where ? [s.where] : [])];
  if (tenantId !== null && s.tenantWhere) conditions.push(s.tenantWhere);
  if (after) {
    const cols = s.key.map(([c]) => `t.${c}`).join(", ");
    const values = s.key.map(([, type], i) => `$${i + 2}::text::${type}`).join(", ");
    conditions.push(`(${cols}) > (${values})`);
    params.push(...after);
  }
  const object = Object.entries(s.fields)
    .map(([f, expr]) => `'${f}', ${expr}`)
    .join(", ");
  return tx.query<{ r: string; k: string[] }>(
    `select json_build_object(${object})::text as r, array[${s.key.map(([c]) => `t.${c}::text`).join(", ")}] as k
       from ${s.table} t where ${conditions.join(" and ")} order by ${s.key.map(([c]) => `t.${c}`).join(", ")} limit ${rows}`,
    params,
  );
}

/**
 * Streams the directory (or one tenant's part) as pages of import-format
 * records, all read at one revision, which it returns.
 */
export async function exportDirectory(
  db: SqlClient,
  options: ExportOptions,
  onPage: (p: ExportPage, revision: string) => Promise<void> | void,
): Promise<{ revision: string; records: Record<string, number> }> {
  const rows = options.pageRows ?? EXPORT_PAGE_ROWS;
  const tenantId = options.tenantId ?? null;
  return db.readWriteTx(
    async (tx) => {
      const [head] = await tx.query<{ revision: string; known: boolean }>(
        "select revision::text as revision, $1::uuid is null or exists (select 1 from tenants where id = $1::uuid) as known from authz_revision",
        [tenantId],
      );
      if (head && !head.known) throw new AuthzError("NOT_FOUND", `tenant_id ${tenantId} is not a known tenant`, { metadata: { field: "tenant_id" } });
      const revision = head?.revision ?? "0";
      const counts: Record<string, number> = {};
      for (const s of SECTIONS_OUT) {
        let after: string[] | undefined;
        for (;;) {
          const got = await page(tx, s, tenantId, after, rows);
          if (got.length === 0) break;
          counts[s.section] = (counts[s.section] ?? 0) + got.length;
          await onPage({ section: s.section, records: got.map((r) => JSON.parse(r.r) as Record<string, unknown>) }, revision);
          if (got.length < rows) break;
          after = (got[got.length - 1] as { k: string[] }).k;
        }
      }
      return { revision, records: counts };
    },
    { isolation: "repeatable read" },
  );
}
