-- authz 0014: user_organization_info lists each role key once
-- (docs/data-model.md, UserOrganizationInfo). An organization role may share
-- its key with a global role it inherits, or a user may hold both on the
-- organization: the view of 0013 listed that key twice in
-- inherited_user_roles_plus_current_role or additional_roles, where the engine
-- (ListPermissions) lists it once, so ListOrganizationMembers and the export
-- disagreed with it. Same columns, same order; only those two arrays change.

create or replace view user_organization_info as
select
  uo.user_id,
  uo.organization_id as org_id,
  pr.key as user_role,
  o.slug as url_safe_org_name,
  o.role_structure as org_role_structure,
  array(
    select distinct r.key from role_closure c join roles r on r.id = c.inherited_role_id
    where c.role_id = uo.primary_role_id order by r.key
  ) as inherited_user_roles_plus_current_role,
  array(
    select distinct p.key
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
    order by p.key
  ) as user_permissions,
  array(
    select distinct r.key
    from role_assignments ra join roles r on r.id = ra.role_id
    where ra.subject_type = 'user' and ra.subject_id = uo.user_id
      and ra.scope_type = 'organization' and ra.scope_id = uo.organization_id
      and ra.active and (ra.valid_until is null or ra.valid_until > now())
      and ra.role_id is distinct from uo.primary_role_id
    order by r.key
  ) as additional_roles
from user_organizations uo
join organizations o on o.id = uo.organization_id
left join roles pr on pr.id = uo.primary_role_id;
