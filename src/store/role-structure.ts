// The org_role_structure rule (docs/data-model.md, "Role structure"), shared
// by every writer that gives a user a role on an organization (ManageRoles,
// ManageDirectory, the importer): in a single_role_in_hierarchy organization
// a user holds one organization-level role; another is refused unless the
// write asks to replace it, and then the others go and the user's primary
// role there follows.

import type { SqlQuerier } from "./sql.js";
import { refusal } from "./write-pipeline.js";

/**
 * Before `roleId` is assigned to user `userId` on organization `orgId`:
 * nothing to do in a multi_role organization; in a single_role_in_hierarchy
 * one, FAILED_PRECONDITION (SINGLE_ROLE) naming the role it holds, or with
 * `replace` its other organization-level assignments there are deleted and
 * its place's primary role (when it has a place) becomes `roleId`.
 */
export async function enforceRoleStructure(
  tx: SqlQuerier,
  a: { userId: string; organizationId: string; roleId: string; replace: boolean },
  p: string,
): Promise<void> {
  const [org] = await tx.query<{ role_structure: string }>("select role_structure from organizations where id = $1::text::uuid", [a.organizationId]);
  if (!org || org.role_structure !== "single_role_in_hierarchy") return;
  const others = await tx.query<{ id: string; key: string }>(
    `select ra.id::text as id, r.key from role_assignments ra join roles r on r.id = ra.role_id
      where ra.subject_type = 'user' and ra.subject_id = $1::text::uuid
        and ra.scope_type = 'organization' and ra.scope_id = $2::text::uuid and ra.role_id <> $3::text::uuid
      order by r.key`,
    [a.userId, a.organizationId, a.roleId],
  );
  if (others.length === 0) return;
  if (!a.replace) {
    throw refusal(
      "FAILED_PRECONDITION",
      `${p}: organization ${a.organizationId} is single_role_in_hierarchy and user ${a.userId} already holds role "${others.map((o) => o.key).join('", "')}" there; set replace to swap it`,
      "SINGLE_ROLE",
    );
  }
  await tx.query("delete from role_assignments where id = any($1::text::uuid[])", [`{${others.map((o) => o.id).join(",")}}`]);
  await tx.query(
    `update user_organizations set primary_role_id = $3::text::uuid
      where user_id = $1::text::uuid and organization_id = $2::text::uuid and primary_role_id is distinct from $3::text::uuid`,
    [a.userId, a.organizationId, a.roleId],
  );
}
