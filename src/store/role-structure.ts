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
  // The organization row is share-locked, so a switch of its role_structure (an update) waits for this write
  // or is seen by it; in a single-role organization the user's row is locked until commit, so two concurrent
  // writes cannot each find no other role and both assign one. A row lock, not an advisory lock per (user,
  // organization): advisory locks live in the shared lock table until commit, and a batch of 1,000 such
  // assignments took 1,000 of its entries (64 per connection by default).
  const [org] = await tx.query<{ role_structure: string }>("select role_structure from organizations where id = $1::text::uuid for share", [a.organizationId]);
  if (!org || org.role_structure !== "single_role_in_hierarchy") return;
  await tx.query("select 1 from users where id = $1::text::uuid for no key update", [a.userId]);
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

/** A user holding more than one organization-level role in a single_role_in_hierarchy organization. */
export interface SingleRoleViolation {
  userId: string;
  organizationId: string;
  /** The role keys it holds there, sorted. */
  keys: string[];
}

/** Organizations the current transaction changed or assigned organization-level roles in (from its change log). */
const CHANGED_ORGS = `select (coalesce(c.new_row, c.old_row)->>'scope_id')::uuid from authz_changes c
   where c.xid = pg_current_xact_id() and c.table_name = 'role_assignments' and coalesce(c.new_row, c.old_row)->>'scope_type' = 'organization'
  union select (c.new_row->>'id')::uuid from authz_changes c where c.xid = pg_current_xact_id() and c.table_name = 'organizations' and c.new_row is not null`;

/**
 * The rule's violations among one organization, among the organizations
 * this transaction touched ("changed", from its change log), or everywhere
 * ("all": a bulk import logs no rows); at most `limit`. The organizations are
 * settled first, once (a materialized set of the single-role ones), then
 * joined: as an \`in (...)\` over the change log the planner could re-read the
 * transaction's change rows for every assignment (quadratic: 13 of 18 s of a
 * 30,000-record import that logs its rows).
 */
export async function singleRoleViolations(tx: SqlQuerier, where: { organizationId: string } | "changed" | "all", limit = 5): Promise<SingleRoleViolation[]> {
  const orgs = where === "changed" ? CHANGED_ORGS : where === "all" ? "select id from organizations" : "select $1::text::uuid";
  const rows = await tx.query<{ user_id: string; org_id: string; keys: string[] }>(
    `with picked as materialized (${orgs}),
          single as materialized (
            select o.id from organizations o where o.role_structure = 'single_role_in_hierarchy' and o.id in (select * from picked))
     select ra.subject_id::text as user_id, ra.scope_id::text as org_id, array_agg(r.key order by r.key) as keys
       from single s join role_assignments ra on ra.scope_id = s.id join roles r on r.id = ra.role_id
      where ra.subject_type = 'user' and ra.scope_type = 'organization'
      group by ra.subject_id, ra.scope_id having count(*) > 1
      order by 2, 1 limit ${limit}`,
    typeof where === "string" ? [] : [where.organizationId],
  );
  return rows.map((r) => ({ userId: r.user_id, organizationId: r.org_id, keys: r.keys }));
}

export const describeViolation = (v: SingleRoleViolation): string =>
  `user ${v.userId} holds ${v.keys.length} roles ("${v.keys.join('", "')}") in single_role_in_hierarchy organization ${v.organizationId}`;

/** FAILED_PRECONDITION (SINGLE_ROLE) when an organization cannot become single_role_in_hierarchy as it stands. */
export async function mustHoldSingleRole(tx: SqlQuerier, organizationId: string, p: string): Promise<void> {
  const [v] = await singleRoleViolations(tx, { organizationId }, 1);
  if (v) throw refusal("FAILED_PRECONDITION", `${p}: ${describeViolation(v)}; remove the extra roles first`, "SINGLE_ROLE");
}
