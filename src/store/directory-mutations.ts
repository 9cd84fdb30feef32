// ManageDirectory's mutations in domain types, and their validation: every
// value is checked (UUIDs lower-cased, texts bounded, slugs and handles in
// form) before the transaction starts. The normalized batch is also what the
// idempotency hash is computed over. rpc/directory-handlers.ts builds these
// from the generated messages; directory-writer.ts applies them.

import { invalidArgument } from "../errors.js";
import { KEY, MAX_NAME_BYTES, optional, optionalUuid, text, uuid } from "../validation.js";
import type { RoleRefInput } from "./manage-roles.js";
import { type BatchInput, validateBatch } from "./write-pipeline.js";

export type Json = Record<string, unknown>;

/** A timestamp to set, or null to clear it. */
export type TimeInput = Date | null;

export interface UserFields {
  email?: string | null;
  emailConfirmed?: boolean;
  username?: string | null;
  firstName?: string | null;
  lastName?: string | null;
  pictureUrl?: string | null;
  properties?: Json;
  hasPassword?: boolean;
  updatePasswordRequired?: boolean;
  mfaEnabled?: boolean;
  canCreateOrgs?: boolean;
  legacyUserId?: string | null;
  logicalKey?: string | null;
  createdAt?: Date;
  /** null clears it. */
  lastActiveAt?: TimeInput;
  locked?: boolean;
  enabled?: boolean;
}

export interface PlaceInput {
  userId: string;
  organizationId: string;
  primaryRole: RoleRefInput;
  replace: boolean;
}

/** One change; `kind` mirrors the DirectoryMutation oneof case. */
export type DirectoryMutation =
  | { kind: "upsertTenant"; id?: string; name?: string; slug?: string }
  | { kind: "deleteTenant" | "deleteOrganization"; id: string; cascade: boolean }
  | {
      kind: "upsertOrganization";
      id?: string;
      tenantId?: string | null;
      name?: string;
      slug?: string | null;
      metadata?: Json;
      roleStructure?: string;
    }
  | { kind: "upsertUser"; id?: string; fields: UserFields }
  | { kind: "setUserStatus"; userId: string; locked?: boolean; enabled?: boolean }
  | {
      kind: "deleteUser" | "deleteStaff" | "deleteAccount" | "deletePrincipal" | "deleteAvatar" | "declineMembership" | "revokeMembership";
      id: string;
    }
  | { kind: "upsertStaff"; id?: string; logicalKey: string }
  | { kind: "upsertAccount"; id?: string; organizationId?: string; email?: string | null; active?: boolean }
  | { kind: "setAccountActive" | "setPrincipalActive" | "setAvatarActive" | "setMembershipActive"; id: string; active: boolean }
  | {
      kind: "upsertPrincipal";
      id?: string;
      accountId?: string;
      subject?: { type: "user" | "staff"; id: string };
      identityId?: string | null;
      region?: string | null;
      personalityKey?: string | null;
      validUntil?: TimeInput;
      active?: boolean;
      /** null clears it: not accepted. */
      acceptedAt?: TimeInput;
    }
  | { kind: "acceptPrincipal" | "acceptMembership"; id: string; acceptedAt?: Date }
  | { kind: "createAvatar"; id?: string; organizationId: string; handle: string; ownerPrincipalId: string; ownerMembershipId?: string }
  | { kind: "updateAvatar"; id: string; handle: string }
  | { kind: "inviteMembership"; id?: string; avatarId: string; principalId: string; validUntil: TimeInput }
  | { kind: "setMembershipValidUntil"; id: string; validUntil: TimeInput }
  | ({ kind: "addUserToOrganization" | "setPrimaryRole" } & PlaceInput)
  | { kind: "removeUserFromOrganization"; userId: string; organizationId: string };

export type DirectoryKind = DirectoryMutation["kind"];

/** The proto field name of each kind, for messages naming a field path. */
export const FIELD: Record<DirectoryKind, string> = {
  upsertTenant: "upsert_tenant",
  deleteTenant: "delete_tenant",
  upsertOrganization: "upsert_organization",
  deleteOrganization: "delete_organization",
  upsertUser: "upsert_user",
  setUserStatus: "set_user_status",
  deleteUser: "delete_user",
  upsertStaff: "upsert_staff",
  deleteStaff: "delete_staff",
  upsertAccount: "upsert_account",
  setAccountActive: "set_account_active",
  deleteAccount: "delete_account",
  upsertPrincipal: "upsert_principal",
  acceptPrincipal: "accept_principal",
  setPrincipalActive: "set_principal_active",
  deletePrincipal: "delete_principal",
  createAvatar: "create_avatar",
  updateAvatar: "update_avatar",
  setAvatarActive: "set_avatar_active",
  deleteAvatar: "delete_avatar",
  inviteMembership: "invite_membership",
  acceptMembership: "accept_membership",
  declineMembership: "decline_membership",
  revokeMembership: "revoke_membership",
  setMembershipValidUntil: "set_membership_valid_until",
  setMembershipActive: "set_membership_active",
  addUserToOrganization: "add_user_to_organization",
  setPrimaryRole: "set_primary_role",
  removeUserFromOrganization: "remove_user_from_organization",
};

export type ManageDirectoryInput = BatchInput<DirectoryMutation>;

/** Slugs of tenants and organizations (the schema's check, with a length bound). */
export const SLUG = /^[a-z0-9][a-z0-9._-]{0,127}$/;
export const ROLE_STRUCTURES = ["single_role_in_hierarchy", "multi_role"] as const;
const MAX_EMAIL_BYTES = 320;
const MAX_URL_BYTES = 2048;
const MAX_REGION_BYTES = 128;

function slug(v: string, field: string): string {
  if (!SLUG.test(v)) throw invalidArgument(`${field} must match ^[a-z0-9][a-z0-9._-]*$ (at most 128 characters)`, field);
  return v;
}

function name(v: unknown, field: string, max = MAX_NAME_BYTES): string | undefined {
  const s = text(v, field, max);
  if (s === "") throw invalidArgument(`${field} must not be empty`, field);
  return s;
}

/** An optional text that null (or "") clears. */
function clearable(v: string | null | undefined, field: string, max: number): string | null | undefined {
  if (v === null || v === "") return v === undefined ? undefined : null;
  return text(v, field, max);
}

function time(v: unknown, field: string): Date | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof Date) || Number.isNaN(v.getTime())) throw invalidArgument(`${field} must be a valid timestamp`, field);
  return v;
}

const timeOrNull = (v: TimeInput | undefined, field: string): TimeInput | undefined => (v === null ? null : time(v, field));

const maybeId = (v: string | undefined, field: string): string | undefined => (v === undefined || v === "" ? undefined : uuid(v, field));

function json(v: unknown, field: string): Json | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw invalidArgument(`${field} must be a JSON object`, field);
  return v as Json;
}

function roleRef(r: RoleRefInput | undefined, path: string): RoleRefInput {
  if (r === undefined) throw invalidArgument(`${path} is required`, path);
  if ("id" in r) return { id: uuid(r.id, `${path}.id`) };
  if (!KEY.test(r.key)) throw invalidArgument(`${path}.key.key must be 1 to 128 characters of letters, digits and "._:-"`, `${path}.key.key`);
  return { organizationId: optionalUuid(r.organizationId, `${path}.key.organization_id`), key: r.key };
}

function userFields(f: UserFields, p: string): UserFields {
  const out: UserFields = {};
  const texts = [
    ["email", MAX_EMAIL_BYTES],
    ["username", MAX_NAME_BYTES],
    ["firstName", MAX_NAME_BYTES],
    ["lastName", MAX_NAME_BYTES],
    ["pictureUrl", MAX_URL_BYTES],
    ["legacyUserId", MAX_NAME_BYTES],
    ["logicalKey", MAX_NAME_BYTES],
  ] as const;
  for (const [k, max] of texts) {
    const v = clearable(f[k], `${p}.${snake(k)}`, max);
    if (v !== undefined) out[k] = v;
  }
  for (const k of ["emailConfirmed", "hasPassword", "updatePasswordRequired", "mfaEnabled", "canCreateOrgs", "locked", "enabled"] as const) {
    if (f[k] !== undefined) out[k] = Boolean(f[k]);
  }
  const props = json(f.properties, `${p}.properties`);
  if (props) out.properties = props;
  const created = time(f.createdAt, `${p}.created_at`);
  if (created) out.createdAt = created;
  const active = timeOrNull(f.lastActiveAt, `${p}.last_active_at`);
  if (active !== undefined) out.lastActiveAt = active;
  return out;
}

const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function validateOrganization(m: Extract<DirectoryMutation, { kind: "upsertOrganization" }>, p: string): DirectoryMutation {
  if (m.roleStructure !== undefined && !(ROLE_STRUCTURES as readonly string[]).includes(m.roleStructure)) {
    throw invalidArgument(`${p}.role_structure must be one of ${ROLE_STRUCTURES.join(", ")}`, `${p}.role_structure`);
  }
  return {
    kind: m.kind,
    ...optional("id", maybeId(m.id, `${p}.id`)),
    ...optional("tenantId", m.tenantId === undefined ? undefined : optionalUuid(m.tenantId, `${p}.tenant_id`)),
    ...optional("name", name(m.name, `${p}.name`)),
    ...optional("slug", m.slug === undefined ? undefined : m.slug === null || m.slug === "" ? null : slug(m.slug, `${p}.slug`)),
    ...optional("metadata", json(m.metadata, `${p}.metadata`)),
    ...optional("roleStructure", m.roleStructure),
  };
}

function validatePrincipal(m: Extract<DirectoryMutation, { kind: "upsertPrincipal" }>, p: string): DirectoryMutation {
  const s = m.subject;
  if (s !== undefined && s.type !== "user" && s.type !== "staff") throw invalidArgument(`${p}.subject.type must be user or staff`, `${p}.subject.type`);
  return {
    kind: m.kind,
    ...optional("id", maybeId(m.id, `${p}.id`)),
    ...optional("accountId", maybeId(m.accountId, `${p}.account_id`)),
    ...optional("subject", s && { type: s.type, id: uuid(s.id, `${p}.subject.id`) }),
    ...optional("identityId", m.identityId === undefined ? undefined : optionalUuid(m.identityId, `${p}.identity_id`)),
    ...optional("region", clearable(m.region, `${p}.region`, MAX_REGION_BYTES)),
    ...optional("personalityKey", clearable(m.personalityKey, `${p}.personality_key`, MAX_NAME_BYTES)),
    ...optional("validUntil", timeOrNull(m.validUntil, `${p}.valid_until`)),
    ...optional("active", m.active),
    ...optional("acceptedAt", timeOrNull(m.acceptedAt, `${p}.accepted_at`)),
  };
}

function validateRecordChange(m: DirectoryMutation, p: string): DirectoryMutation | undefined {
  switch (m.kind) {
    case "deleteTenant":
    case "deleteOrganization":
      return { kind: m.kind, id: uuid(m.id, `${p}.id`), cascade: Boolean(m.cascade) };
    case "deleteUser":
    case "deleteStaff":
    case "deleteAccount":
    case "deletePrincipal":
    case "deleteAvatar":
    case "declineMembership":
    case "revokeMembership":
      return { kind: m.kind, id: uuid(m.id, `${p}.id`) };
    case "setAccountActive":
    case "setPrincipalActive":
    case "setAvatarActive":
    case "setMembershipActive":
      return { kind: m.kind, id: uuid(m.id, `${p}.id`), active: Boolean(m.active) };
    case "acceptPrincipal":
    case "acceptMembership":
      return { kind: m.kind, id: uuid(m.id, `${p}.id`), ...optional("acceptedAt", time(m.acceptedAt, `${p}.accepted_at`)) };
    case "setMembershipValidUntil":
      return { kind: m.kind, id: uuid(m.id, `${p}.id`), validUntil: timeOrNull(m.validUntil, `${p}.valid_until`) ?? null };
    case "setUserStatus":
      if (m.locked === undefined && m.enabled === undefined) throw invalidArgument(`${p} must set locked or enabled`, p);
      return { kind: m.kind, userId: uuid(m.userId, `${p}.user_id`), ...optional("locked", m.locked), ...optional("enabled", m.enabled) };
    default:
      return undefined;
  }
}

function validateEntity(m: DirectoryMutation, p: string): DirectoryMutation {
  switch (m.kind) {
    case "upsertTenant":
      return {
        kind: m.kind,
        ...optional("id", maybeId(m.id, `${p}.id`)),
        ...optional("name", name(m.name, `${p}.name`)),
        ...optional("slug", m.slug === undefined ? undefined : slug(m.slug, `${p}.slug`)),
      };
    case "upsertOrganization":
      return validateOrganization(m, p);
    case "upsertUser":
      return { kind: m.kind, ...optional("id", maybeId(m.id, `${p}.id`)), fields: userFields(m.fields ?? {}, p) };
    case "upsertStaff":
      return { kind: m.kind, ...optional("id", maybeId(m.id, `${p}.id`)), logicalKey: name(m.logicalKey, `${p}.logical_key`) ?? "" };
    case "upsertAccount":
      return {
        kind: m.kind,
        ...optional("id", maybeId(m.id, `${p}.id`)),
        ...optional("organizationId", maybeId(m.organizationId, `${p}.organization_id`)),
        ...optional("email", clearable(m.email, `${p}.email`, MAX_EMAIL_BYTES)),
        ...optional("active", m.active),
      };
    case "upsertPrincipal":
      return validatePrincipal(m, p);
    default:
      return validateAvatarOrPlace(m, p);
  }
}

function validateAvatarOrPlace(m: DirectoryMutation, p: string): DirectoryMutation {
  switch (m.kind) {
    case "createAvatar":
      return {
        kind: m.kind,
        ...optional("id", maybeId(m.id, `${p}.id`)),
        organizationId: uuid(m.organizationId, `${p}.organization_id`),
        handle: name(m.handle, `${p}.handle`) ?? "",
        ownerPrincipalId: uuid(m.ownerPrincipalId, `${p}.owner_principal_id`),
        ...optional("ownerMembershipId", maybeId(m.ownerMembershipId, `${p}.owner_membership_id`)),
      };
    case "updateAvatar":
      return { kind: m.kind, id: uuid(m.id, `${p}.id`), handle: name(m.handle, `${p}.handle`) ?? "" };
    case "inviteMembership":
      return {
        kind: m.kind,
        ...optional("id", maybeId(m.id, `${p}.id`)),
        avatarId: uuid(m.avatarId, `${p}.avatar_id`),
        principalId: uuid(m.principalId, `${p}.principal_id`),
        validUntil: timeOrNull(m.validUntil, `${p}.valid_until`) ?? null,
      };
    case "addUserToOrganization":
    case "setPrimaryRole":
      return {
        kind: m.kind,
        userId: uuid(m.userId, `${p}.user_id`),
        organizationId: uuid(m.organizationId, `${p}.organization_id`),
        primaryRole: roleRef(m.primaryRole, `${p}.primary_role`),
        replace: Boolean(m.replace),
      };
    case "removeUserFromOrganization":
      return { kind: m.kind, userId: uuid(m.userId, `${p}.user_id`), organizationId: uuid(m.organizationId, `${p}.organization_id`) };
    default:
      throw invalidArgument(`${p} is not a directory change`, p);
  }
}

function validateMutation(m: DirectoryMutation, i: number): DirectoryMutation {
  if (typeof m !== "object" || m === null || !Object.hasOwn(FIELD, m.kind)) {
    throw invalidArgument(`mutations[${i}] must set exactly one change (${Object.values(FIELD).join(", ")})`, `mutations[${i}]`);
  }
  const p = `mutations[${i}].${FIELD[m.kind]}`;
  return validateRecordChange(m, p) ?? validateEntity(m, p);
}

/** Checks and normalizes the whole batch; INVALID_ARGUMENT naming the first bad field. */
export function validateManageDirectory(input: ManageDirectoryInput): ManageDirectoryInput {
  return validateBatch(input, validateMutation);
}
