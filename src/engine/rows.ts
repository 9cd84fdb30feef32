// Rows of the tables a decision depends on, normalized from either a
// database row (snake_case, Date objects) or a change-log jsonb image
// (snake_case, ISO strings). Times are epoch milliseconds.

export interface OrganizationRow {
  id: string;
  tenantId: string | null;
  name: string;
  slug: string | null;
  roleStructure: string;
}
export interface UserRow {
  id: string;
  locked: boolean;
  enabled: boolean;
}
export interface AccountRow {
  id: string;
  organizationId: string;
  active: boolean;
}
export interface PrincipalRow {
  id: string;
  accountId: string;
  subjectType: "user" | "staff";
  subjectId: string;
  active: boolean;
  acceptedAt: number | null;
  validUntil: number | null;
}
export interface AvatarRow {
  id: string;
  organizationId: string;
  active: boolean;
}
export interface MembershipRow {
  id: string;
  principalId: string;
  avatarId: string;
  owner: boolean;
  active: boolean;
  acceptedAt: number | null;
  validUntil: number | null;
}
export interface RoleRow {
  id: string;
  organizationId: string | null;
  key: string;
  name: string;
}
export interface PermissionRow {
  id: string;
  organizationId: string | null;
  key: string;
}
export interface RolePermissionRow {
  roleId: string;
  permissionId: string;
}
export interface InheritanceRow {
  roleId: string;
  parentRoleId: string;
}
export interface AssignmentRow {
  id: string;
  subjectType: string;
  subjectId: string;
  roleId: string;
  scopeType: string;
  scopeId: string | null;
  active: boolean;
  validUntil: number | null;
}
export interface UserOrganizationRow {
  userId: string;
  organizationId: string;
  primaryRoleId: string | null;
}

export interface RateLimitPolicyRow {
  id: number;
  name: string;
  scope: string;
  limitCount: number;
  windowSec: number;
  algorithm: string;
  failureMode: string;
  shadow: boolean;
  description: string | null;
}
export interface RateLimitAssignmentRow {
  id: string;
  policyId: number;
  userId: string | null;
  orgId: string | null;
}

type Raw = Record<string, unknown>;

const str = (v: unknown): string => String(v);
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const bool = (v: unknown): boolean => v === true || v === "t" || v === "true";
export const timeOrNull = (v: unknown): number | null => {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.getTime();
  if (typeof v === "number") return v;
  const t = Date.parse(String(v));
  return Number.isNaN(t) ? null : t;
};

const scratchAssignment: AssignmentRow = {
  id: "",
  subjectType: "",
  subjectId: "",
  roleId: "",
  scopeType: "",
  scopeId: null,
  active: false,
  validUntil: null,
};

/**
 * NORMALIZE.role_assignments into one reused object: the bulk table of a
 * load (millions of rows) then allocates no row of its own. Valid until the
 * next call; strings from the database (already strings) are kept as they are.
 */
export function readAssignment(r: Raw): AssignmentRow {
  const out = scratchAssignment;
  out.id = typeof r.id === "string" ? r.id : str(r.id);
  out.subjectType = typeof r.subject_type === "string" ? r.subject_type : str(r.subject_type);
  out.subjectId = typeof r.subject_id === "string" ? r.subject_id : str(r.subject_id);
  out.roleId = typeof r.role_id === "string" ? r.role_id : str(r.role_id);
  out.scopeType = typeof r.scope_type === "string" ? r.scope_type : str(r.scope_type);
  out.scopeId = typeof r.scope_id === "string" ? r.scope_id : strOrNull(r.scope_id);
  out.active = r.active === true || bool(r.active);
  out.validUntil = r.valid_until === null || r.valid_until === undefined ? null : timeOrNull(r.valid_until);
  return out;
}

/** Normalizers per table; the keys are the tables the engine follows. */
export const NORMALIZE = {
  tenants: (r: Raw) => ({ id: str(r.id) }),
  organizations: (r: Raw): OrganizationRow => ({
    id: str(r.id),
    tenantId: strOrNull(r.tenant_id),
    name: str(r.name),
    slug: strOrNull(r.slug),
    roleStructure: str(r.role_structure ?? "single_role_in_hierarchy"),
  }),
  users: (r: Raw): UserRow => ({ id: str(r.id), locked: bool(r.locked), enabled: bool(r.enabled) }),
  staff: (r: Raw) => ({ id: str(r.id) }),
  accounts: (r: Raw): AccountRow => ({ id: str(r.id), organizationId: str(r.organization_id), active: bool(r.active) }),
  principals: (r: Raw): PrincipalRow => ({
    id: str(r.id),
    accountId: str(r.account_id),
    subjectType: r.subject_type === "staff" ? "staff" : "user",
    subjectId: str(r.subject_id),
    active: bool(r.active),
    acceptedAt: timeOrNull(r.accepted_at),
    validUntil: timeOrNull(r.valid_until),
  }),
  avatars: (r: Raw): AvatarRow => ({ id: str(r.id), organizationId: str(r.organization_id), active: bool(r.active) }),
  memberships: (r: Raw): MembershipRow => ({
    id: str(r.id),
    principalId: str(r.principal_id),
    avatarId: str(r.avatar_id),
    owner: bool(r.owner),
    active: bool(r.active),
    acceptedAt: timeOrNull(r.accepted_at),
    validUntil: timeOrNull(r.valid_until),
  }),
  roles: (r: Raw): RoleRow => ({ id: str(r.id), organizationId: strOrNull(r.organization_id), key: str(r.key), name: str(r.name) }),
  permissions: (r: Raw): PermissionRow => ({ id: str(r.id), organizationId: strOrNull(r.organization_id), key: str(r.key) }),
  role_permissions: (r: Raw): RolePermissionRow => ({ roleId: str(r.role_id), permissionId: str(r.permission_id) }),
  role_inheritance: (r: Raw): InheritanceRow => ({ roleId: str(r.role_id), parentRoleId: str(r.parent_role_id) }),
  role_assignments: (r: Raw): AssignmentRow => ({
    id: str(r.id),
    subjectType: str(r.subject_type),
    subjectId: str(r.subject_id),
    roleId: str(r.role_id),
    scopeType: str(r.scope_type),
    scopeId: strOrNull(r.scope_id),
    active: bool(r.active),
    validUntil: timeOrNull(r.valid_until),
  }),
  user_organizations: (r: Raw): UserOrganizationRow => ({
    userId: str(r.user_id),
    organizationId: str(r.organization_id),
    primaryRoleId: strOrNull(r.primary_role_id),
  }),
  rate_limit_policies: (r: Raw): RateLimitPolicyRow => ({
    id: Number(r.id),
    name: str(r.name),
    scope: str(r.scope),
    limitCount: Number(r.limit_count),
    windowSec: Number(r.window_sec),
    algorithm: str(r.algorithm ?? "fixed_window"),
    failureMode: str(r.failure_mode ?? "open"),
    shadow: bool(r.shadow),
    description: strOrNull(r.description),
  }),
  rate_limit_assignments: (r: Raw): RateLimitAssignmentRow => ({
    id: str(r.id),
    policyId: Number(r.policy_id),
    userId: strOrNull(r.user_id),
    orgId: strOrNull(r.org_id),
  }),
} as const;

export type FollowedTable = keyof typeof NORMALIZE;
/** Tables in the order a snapshot is applied (parents first). */
export const FOLLOWED_TABLES = Object.keys(NORMALIZE) as FollowedTable[];

/** The columns of each followed table the engine reads (for snapshot queries). */
export const SNAPSHOT_COLUMNS: Record<FollowedTable, string> = {
  tenants: "id",
  organizations: "id, tenant_id, name, slug, role_structure",
  users: "id, locked, enabled",
  staff: "id",
  accounts: "id, organization_id, active",
  principals: "id, account_id, subject_type, subject_id, active, accepted_at, valid_until",
  avatars: "id, organization_id, active",
  memberships: "id, principal_id, avatar_id, owner, active, accepted_at, valid_until",
  roles: "id, organization_id, key, name",
  permissions: "id, organization_id, key",
  role_permissions: "role_id, permission_id",
  role_inheritance: "role_id, parent_role_id",
  role_assignments: "id, subject_type, subject_id, role_id, scope_type, scope_id, active, valid_until",
  user_organizations: "user_id, organization_id, primary_role_id",
  rate_limit_policies: "id, name, scope, limit_count, window_sec, algorithm, failure_mode, shadow, description",
  rate_limit_assignments: "id::text as id, policy_id, user_id, org_id",
};

/** One row-level change, as the change log records it. */
export interface Change {
  readonly table: string;
  /** RELOAD: a bulk import's one row for all it changed (migration 0009); reload a snapshot. */
  readonly op: "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" | "RELOAD";
  readonly oldRow: Raw | null;
  readonly newRow: Raw | null;
}
