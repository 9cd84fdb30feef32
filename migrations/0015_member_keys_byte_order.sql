-- authz 0015: user_organization_info sorts its key arrays byte-wise
-- (collate "C"), as the engine sorts keys (docs/data-model.md,
-- UserOrganizationInfo: "in key order"), whatever the database's collation.
-- On a database with a language's collation the view of 0014 ordered "a-z"
-- before "B.y" where ListPermissions orders "B.y" first. Keys are ASCII
-- (^[A-Za-z0-9._:-]+$), so byte order is the engine's code-unit order.
-- Same columns, same order, same contents.

create or replace view user_organization_info as
select
  uo.user_id,
  uo.organization_id as org_id,
  pr.key as user_role,
  o.slug as url_safe_org_name,
  o.role_structure as org_role_structure,
  array(
    select d.k from (
      select distinct r.key as k from role_closure c join roles r on r.id = c.inherited_role_id
      where c.role_id = uo.primary_role_id
    ) d order by d.k collate "C"
  ) as inherited_user_roles_plus_current_role,
  array(
    select d.k from (
      select distinct p.key as k
      from role_assignments ra
      join role_closure c on c.role_id = ra.role_id
      join role_permissions rp on rp.role_id = c.inherited_role_id
      join permissions p on p.id = rp.permission_id
      where ra.subject_type = 'user' and ra.subject_id = uo.user_id
        and ra.scope_type = 'organization' and ra.scope_id = uo.organization_id
        and ra.active and (ra.valid_until is null or ra.valid_until > now())
        and (p.organization_id = uo.organization_id
             or (p.organization_id is null
                 and not exists (select 1 from permissions op
                                  where op.organization_id = uo.organization_id and op.key = p.key)))
    ) d order by d.k collate "C"
  ) as user_permissions,
  array(
    select d.k from (
      select distinct r.key as k
      from role_assignments ra join roles r on r.id = ra.role_id
      where ra.subject_type = 'user' and ra.subject_id = uo.user_id
        and ra.scope_type = 'organization' and ra.scope_id = uo.organization_id
        and ra.active and (ra.valid_until is null or ra.valid_until > now())
        and ra.role_id is distinct from uo.primary_role_id
    ) d order by d.k collate "C"
  ) as additional_roles
from user_organizations uo
join organizations o on o.id = uo.organization_id
left join roles pr on pr.id = uo.primary_role_id;
