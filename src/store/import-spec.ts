// The directory import format: a JSON object whose sections and fields are
// named exactly as in the two seed diagrams (seed 000 in CamelCase, seed 003
// in UPPER_CASE). Each field says how it is validated and which column of the
// unified model holds it. docs/data-model.md documents the same table.

export type FieldType =
  | "uuid" // canonical UUID text
  | "text"
  | "bool"
  | "int" // whole number
  | "json" // any JSON object
  | "ts" // ISO-8601 timestamp text
  | "epoch" // seed 000 bigint: epoch seconds (or ISO-8601 text)
  | "text[]";

export interface FieldSpec {
  type: FieldType;
  required?: boolean;
  /** The column that holds the field; absent when the importer resolves it (see notes). */
  column?: string;
  /** Accepted for compatibility but recomputed by authz, never stored as given. */
  derived?: boolean;
  /** Not in the seed: an authz extension. */
  extension?: boolean;
}

export interface SectionSpec {
  /** Seed the section comes from. */
  seed: "000" | "003";
  /** The table records land in. */
  table: string;
  /** Fields identifying a record in error messages. */
  label: string[];
  fields: Record<string, FieldSpec>;
}

const f = (type: FieldType, column?: string, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  type,
  ...(column ? { column } : {}),
  ...extra,
});
const req = (type: FieldType, column?: string): FieldSpec => f(type, column, { required: true });
const ext = (type: FieldType, column?: string): FieldSpec => f(type, column, { extension: true });

/** Sections in the order they are applied (parents before children). */
export const SECTIONS: Record<string, SectionSpec> = {
  TENANT: {
    seed: "003",
    table: "tenants",
    label: ["id"],
    fields: { id: req("uuid", "id"), name: req("text", "name"), slug: req("text", "slug") },
  },
  Organization: {
    seed: "000",
    table: "organizations",
    label: ["org_id"],
    fields: { org_id: req("uuid", "id"), org_name: req("text", "name"), org_metadata: f("json", "metadata") },
  },
  ORGANIZATION: {
    seed: "003",
    table: "organizations",
    label: ["id"],
    fields: {
      id: req("uuid", "id"),
      tenant_id: f("uuid", "tenant_id"),
      name: req("text", "name"),
      slug: f("text", "slug"),
      metadata: ext("json", "metadata"),
      role_structure: ext("text", "role_structure"),
    },
  },
  User: {
    seed: "000",
    table: "users",
    label: ["user_id"],
    fields: {
      user_id: req("uuid", "id"),
      legacy_user_id: f("text", "legacy_user_id"),
      email: f("text", "email"),
      email_confirmed: f("bool", "email_confirmed"),
      username: f("text", "username"),
      first_name: f("text", "first_name"),
      last_name: f("text", "last_name"),
      picture_url: f("text", "picture_url"),
      properties: f("json", "properties"),
      has_password: f("bool", "has_password"),
      update_password_required: f("bool", "update_password_required"),
      locked: f("bool", "locked"),
      enabled: f("bool", "enabled"),
      mfa_enabled: f("bool", "mfa_enabled"),
      can_create_orgs: f("bool", "can_create_orgs"),
      created_at: f("epoch", "created_at"),
      last_active_at: f("epoch", "last_active_at"),
    },
  },
  USER: {
    seed: "003",
    table: "users",
    label: ["id"],
    fields: { id: req("uuid", "id"), logical_key: f("text", "logical_key") },
  },
  STAFF: {
    seed: "003",
    table: "staff",
    label: ["id"],
    fields: { id: req("uuid", "id"), logical_key: req("text", "logical_key") },
  },
  ACCOUNT: {
    seed: "003",
    table: "accounts",
    label: ["id"],
    fields: {
      id: req("uuid", "id"),
      organization_id: req("uuid", "organization_id"),
      email: f("text", "email"),
      active: f("bool", "active"),
      created_at: f("ts", "created_at"),
      updated_at: f("ts", "updated_at"),
    },
  },
  PRINCIPAL: {
    seed: "003",
    table: "principals",
    label: ["id"],
    fields: {
      id: req("uuid", "id"),
      account_id: req("uuid", "account_id"),
      subject_type: req("text", "subject_type"),
      subject_id: req("uuid", "subject_id"),
      identity_id: f("uuid", "identity_id"),
      region: f("text", "region"),
      personality_key: f("text", "personality_key"),
      active: f("bool", "active"),
      accepted_at: f("ts", "accepted_at"),
      valid_until: f("ts", "valid_until"),
      created_at: f("ts", "created_at"),
      updated_at: f("ts", "updated_at"),
    },
  },
  AVATAR: {
    seed: "003",
    table: "avatars",
    label: ["id"],
    fields: {
      id: req("uuid", "id"),
      organization_id: req("uuid", "organization_id"),
      handle: req("text", "handle"),
      active: f("bool", "active"),
      created_at: f("ts", "created_at"),
      updated_at: f("ts", "updated_at"),
    },
  },
  MEMBERSHIP: {
    seed: "003",
    table: "memberships",
    label: ["id"],
    fields: {
      id: req("uuid", "id"),
      principal_id: req("uuid", "principal_id"),
      avatar_id: req("uuid", "avatar_id"),
      owner: f("bool", "owner"),
      active: f("bool", "active"),
      accepted_at: f("ts", "accepted_at"),
      valid_until: f("ts", "valid_until"),
      created_at: f("ts", "created_at"),
      updated_at: f("ts", "updated_at"),
    },
  },
  Role: {
    seed: "000",
    table: "roles",
    label: ["role_id", "name"],
    fields: {
      role_id: req("uuid", "id"),
      org_id: f("uuid", "organization_id"),
      name: req("text", "name"),
      description: f("text", "description"),
      created_at: f("ts", "created_at"),
      key: ext("text", "key"),
    },
  },
  ROLE: {
    seed: "003",
    table: "roles",
    label: ["id", "key"],
    fields: {
      id: req("uuid", "id"),
      key: req("text", "key"),
      name: f("text", "name"),
      organization_id: ext("uuid", "organization_id"),
      description: ext("text", "description"),
    },
  },
  Permission: {
    seed: "000",
    table: "permissions",
    label: ["permission_id", "name"],
    fields: {
      permission_id: req("uuid", "id"),
      org_id: f("uuid", "organization_id"),
      name: req("text", "key"),
      description: f("text", "description"),
      created_at: f("ts", "created_at"),
    },
  },
  CAPABILITY: {
    seed: "003",
    table: "permissions",
    label: ["key"],
    fields: {
      key: req("text", "key"),
      organization_id: ext("uuid", "organization_id"),
      description: ext("text", "description"),
    },
  },
  RolePermission: {
    seed: "000",
    table: "role_permissions",
    label: ["role_id", "permission_id"],
    fields: { role_id: req("uuid", "role_id"), permission_id: req("uuid", "permission_id") },
  },
  ROLE_PERMISSION: {
    seed: "003",
    table: "role_permissions",
    label: ["id", "capability_key"],
    fields: { id: req("uuid", "id"), role_id: req("uuid", "role_id"), capability_key: req("text") },
  },
  RoleInheritance: {
    seed: "000",
    table: "role_inheritance",
    label: ["role_id", "parent_role_id"],
    fields: { role_id: req("uuid", "role_id"), parent_role_id: req("uuid", "parent_role_id") },
  },
  UserRole: {
    seed: "000",
    table: "role_assignments",
    label: ["user_id", "role_id"],
    fields: {
      user_id: req("uuid", "subject_id"),
      role_id: req("uuid", "role_id"),
      assigned_at: f("ts", "assigned_at"),
      valid_until: ext("ts", "valid_until"),
      active: ext("bool", "active"),
    },
  },
  ROLE_ASSIGNMENT: {
    seed: "003",
    table: "role_assignments",
    label: ["id"],
    fields: {
      id: req("uuid", "id"),
      account_id: f("uuid", "subject_id"),
      role_id: req("uuid", "role_id"),
      scope_type: req("text", "scope_type"),
      scope_id: f("uuid", "scope_id"),
      active: f("bool", "active"),
      valid_until: ext("ts", "valid_until"),
      assigned_at: ext("ts", "assigned_at"),
      subject_type: ext("text", "subject_type"),
      subject_id: ext("uuid", "subject_id"),
    },
  },
  UserOrganizationInfo: {
    seed: "000",
    table: "user_organizations",
    label: ["user_id", "org_id"],
    fields: {
      user_id: req("uuid", "user_id"),
      org_id: req("uuid", "organization_id"),
      user_role: f("text", "primary_role_id"),
      url_safe_org_name: f("text", "organizations.slug"),
      org_role_structure: f("text", "organizations.role_structure"),
      inherited_user_roles_plus_current_role: f("text[]", undefined, { derived: true }),
      user_permissions: f("text[]", undefined, { derived: true }),
      additional_roles: f("text[]"),
      primary_role_id: ext("uuid"),
    },
  },
  OWNERSHIP_TRANSFER: {
    seed: "003",
    table: "ownership_transfers",
    label: ["id"],
    fields: {
      id: req("uuid", "id"),
      avatar_id: req("uuid", "avatar_id"),
      from_membership_id: req("uuid", "from_membership_id"),
      to_membership_id: req("uuid", "to_membership_id"),
      status: req("text", "status"),
      occurred_at: f("ts", "occurred_at"),
      created_at: f("ts", "created_at"),
      expires_at: ext("ts", "expires_at"),
    },
  },
  RateLimitPolicy: {
    seed: "000",
    table: "rate_limit_policies",
    label: ["policy_id", "name"],
    fields: {
      policy_id: f("int", "id"),
      name: req("text", "name"),
      scope: req("text", "scope"),
      limit_count: req("int", "limit_count"),
      window_sec: req("int", "window_sec"),
      description: f("text", "description"),
      created_at: f("ts", "created_at"),
      algorithm: ext("text", "algorithm"),
      failure_mode: ext("text", "failure_mode"),
      shadow: ext("bool", "shadow"),
    },
  },
  RateLimitAssignment: {
    seed: "000",
    table: "rate_limit_assignments",
    label: ["policy_id", "user_id", "org_id"],
    fields: { policy_id: req("int", "policy_id"), user_id: f("uuid", "user_id"), org_id: f("uuid", "org_id") },
  },
  RateLimitCounter: {
    seed: "000",
    table: "rate_limit_counters",
    label: ["policy_id", "key_id", "user_id", "org_id", "window_start"],
    fields: {
      policy_id: req("int", "policy_id"),
      key_id: f("text", "key_id"),
      user_id: f("uuid", "user_id"),
      org_id: f("uuid", "org_id"),
      window_start: req("ts", "window_start"),
      count: f("int", "count"),
      last_updated: f("ts", "last_updated"),
    },
  },
};
