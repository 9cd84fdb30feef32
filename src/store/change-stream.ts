// Reading the change log for Watch (docs/data-model.md, "Change log and
// notifications"; docs/watch.md). A reader walks the log by its key
// (revision, id): every numbered row once, in log order, and only up to a
// revision the change feed has seen handed out, below which nothing can be
// numbered any more. So it neither skips nor reorders, whatever happened to
// the notifications meanwhile.

import { AuthzError } from "../errors.js";
import type { SqlQuerier } from "./sql.js";

/** The tables the change log records (docs/data-model.md, "Tracked tables"). */
export const TRACKED_TABLES = [
  "tenants",
  "organizations",
  "users",
  "staff",
  "accounts",
  "principals",
  "avatars",
  "memberships",
  "ownership_transfers",
  "roles",
  "permissions",
  "role_permissions",
  "role_inheritance",
  "role_assignments",
  "user_organizations",
  "rate_limit_policies",
  "rate_limit_assignments",
] as const;
export type TrackedTable = (typeof TRACKED_TABLES)[number];

/** RELOAD: a bulk import's one row for everything it changed (migration 0009). */
export type ChangeOp = "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" | "RELOAD";

/** One row of the log, as Watch sends it. */
export interface LoggedChange {
  revision: bigint;
  /** authz_changes.id: the order within a revision. */
  id: bigint;
  table: string;
  op: ChangeOp;
  /** The row's "id", "*_id" and "*_type" columns, as text. */
  ids: Record<string, string>;
  /** The row's tenant (authz_row_tenant, read now); null when global, mixed or its parent is gone. */
  tenantId: string | null;
  /** The row's organization, read now; null when none. */
  organizationId: string | null;
}

/** Where a reader stands: after every row of `revision` (id undefined), or after the row (revision, id). */
export interface LogPosition {
  revision: bigint;
  id?: bigint | undefined;
}

const LAST_ID = "9223372036854775807";

const GONE = "00000000-0000-0000-0000-000000000000";
const MIXED = "ffffffff-ffff-4fff-bfff-ffffffffffff";

// The organization of a logged row, by the same paths as authz_row_tenant (migration 0007).
const ORGANIZATION_OF = `case c.table_name
    when 'organizations' then r->>'id'
    when 'accounts' then r->>'organization_id'
    when 'avatars' then r->>'organization_id'
    when 'roles' then r->>'organization_id'
    when 'permissions' then r->>'organization_id'
    when 'user_organizations' then r->>'organization_id'
    when 'rate_limit_assignments' then r->>'org_id'
    when 'principals' then (select a.organization_id::text from accounts a where a.id = (r->>'account_id')::uuid)
    when 'memberships' then (select v.organization_id::text from avatars v where v.id = (r->>'avatar_id')::uuid)
    when 'ownership_transfers' then (select v.organization_id::text from avatars v where v.id = (r->>'avatar_id')::uuid)
    when 'role_permissions' then (select o.organization_id::text from roles o where o.id = (r->>'role_id')::uuid)
    when 'role_inheritance' then (select o.organization_id::text from roles o where o.id = (r->>'role_id')::uuid)
    when 'role_assignments' then case r->>'scope_type'
      when 'organization' then r->>'scope_id'
      when 'avatar' then (select v.organization_id::text from avatars v where v.id = (r->>'scope_id')::uuid)
      end
    end`;

const ROWS = `select c.revision::text as revision, c.id::text as id, c.table_name, c.op,
       (select coalesce(jsonb_object_agg(k, v), '{}'::jsonb) from jsonb_each_text(r) as e(k, v)
         where (k = 'id' or k like '%\\_id' or k like '%\\_type') and v is not null) as ids,
       case when r is null then null else authz_row_tenant(c.table_name, r)::text end as tenant_id,
       ${ORGANIZATION_OF} as organization_id
  from authz_changes c, lateral (select coalesce(c.new_row, c.old_row) as r) as x
 where (c.revision, c.id) > ($1::text::bigint, $2::text::bigint) and c.revision <= $3::text::bigint
 order by c.revision, c.id
 limit $4::int`;

interface Row {
  [k: string]: unknown;
  revision: string;
  id: string;
  table_name: string;
  op: ChangeOp;
  ids: Record<string, string> | null;
  tenant_id: string | null;
  organization_id: string | null;
}

/**
 * The logged rows after `after`, up to revision `head`, at most `limit`, in
 * log order. FAILED_PRECONDITION (CHANGES_PRUNED) when the log no longer
 * holds the row that must come next.
 */
export async function readChanges(db: SqlQuerier, after: LogPosition, head: bigint, limit: number): Promise<LoggedChange[]> {
  if (head <= after.revision && after.id === undefined) return [];
  const rows = await db.query<Row>(ROWS, [after.revision.toString(), after.id?.toString() ?? LAST_ID, head.toString(), limit]);
  // Every revision has at least one row, so the row that comes next is in
  // this revision or the next one: anything later (or nothing, while later
  // revisions exist) means the log was pruned past this position.
  const first = rows[0];
  if (head > after.revision && (!first || BigInt(first.revision) > after.revision + 1n)) throw pruned(after.revision);
  // A hole further on (a log pruned by age alone, before retention kept to whole revisions) is a prune too.
  for (let i = 1; i < rows.length; i++) {
    const prev = BigInt((rows[i - 1] as Row).revision);
    if (BigInt((rows[i] as Row).revision) > prev + 1n) throw pruned(prev);
  }
  return rows.map((r) => ({
    revision: BigInt(r.revision),
    id: BigInt(r.id),
    table: r.table_name,
    op: r.op,
    ids: r.ids ?? {},
    tenantId: r.tenant_id === GONE || r.tenant_id === MIXED ? null : r.tenant_id,
    organizationId: r.organization_id,
  }));
}

function pruned(after: bigint): AuthzError {
  return new AuthzError(
    "FAILED_PRECONDITION",
    `the change log no longer holds the changes after revision ${after} (pruned by retention); reload the state and watch from its revision`,
    { reason: "CHANGES_PRUNED", metadata: { from_revision: after.toString() } },
  );
}
