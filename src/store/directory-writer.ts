// ManageDirectory: an atomic batch of directory changes (tenants,
// organizations, users, staff, accounts, principals, avatars, memberships,
// a user's place in an organization), run through the one write pipeline
// (write-pipeline.ts: idempotency, confinement, expected_revision, one SQL
// error mapping). Validation lives in directory-mutations.ts, row helpers in
// directory-rows.ts, a user's place in directory-places.ts.

import { type DirectoryMutation, FIELD, type ManageDirectoryInput, validateManageDirectory } from "./directory-mutations.js";
import { applyPlace, confinePlace } from "./directory-places.js";
import { type Col, contents, type DirectoryResult, deleteRow, mustBeUnique, mustExist, mustOwnNoAvatars, updateExisting, upsertRow } from "./directory-rows.js";
import { mustHoldSingleRole } from "./role-structure.js";
import type { SqlClient, SqlQuerier } from "./sql.js";
import type { WriteConfinement } from "./tenant-lookup.js";
import { INTERNAL_WRITER, refusal, runBatch, type WriteCaller } from "./write-pipeline.js";

export type { DirectoryMutation, ManageDirectoryInput } from "./directory-mutations.js";
export type { DirectoryResult } from "./directory-rows.js";

type M<K extends DirectoryMutation["kind"]> = Extract<DirectoryMutation, { kind: K }>;

// ---------------------------------------------------------------------------
// Tenants and organizations
// ---------------------------------------------------------------------------

async function upsertTenant(tx: SqlQuerier, m: M<"upsertTenant">, p: string): Promise<DirectoryResult> {
  if (m.slug !== undefined) await mustBeUnique(tx, "tenants", "slug = $1::text", [m.slug], m.id, `${p}.slug`, m.slug);
  return upsertRow(
    tx,
    "tenants",
    m.id,
    [
      ["name", m.name, "text"],
      ["slug", m.slug, "text"],
    ],
    ["name", "slug"],
    p,
  );
}

/** Organizations without a tenant count as one group for slugs (migration 0001). */
const NO_TENANT = "00000000-0000-0000-0000-000000000000";

async function upsertOrganization(tx: SqlQuerier, m: M<"upsertOrganization">, p: string): Promise<DirectoryResult> {
  if (m.tenantId) await mustExist(tx, "tenants", m.tenantId, `${p}.tenant_id`);
  if (m.slug) {
    // Unique within the tenant the organization has after this write.
    const [cur] = m.id
      ? await tx.query<{ tenant_id: string | null }>("select tenant_id::text as tenant_id from organizations where id = $1::text::uuid", [m.id])
      : [];
    const tenant = m.tenantId !== undefined ? m.tenantId : (cur?.tenant_id ?? null);
    // The expression of the unique index organizations_tenant_slug_key, so the index serves the check.
    const sameTenant = `coalesce(tenant_id, '${NO_TENANT}'::uuid) = coalesce($1::text::uuid, '${NO_TENANT}'::uuid) and slug = $2::text`;
    await mustBeUnique(tx, "organizations", sameTenant, [tenant, m.slug], m.id, `${p}.slug`, m.slug);
  }
  const cols: Col[] = [
    ["tenant_id", m.tenantId, "uuid"],
    ["name", m.name, "text"],
    ["slug", m.slug, "text"],
    ["metadata", m.metadata, "jsonb"],
    ["role_structure", m.roleStructure, "text"],
  ];
  const done = await upsertRow(tx, "organizations", m.id, cols, ["name"], p);
  if (m.roleStructure === "single_role_in_hierarchy" && done.changed) await mustHoldSingleRole(tx, done.id, `${p}.role_structure`);
  return done;
}

async function deleteContainer(tx: SqlQuerier, table: "tenants" | "organizations", m: { id: string; cascade: boolean }, p: string): Promise<DirectoryResult> {
  await mustExist(tx, table, m.id, `${p}.id`);
  if (!m.cascade) {
    const held = await contents(tx, table, m.id);
    if (held !== "") {
      throw refusal(
        "FAILED_PRECONDITION",
        `${p}: ${table === "tenants" ? "tenant" : "organization"} ${m.id} still holds ${held}; delete them first or set cascade`,
        "NOT_EMPTY",
      );
    }
  } else if (table === "organizations") {
    await ownedAvatarsGo(tx, "avatars.organization_id = $1::text::uuid", m.id);
  } else {
    await ownedAvatarsGo(tx, "avatars.organization_id in (select id from organizations where tenant_id = $1::text::uuid)", m.id);
  }
  return deleteRow(tx, table, m.id, p);
}

/** The avatars of a cascaded delete go first, with their memberships and transfers, before the owners' principals go. */
async function ownedAvatarsGo(tx: SqlQuerier, where: string, id: string): Promise<void> {
  await tx.query(`delete from avatars where ${where}`, [id]);
}

// ---------------------------------------------------------------------------
// Users and staff
// ---------------------------------------------------------------------------

async function upsertUser(tx: SqlQuerier, m: M<"upsertUser">, p: string): Promise<DirectoryResult> {
  const f = m.fields;
  if (f.logicalKey) await mustBeUnique(tx, "users", "logical_key = $1::text", [f.logicalKey], m.id, `${p}.logical_key`, f.logicalKey);
  const cols: Col[] = [
    ["email", f.email, "text"],
    ["email_confirmed", f.emailConfirmed, "boolean"],
    ["username", f.username, "text"],
    ["first_name", f.firstName, "text"],
    ["last_name", f.lastName, "text"],
    ["picture_url", f.pictureUrl, "text"],
    ["properties", f.properties, "jsonb"],
    ["has_password", f.hasPassword, "boolean"],
    ["update_password_required", f.updatePasswordRequired, "boolean"],
    ["mfa_enabled", f.mfaEnabled, "boolean"],
    ["can_create_orgs", f.canCreateOrgs, "boolean"],
    ["legacy_user_id", f.legacyUserId, "text"],
    ["logical_key", f.logicalKey, "text"],
    ["created_at", f.createdAt, "timestamptz"],
    ["last_active_at", f.lastActiveAt, "timestamptz"],
    ["locked", f.locked, "boolean"],
    ["enabled", f.enabled, "boolean"],
  ];
  return upsertRow(tx, "users", m.id, cols, [], p);
}

async function offBoard(tx: SqlQuerier, table: "users" | "staff" | "accounts" | "principals", id: string, p: string): Promise<DirectoryResult> {
  await mustExist(tx, table, id, `${p}.id`);
  await mustOwnNoAvatars(tx, table, id, p);
  return deleteRow(tx, table, id, p);
}

// ---------------------------------------------------------------------------
// Accounts and principals
// ---------------------------------------------------------------------------

async function upsertAccount(tx: SqlQuerier, m: M<"upsertAccount">, p: string): Promise<DirectoryResult> {
  if (m.organizationId) await mustExist(tx, "organizations", m.organizationId, `${p}.organization_id`);
  await fixedParent(tx, "accounts", "organization_id", m.id, m.organizationId, `${p}.organization_id`);
  const cols: Col[] = [
    ["organization_id", m.organizationId, "uuid"],
    ["email", m.email, "text"],
    ["active", m.active, "boolean"],
  ];
  return upsertRow(tx, "accounts", m.id, cols, ["organization_id"], p);
}

/** An account's organization and a principal's account and subject are fixed once created. */
async function fixedParent(
  tx: SqlQuerier,
  table: "accounts" | "principals",
  col: string,
  id: string | undefined,
  wanted: string | undefined,
  p: string,
): Promise<void> {
  if (id === undefined || wanted === undefined) return;
  const [row] = await tx.query<{ v: string }>(`select ${col}::text as v from ${table} where id = $1::text::uuid`, [id]);
  if (row && row.v !== wanted) throw refusal("FAILED_PRECONDITION", `${p}: it cannot change once the record exists (it is ${row.v})`);
}

async function upsertPrincipal(tx: SqlQuerier, m: M<"upsertPrincipal">, p: string): Promise<DirectoryResult> {
  if (m.accountId) await mustExist(tx, "accounts", m.accountId, `${p}.account_id`);
  if (m.subject) await mustExist(tx, m.subject.type === "user" ? "users" : "staff", m.subject.id, `${p}.subject`);
  await fixedParent(tx, "principals", "account_id", m.id, m.accountId, `${p}.account_id`);
  await fixedParent(tx, "principals", "subject_id", m.id, m.subject?.id, `${p}.subject.id`);
  const cols: Col[] = [
    ["account_id", m.accountId, "uuid"],
    ["subject_type", m.subject?.type, "text"],
    ["subject_id", m.subject?.id, "uuid"],
    ["identity_id", m.identityId, "uuid"],
    ["region", m.region, "text"],
    ["personality_key", m.personalityKey, "text"],
    ["valid_until", m.validUntil, "timestamptz"],
    ["active", m.active, "boolean"],
    ["accepted_at", m.acceptedAt, "timestamptz"],
  ];
  return upsertRow(tx, "principals", m.id, cols, ["account_id", "subject_type"], p);
}

// ---------------------------------------------------------------------------
// Avatars and memberships
// ---------------------------------------------------------------------------

async function createAvatar(tx: SqlQuerier, m: M<"createAvatar">, p: string): Promise<DirectoryResult> {
  await mustExist(tx, "organizations", m.organizationId, `${p}.organization_id`);
  await mustExist(tx, "principals", m.ownerPrincipalId, `${p}.owner_principal_id`);
  if (m.id) {
    const [row] = await tx.query("select 1 from avatars where id = $1::text::uuid", [m.id]);
    if (row) throw refusal("ALREADY_EXISTS", `${p}.id: avatar ${m.id} already exists`);
  }
  await mustBeUnique(tx, "avatars", "organization_id = $1::text::uuid and handle = $2::text", [m.organizationId, m.handle], undefined, `${p}.handle`, m.handle);
  const [avatar] = await tx.query<{ id: string }>(
    `insert into avatars (id, organization_id, handle) values (coalesce($1::text::uuid, gen_random_uuid()), $2::text::uuid, $3::text)
     returning id::text as id`,
    [m.id ?? null, m.organizationId, m.handle],
  );
  const id = (avatar as { id: string }).id;
  await tx.query(
    `insert into memberships (id, principal_id, avatar_id, owner, active, accepted_at)
     values (coalesce($1::text::uuid, gen_random_uuid()), $2::text::uuid, $3::text::uuid, true, true, now())`,
    [m.ownerMembershipId ?? null, m.ownerPrincipalId, id],
  );
  return { id, changed: true };
}

async function updateAvatar(tx: SqlQuerier, m: M<"updateAvatar">, p: string): Promise<DirectoryResult> {
  const [row] = await tx.query<{ org: string }>("select organization_id::text as org from avatars where id = $1::text::uuid", [m.id]);
  if (!row) throw refusal("NOT_FOUND", `${p}.id: avatar ${m.id} not found`);
  await mustBeUnique(tx, "avatars", "organization_id = $1::text::uuid and handle = $2::text", [row.org, m.handle], m.id, `${p}.handle`, m.handle);
  return updateExisting(tx, "avatars", m.id, [["handle", m.handle, "text"]], `${p}.id`);
}

async function inviteMembership(tx: SqlQuerier, m: M<"inviteMembership">, p: string): Promise<DirectoryResult> {
  await mustExist(tx, "avatars", m.avatarId, `${p}.avatar_id`);
  await mustExist(tx, "principals", m.principalId, `${p}.principal_id`);
  const [dup] = await tx.query<{ id: string }>("select id::text as id from memberships where avatar_id = $1::text::uuid and principal_id = $2::text::uuid", [
    m.avatarId,
    m.principalId,
  ]);
  if (dup) throw refusal("ALREADY_EXISTS", `${p}: principal ${m.principalId} already has membership ${dup.id} in avatar ${m.avatarId}`);
  const [row] = await tx.query<{ id: string }>(
    `insert into memberships (id, principal_id, avatar_id, owner, active, accepted_at, valid_until)
     values (coalesce($1::text::uuid, gen_random_uuid()), $2::text::uuid, $3::text::uuid, false, true, null, $4::text::timestamptz)
     returning id::text as id`,
    [m.id ?? null, m.principalId, m.avatarId, m.validUntil?.toISOString() ?? null],
  );
  return { id: (row as { id: string }).id, changed: true };
}

/** Decline (only an open invitation) or revoke (any membership but the owner's): the membership is deleted. */
async function dropMembership(tx: SqlQuerier, m: { kind: string; id: string }, p: string): Promise<DirectoryResult> {
  const [row] = await tx.query<{ owner: boolean; accepted: boolean }>(
    // Accepted as the decisions count it: accepted_at set and not in the future.
    "select owner, coalesce(accepted_at <= now(), false) as accepted from memberships where id = $1::text::uuid",
    [m.id],
  );
  if (!row) throw refusal("NOT_FOUND", `${p}.id: membership ${m.id} not found`);
  if (row.owner) throw refusal("FAILED_PRECONDITION", `${p}: membership ${m.id} is the avatar's owner; move the ownership first`, "OWNER_MEMBERSHIP");
  if (m.kind === "declineMembership" && row.accepted) {
    throw refusal("FAILED_PRECONDITION", `${p}: membership ${m.id} was already accepted; revoke it instead`, "MEMBERSHIP_ACCEPTED");
  }
  return deleteRow(tx, "memberships", m.id, p);
}

// ---------------------------------------------------------------------------
// Apply and confine, per mutation
// ---------------------------------------------------------------------------

const ACTIVE_TABLE = {
  setAccountActive: "accounts",
  setPrincipalActive: "principals",
  setAvatarActive: "avatars",
  setMembershipActive: "memberships",
} as const;

/**
 * Sets accepted_at (the given time, else now); accepting again without a time changes nothing.
 * A record whose accepted_at lies in the future is not accepted yet (docs/data-model.md, rule 1),
 * so accepting it without a time accepts it now.
 */
async function accept(tx: SqlQuerier, table: "principals" | "memberships", m: { id: string; acceptedAt?: Date }, p: string): Promise<DirectoryResult> {
  const [row] = await tx.query<{ accepted: boolean }>(`select coalesce(accepted_at <= now(), false) as accepted from ${table} where id = $1::text::uuid`, [
    m.id,
  ]);
  if (!row) throw refusal("NOT_FOUND", `${p}.id: ${table === "principals" ? "principal" : "membership"} ${m.id} not found`);
  if (row.accepted && m.acceptedAt === undefined) return { id: m.id, changed: false };
  return updateExisting(tx, table, m.id, [["accepted_at", m.acceptedAt ?? "now", "timestamptz"]], `${p}.id`);
}

/**
 * Activating an owner membership while its avatar has another active owner breaks the one-owner
 * rule: a refusal of its own (FAILED_PRECONDITION, OWNER_INVARIANT), not the unique index's
 * ABORTED, which means a concurrent transfer and invites a retry that can never succeed.
 */
async function refuseSecondOwner(tx: SqlQuerier, id: string, p: string): Promise<void> {
  const [row] = await tx.query<{ other: string | null }>(
    `select (select o.id::text from memberships o
              where o.avatar_id = m.avatar_id and o.id <> m.id and o.owner and o.active limit 1) as other
       from memberships m where m.id = $1::text::uuid and m.owner and not m.active`,
    [id],
  );
  if (row?.other) {
    throw refusal(
      "FAILED_PRECONDITION",
      `${p}: membership ${id} is an owner membership and its avatar already has an active owner (membership ${row.other}); move the ownership with TransferOwnership instead`,
      "OWNER_INVARIANT",
    );
  }
}

async function applyRecordChange(tx: SqlQuerier, m: DirectoryMutation, p: string): Promise<DirectoryResult | undefined> {
  switch (m.kind) {
    case "setAccountActive":
    case "setPrincipalActive":
    case "setAvatarActive":
    case "setMembershipActive":
      if (m.kind === "setMembershipActive" && m.active) await refuseSecondOwner(tx, m.id, p);
      return updateExisting(tx, ACTIVE_TABLE[m.kind], m.id, [["active", m.active, "boolean"]], `${p}.id`);
    case "setUserStatus":
      return updateExisting(
        tx,
        "users",
        m.userId,
        [
          ["locked", m.locked, "boolean"],
          ["enabled", m.enabled, "boolean"],
        ],
        `${p}.user_id`,
      );
    case "acceptPrincipal":
    case "acceptMembership":
      return accept(tx, m.kind === "acceptPrincipal" ? "principals" : "memberships", m, p);
    case "setMembershipValidUntil":
      return updateExisting(tx, "memberships", m.id, [["valid_until", m.validUntil, "timestamptz"]], `${p}.id`);
    case "deleteUser":
      return offBoard(tx, "users", m.id, p);
    case "deleteStaff":
      return offBoard(tx, "staff", m.id, p);
    case "deleteAccount":
      return offBoard(tx, "accounts", m.id, p);
    case "deletePrincipal":
      return offBoard(tx, "principals", m.id, p);
    case "deleteAvatar":
      return deleteRow(tx, "avatars", m.id, `${p}.id`);
    case "declineMembership":
    case "revokeMembership":
      return dropMembership(tx, m, p);
    default:
      return undefined;
  }
}

async function apply(tx: SqlQuerier, m: DirectoryMutation, i: number): Promise<DirectoryResult> {
  const p = `mutations[${i}].${FIELD[m.kind]}`;
  const done = await applyRecordChange(tx, m, p);
  if (done) return done;
  switch (m.kind) {
    case "upsertTenant":
      return upsertTenant(tx, m, p);
    case "deleteTenant":
      return deleteContainer(tx, "tenants", m, p);
    case "upsertOrganization":
      return upsertOrganization(tx, m, p);
    case "deleteOrganization":
      return deleteContainer(tx, "organizations", m, p);
    case "upsertUser":
      return upsertUser(tx, m, p);
    case "upsertStaff":
      await mustBeUnique(tx, "staff", "logical_key = $1::text", [m.logicalKey], m.id, `${p}.logical_key`, m.logicalKey);
      return upsertRow(tx, "staff", m.id, [["logical_key", m.logicalKey, "text"]], ["logical_key"], p);
    case "upsertAccount":
      return upsertAccount(tx, m, p);
    case "upsertPrincipal":
      return upsertPrincipal(tx, m, p);
    case "createAvatar":
      return createAvatar(tx, m, p);
    case "updateAvatar":
      return updateAvatar(tx, m, p);
    case "inviteMembership":
      return inviteMembership(tx, m, p);
    default:
      return applyPlace(tx, m, p);
  }
}

/**
 * A tenant-bound caller changes only rows of its tenant: every row a
 * mutation names is checked before anything is written. Users and staff
 * belong to no tenant, so such a caller cannot change them (it may name
 * them as a principal's subject).
 */
async function confine(c: WriteConfinement, m: DirectoryMutation, i: number): Promise<void> {
  const p = `mutations[${i}].${FIELD[m.kind]}`;
  switch (m.kind) {
    case "upsertTenant":
      if (m.id === undefined) return c.global(`${p}: a new tenant`);
      return c.own("tenants", m.id, `${p}.id: tenant ${m.id}`);
    case "deleteTenant":
      return c.own("tenants", m.id, `${p}.id: tenant ${m.id}`);
    case "upsertOrganization":
      if (m.id !== undefined) await c.own("organizations", m.id, `${p}.id: organization ${m.id}`);
      if (m.tenantId === null || (m.tenantId === undefined && m.id === undefined)) return c.global(`${p}.tenant_id: an organization without a tenant`);
      if (m.tenantId !== undefined) await c.own("tenants", m.tenantId, `${p}.tenant_id: tenant ${m.tenantId}`);
      return;
    case "deleteOrganization":
      return c.own("organizations", m.id, `${p}.id: organization ${m.id}`);
    case "upsertUser":
    case "setUserStatus":
    case "deleteUser":
    case "upsertStaff":
    case "deleteStaff":
      return c.global(`${p}: users and staff belong to no tenant`);
    default:
      return confineInTenant(c, m, p);
  }
}

async function confineInTenant(c: WriteConfinement, m: DirectoryMutation, p: string): Promise<void> {
  switch (m.kind) {
    case "upsertAccount":
      if (m.id !== undefined) await c.own("accounts", m.id, `${p}.id: account ${m.id}`);
      if (m.organizationId !== undefined) await c.organization(m.organizationId, `${p}.organization_id: organization ${m.organizationId}`);
      return;
    case "setAccountActive":
    case "deleteAccount":
      return c.own("accounts", m.id, `${p}.id: account ${m.id}`);
    case "upsertPrincipal":
      if (m.id !== undefined) await c.own("principals", m.id, `${p}.id: principal ${m.id}`);
      if (m.accountId !== undefined) await c.own("accounts", m.accountId, `${p}.account_id: account ${m.accountId}`);
      return;
    case "acceptPrincipal":
    case "setPrincipalActive":
    case "deletePrincipal":
      return c.own("principals", m.id, `${p}.id: principal ${m.id}`);
    case "createAvatar":
      await c.organization(m.organizationId, `${p}.organization_id: organization ${m.organizationId}`);
      if (m.id !== undefined) await c.own("avatars", m.id, `${p}.id: avatar ${m.id}`);
      if (m.ownerMembershipId !== undefined) await c.own("memberships", m.ownerMembershipId, `${p}.owner_membership_id: membership ${m.ownerMembershipId}`);
      return c.own("principals", m.ownerPrincipalId, `${p}.owner_principal_id: principal ${m.ownerPrincipalId}`);
    case "updateAvatar":
    case "setAvatarActive":
    case "deleteAvatar":
      return c.own("avatars", m.id, `${p}.id: avatar ${m.id}`);
    case "inviteMembership":
      if (m.id !== undefined) await c.own("memberships", m.id, `${p}.id: membership ${m.id}`);
      await c.own("avatars", m.avatarId, `${p}.avatar_id: avatar ${m.avatarId}`);
      return c.own("principals", m.principalId, `${p}.principal_id: principal ${m.principalId}`);
    case "acceptMembership":
    case "declineMembership":
    case "revokeMembership":
    case "setMembershipValidUntil":
    case "setMembershipActive":
      return c.own("memberships", m.id, `${p}.id: membership ${m.id}`);
    default:
      return confinePlace(c, m, p);
  }
}

/**
 * Applies the batch atomically: every mutation or none. Returns the revision
 * the batch committed at and one result per mutation; with an idempotency
 * key, a retry of the same batch by the same caller returns the first answer.
 */
export async function manageDirectory(
  db: SqlClient,
  raw: ManageDirectoryInput,
  caller: WriteCaller = INTERNAL_WRITER,
): Promise<{ revision: string; results: DirectoryResult[] }> {
  return runBatch(db, caller, validateManageDirectory(raw), { rpc: "ManageDirectory", field: (m) => FIELD[m.kind], confine, apply });
}
