-- For scripts/import-ab.mjs: main's schema before migration 0012 in A's database
-- (AB_A_SQL="$(cat scripts/import-ab-row-triggers.sql)"): the row triggers of 0001 back in place
-- of 0012's statement triggers, so main's importer runs against the schema it shipped with.
drop trigger role_assignments_scope_in_role_organization on role_assignments;
drop trigger role_assignments_scope_in_role_organization_update on role_assignments;
drop trigger role_permissions_same_organization on role_permissions;
drop trigger role_permissions_same_organization_update on role_permissions;
drop trigger user_organizations_primary_role_organization on user_organizations;
drop trigger user_organizations_primary_role_organization_update on user_organizations;
create function authz_check_role_permission() returns trigger
language plpgsql as $$
declare
  role_org uuid;
  perm_org uuid;
begin
  select organization_id into role_org from roles where id = new.role_id;
  select organization_id into perm_org from permissions where id = new.permission_id;
  if perm_org is not null and perm_org is distinct from role_org then
    raise exception 'role % cannot hold permission % of another organization', new.role_id, new.permission_id
      using errcode = '23514', constraint = 'role_permissions_same_organization';
  end if;
  return new;
end $$;
create trigger role_permissions_same_organization before insert or update on role_permissions
  for each row execute function authz_check_role_permission();
create function authz_check_role_assignment_scope() returns trigger
language plpgsql as $$
declare
  role_org  uuid;
  scope_org uuid;
begin
  select organization_id into role_org from roles where id = new.role_id;
  if role_org is null then
    return new;
  end if;
  if new.scope_type = 'organization' then
    scope_org := new.scope_id;
  elsif new.scope_type = 'avatar' then
    select organization_id into scope_org from avatars where id = new.scope_id;
  end if;
  if scope_org is distinct from role_org then
    raise exception 'role % of organization % cannot be assigned on % %', new.role_id, role_org, new.scope_type, coalesce(new.scope_id::text, '')
      using errcode = '23514', constraint = 'role_assignments_scope_in_role_organization';
  end if;
  return new;
end $$;
create trigger role_assignments_scope_in_role_organization before insert or update on role_assignments
  for each row execute function authz_check_role_assignment_scope();
create function authz_check_primary_role() returns trigger
language plpgsql as $$
declare
  role_org uuid;
begin
  if new.primary_role_id is null then
    return new;
  end if;
  select organization_id into role_org from roles where id = new.primary_role_id;
  if role_org is not null and role_org <> new.organization_id then
    raise exception 'role % is not a role of organization %', new.primary_role_id, new.organization_id
      using errcode = '23514', constraint = 'user_organizations_primary_role_organization';
  end if;
  return new;
end $$;
create trigger user_organizations_primary_role_organization before insert or update on user_organizations
  for each row execute function authz_check_primary_role();
