// A user's place in an organization (seed 000 UserOrganizationInfo) through
// ManageDirectory: add with a primary role, change the primary role, remove.
// The place records the primary role and the user is assigned it on the
// organization, under the org_role_structure rule (role-structure.ts).

import type { DirectoryMutation, PlaceInput } from "./directory-mutations.js";
import { type DirectoryResult, mustExist } from "./directory-rows.js";
import { describeRef, mustResolve } from "./manage-roles.js";
import { enforceRoleStructure } from "./role-structure.js";
import type { SqlQuerier } from "./sql.js";
import type { WriteConfinement } from "./tenant-lookup.js";
import { refusal } from "./write-pipeline.js";

async function setPlace(tx: SqlQuerier, m: PlaceInput & { kind: string }, p: string): Promise<DirectoryResult> {
  await mustExist(tx, "users", m.userId, `${p}.user_id`);
  await mustExist(tx, "organizations", m.organizationId, `${p}.organization_id`);
  const role = await mustResolve(tx, "role", m.primaryRole, `${p}.primary_role`);
  if (role.organizationId !== null && role.organizationId !== m.organizationId) {
    throw refusal("FAILED_PRECONDITION", `${p}.primary_role: ${describeRef("role", m.primaryRole)} is a role of another organization`, "CROSS_ORGANIZATION");
  }
  const [place] = await tx.query<{ primary: string | null }>(
    "select primary_role_id::text as primary from user_organizations where user_id = $1::text::uuid and organization_id = $2::text::uuid",
    [m.userId, m.organizationId],
  );
  if (!place && m.kind === "setPrimaryRole") throw refusal("NOT_FOUND", `${p}: user ${m.userId} has no place in organization ${m.organizationId}`);
  await enforceRoleStructure(tx, { userId: m.userId, organizationId: m.organizationId, roleId: role.id, replace: m.replace }, p);
  const assigned = await tx.query(
    `insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
       values ('user', $1::text::uuid, $2::text::uuid, 'organization', $3::text::uuid)
     on conflict on constraint role_assignments_unique do update set active = true, valid_until = null
       where (role_assignments.active, role_assignments.valid_until) is distinct from (true, null)
     returning id`,
    [m.userId, role.id, m.organizationId],
  );
  const placed = await tx.query(
    `insert into user_organizations (user_id, organization_id, primary_role_id) values ($1::text::uuid, $2::text::uuid, $3::text::uuid)
     on conflict (user_id, organization_id) do update set primary_role_id = excluded.primary_role_id
       where user_organizations.primary_role_id is distinct from excluded.primary_role_id
     returning user_id`,
    [m.userId, m.organizationId, role.id],
  );
  return { id: m.userId, changed: assigned.length > 0 || placed.length > 0 || place?.primary !== role.id };
}

/** The place goes with the user's role assignments on the organization itself. */
async function removePlace(tx: SqlQuerier, m: { userId: string; organizationId: string }): Promise<DirectoryResult> {
  const gone = await tx.query("delete from user_organizations where user_id = $1::text::uuid and organization_id = $2::text::uuid returning user_id", [
    m.userId,
    m.organizationId,
  ]);
  const unassigned = await tx.query(
    `delete from role_assignments where subject_type = 'user' and subject_id = $1::text::uuid
        and scope_type = 'organization' and scope_id = $2::text::uuid returning id`,
    [m.userId, m.organizationId],
  );
  return { id: m.userId, changed: gone.length + unassigned.length > 0 };
}

export async function applyPlace(tx: SqlQuerier, m: DirectoryMutation, p: string): Promise<DirectoryResult> {
  switch (m.kind) {
    case "addUserToOrganization":
    case "setPrimaryRole":
      return setPlace(tx, m, p);
    case "removeUserFromOrganization":
      return removePlace(tx, m);
    default:
      throw refusal("INVALID_ARGUMENT", `${p} is not a directory change`);
  }
}

/** The organization must be the caller's; the role its organization's or global (the user is global vocabulary). */
export async function confinePlace(c: WriteConfinement, m: DirectoryMutation, p: string): Promise<void> {
  switch (m.kind) {
    case "addUserToOrganization":
    case "setPrimaryRole":
      await c.organization(m.organizationId, `${p}.organization_id: organization ${m.organizationId}`);
      if ("id" in m.primaryRole) return c.ownOrGlobal("roles", m.primaryRole.id, `${p}.primary_role: role ${m.primaryRole.id}`);
      if (m.primaryRole.organizationId !== null)
        return c.organization(m.primaryRole.organizationId, `${p}.primary_role: ${describeRef("role", m.primaryRole)}`);
      return;
    case "removeUserFromOrganization":
      return c.organization(m.organizationId, `${p}.organization_id: organization ${m.organizationId}`);
    default:
      return;
  }
}
