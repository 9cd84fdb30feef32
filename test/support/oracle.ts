// A plain, independent reading of the Check rules as one recursive SQL query
// per chunk of checks. It shares no code with src/engine and is deliberately
// written for clarity, not cleverness: the property test compares the engine
// against it, so when they disagree this file must be obviously right.
//
// Rules, in precedence order (the first that applies is the reason):
//   1 SUBJECT_NOT_FOUND    2 RESOURCE_NOT_FOUND   3 PERMISSION_NOT_FOUND
//   4 SUBJECT_LOCKED / SUBJECT_DISABLED / ACCOUNT_INACTIVE / PRINCIPAL_INACTIVE /
//     NOT_ACCEPTED / PRINCIPAL_EXPIRED (the subject cannot act)
//   5 RESOURCE_INACTIVE    6 GRANTED or NO_GRANT
import type postgres from "postgres";

export interface OracleCheck {
  subjectType: string;
  subjectId: string;
  permission: string;
  resourceType: string;
  resourceId: string;
}

export interface OracleDecision {
  allowed: boolean;
  reason: string;
}

/** Checks per SQL statement. */
const CHUNK = 5000;

/**
 * Evaluates every check at time `now`, in one SQL statement per chunk of at
 * most 5000 checks; the answers come back in the order of `checks`. Ids that
 * are not UUIDs, and types that do not exist, are simply not found.
 */
export async function oracleCheck(sql: postgres.Sql, checks: ReadonlyArray<OracleCheck>, now: Date): Promise<OracleDecision[]> {
  const out: OracleDecision[] = [];
  for (let start = 0; start < checks.length; start += CHUNK) {
    const chunk = checks.slice(start, start + CHUNK);
    const rows = (await decide(sql, chunk, now)) as unknown as Array<{ reason: string }>;
    if (rows.length !== chunk.length) {
      throw new Error(`oracle: ${chunk.length} checks but ${rows.length} answers`);
    }
    for (const row of rows) out.push({ allowed: row.reason === "GRANTED", reason: row.reason });
  }
  return out;
}

function decide(sql: postgres.Sql, chunk: ReadonlyArray<OracleCheck>, now: Date) {
  return sql`
with recursive
-- The checks of this chunk, numbered in input order. They travel as one JSON
-- array (postgres.js serializes a text[] parameter wrongly on a connection's
-- first query). An id that is not a UUID becomes null here, so it matches
-- nothing, instead of failing the cast.
checks as (
  select c.ord, c.st as subject_type, c.p as permission_key, c.rt as resource_type,
         case when c.si ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              then c.si::uuid end as subject_id,
         case when c.ri ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              then c.ri::uuid end as resource_id
  from rows from (jsonb_to_recordset(${JSON.stringify(
    chunk.map((c) => ({ st: c.subjectType, si: c.subjectId, p: c.permission, rt: c.resourceType, ri: c.resourceId })),
  )}::text::jsonb) as (st text, si text, p text, rt text, ri text))
       with ordinality as c (st, si, p, rt, ri, ord)
),
now_ as (select ${now.toISOString()}::timestamptz as now),

-- Rules 1 and 4: every subject of every type, with the first reason (if any)
-- why it cannot act. A subject type missing from this list is not found.
subjects (subject_type, subject_id, cannot_act) as (
  -- user: locked, then disabled.
  select 'user', u.id,
         case when u.locked then 'SUBJECT_LOCKED'
              when not u.enabled then 'SUBJECT_DISABLED' end
  from users u
  union all
  -- account: inactive.
  select 'account', a.id,
         case when not a.active then 'ACCOUNT_INACTIVE' end
  from accounts a
  union all
  -- principal: inactive, not (yet) accepted, expired, its account inactive,
  -- then (for a user principal) that user locked or disabled. A staff
  -- principal has no further condition.
  select 'principal', p.id,
         case when not p.active then 'PRINCIPAL_INACTIVE'
              when p.accepted_at is null or p.accepted_at > n.now then 'NOT_ACCEPTED'
              when p.valid_until is not null and p.valid_until <= n.now then 'PRINCIPAL_EXPIRED'
              when not a.active then 'ACCOUNT_INACTIVE'
              when p.subject_type = 'user' and u.locked then 'SUBJECT_LOCKED'
              when p.subject_type = 'user' and not u.enabled then 'SUBJECT_DISABLED' end
  from principals p
  cross join now_ n
  join accounts a on a.id = p.account_id
  left join users u on p.subject_type = 'user' and u.id = p.subject_id
  union all
  -- staff: can always act.
  select 'staff', s.id, null::text
  from staff s
),

-- Rule 2: every resource, with its organization (for permission matching)
-- and whether it is active (rule 5). Only avatars can be inactive.
resources (resource_type, resource_id, organization_id, active) as (
  select 'tenant', t.id, null::uuid, true from tenants t
  union all
  select 'organization', o.id, o.id, true from organizations o
  union all
  select 'avatar', v.id, v.organization_id, v.active from avatars v
),

-- The ancestor set of each resource, plus the pseudo-ancestor 'global' that
-- every resource has (a global grant covers everything). Global scope has no
-- id; the nil UUID stands in for it here and in grants below so that plain
-- equality joins work.
ancestors (resource_type, resource_id, scope_type, scope_id) as (
  select r.resource_type, r.resource_id, anc.scope_type, anc.scope_id
  from resources r
  left join avatars v on r.resource_type = 'avatar' and v.id = r.resource_id
  left join organizations o on o.id = r.organization_id
  cross join lateral (values
    ('global', '00000000-0000-0000-0000-000000000000'::uuid),
    -- the resource itself
    (r.resource_type, r.resource_id),
    -- an avatar's organization
    ('organization', case when r.resource_type = 'avatar' then v.organization_id end),
    -- the tenant of the resource's organization (of the tenant itself: itself, already listed)
    ('tenant', case when r.resource_type <> 'tenant' then o.tenant_id end)
  ) as anc (scope_type, scope_id)
  where anc.scope_id is not null
),

-- Rule 3: the permission keys each resource can name: its organization's
-- permissions and the global ones (a tenant has no organization: global only).
resource_permission_keys (resource_type, resource_id, permission_key) as (
  select distinct r.resource_type, r.resource_id, p.key
  from resources r
  join permissions p on p.organization_id is null or p.organization_id = r.organization_id
),

-- Role closure: each role with itself and every role it inherits from,
-- transitively (role_id inherits parent_role_id's permissions).
closure (role_id, inherited_role_id) as (
  select id, id from roles
  union
  select c.role_id, ri.parent_role_id
  from closure c
  join role_inheritance ri on ri.role_id = c.inherited_role_id
),

-- Rule 6, the grant set: (holder subject, role, scope) for every subject.
-- An assignment counts only if active and not expired (valid_until > now).
live_assignments as (
  select ra.*
  from role_assignments ra cross join now_ n
  where ra.active and (ra.valid_until is null or ra.valid_until > n.now)
),
grants (subject_type, subject_id, role_id, scope_type, scope_id) as (
  -- users, accounts, staff and principals: their own assignments.
  select la.subject_type, la.subject_id, la.role_id, la.scope_type,
         coalesce(la.scope_id, '00000000-0000-0000-0000-000000000000'::uuid)
  from live_assignments la
  union all
  -- a principal: also its account's assignments.
  select 'principal', p.id, la.role_id, la.scope_type,
         coalesce(la.scope_id, '00000000-0000-0000-0000-000000000000'::uuid)
  from principals p
  join live_assignments la on la.subject_type = 'account' and la.subject_id = p.account_id
  union all
  -- a principal: each membership that is active, accepted (at or before now),
  -- unexpired (valid_until > now) and whose avatar is active holds the
  -- built-in avatar_member on that avatar, and if owner also avatar_owner.
  select 'principal', m.principal_id, b.role_id, 'avatar', m.avatar_id
  from memberships m
  cross join now_ n
  join avatars v on v.id = m.avatar_id
  cross join lateral (values
    ('00000000-0000-4000-8000-00000000a001'::uuid, true),     -- avatar_member
    ('00000000-0000-4000-8000-00000000a002'::uuid, m.owner)   -- avatar_owner
  ) as b (role_id, held)
  where b.held
    and m.active
    and m.accepted_at is not null and m.accepted_at <= n.now
    and (m.valid_until is null or m.valid_until > n.now)
    and v.active
),

-- What each grant allows: (holder, scope, permission key, permission's
-- organization) through the granted role or any role it inherits from.
grant_permissions (subject_type, subject_id, scope_type, scope_id, permission_key, permission_org) as (
  select distinct g.subject_type, g.subject_id, g.scope_type, g.scope_id, p.key, p.organization_id
  from grants g
  join closure c on c.role_id = g.role_id
  join role_permissions rp on rp.role_id = c.inherited_role_id
  join permissions p on p.id = rp.permission_id
),

-- Rule 6, decided: every (subject, resource, permission key) that some grant
-- allows. A grant covers a resource when its scope is global or one of the
-- resource's ancestors, and the granted permission must be *the matched*
-- one: the resource organization's permission with that key when the
-- organization defines one, otherwise the global permission with that key.
-- (Computed for all subjects, not per check: one hash join with the checks
-- then answers them all.)
allowed (subject_type, subject_id, resource_type, resource_id, permission_key) as (
  select distinct gp.subject_type, gp.subject_id, a.resource_type, a.resource_id, gp.permission_key
  from grant_permissions gp
  join ancestors a on a.scope_type = gp.scope_type and a.scope_id = gp.scope_id
  join resources r on r.resource_type = a.resource_type and r.resource_id = a.resource_id
  where gp.permission_org = r.organization_id
     or (gp.permission_org is null
         and not exists (select 1 from permissions own
                         where own.organization_id = r.organization_id and own.key = gp.permission_key))
)

-- The decision: the first rule that applies, in precedence order. Allowed
-- exactly when the reason is GRANTED.
select c.ord,
       case
         when s.subject_id is null then 'SUBJECT_NOT_FOUND'          -- rule 1
         when r.resource_id is null then 'RESOURCE_NOT_FOUND'        -- rule 2
         when k.permission_key is null then 'PERMISSION_NOT_FOUND'   -- rule 3
         when s.cannot_act is not null then s.cannot_act             -- rule 4
         when not r.active then 'RESOURCE_INACTIVE'                  -- rule 5
         when g.permission_key is not null then 'GRANTED'            -- rule 6
         else 'NO_GRANT'
       end as reason
from checks c
left join subjects s on s.subject_type = c.subject_type and s.subject_id = c.subject_id
left join resources r on r.resource_type = c.resource_type and r.resource_id = c.resource_id
left join resource_permission_keys k
  on k.resource_type = c.resource_type and k.resource_id = c.resource_id and k.permission_key = c.permission_key
left join allowed g
  on g.subject_type = c.subject_type and g.subject_id = c.subject_id
 and g.resource_type = c.resource_type and g.resource_id = c.resource_id
 and g.permission_key = c.permission_key
order by c.ord`;
}
