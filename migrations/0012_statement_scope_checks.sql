-- authz 0012: the organization rules of role assignments, grants and primary
-- roles checked once per statement instead of once per row.
--
-- The three BEFORE row triggers of 0001 (role_assignments_scope_in_role_organization,
-- role_permissions_same_organization, user_organizations_primary_role_organization)
-- ran a PL/pgSQL function and a roles lookup for every row written: about a
-- third of PostgreSQL's time per role assignment in a bulk import (authz
-- import, thousands of rows per statement). Here each becomes a pair of AFTER
-- statement triggers (one for INSERT, one for UPDATE: a trigger with a
-- transition table takes one event) that check the statement's new rows in
-- one query. The rules, the SQLSTATE (23514), the constraint names and the
-- messages are those of 0001; when several rows break a rule, the message
-- names the first of them in the statement's order. A statement that breaks
-- a rule is refused whole, as before. One order changes: a row that also
-- names a missing row (a foreign key) is now refused for that first.

drop trigger role_assignments_scope_in_role_organization on role_assignments;
drop trigger role_permissions_same_organization on role_permissions;
drop trigger user_organizations_primary_role_organization on user_organizations;

-- An organization's role applies only inside that organization: on the
-- organization itself or on one of its avatars.
create function authz_check_role_assignment_scopes() returns trigger
language plpgsql as $$
declare
  bad record;
begin
  select n.role_id, r.organization_id as role_org, n.scope_type, n.scope_id into bad
    from (select t.role_id, t.scope_type, t.scope_id, row_number() over () as ord from authz_new_rows t) n
    join roles r on r.id = n.role_id
   where r.organization_id is not null
     and r.organization_id is distinct from (case n.scope_type
           when 'organization' then n.scope_id
           when 'avatar' then (select v.organization_id from avatars v where v.id = n.scope_id)
         end)
   order by n.ord
   limit 1;
  if found then
    raise exception 'role % of organization % cannot be assigned on % %', bad.role_id, bad.role_org, bad.scope_type, coalesce(bad.scope_id::text, '')
      using errcode = '23514', constraint = 'role_assignments_scope_in_role_organization';
  end if;
  return null;
end $$;
create trigger role_assignments_scope_in_role_organization after insert on role_assignments
  referencing new table as authz_new_rows
  for each statement execute function authz_check_role_assignment_scopes();
create trigger role_assignments_scope_in_role_organization_update after update on role_assignments
  referencing new table as authz_new_rows
  for each statement execute function authz_check_role_assignment_scopes();

-- A role may hold only permissions of its own organization or global ones.
create function authz_check_role_permissions() returns trigger
language plpgsql as $$
declare
  bad record;
begin
  select n.role_id, n.permission_id into bad
    from (select t.role_id, t.permission_id, row_number() over () as ord from authz_new_rows t) n
    join permissions p on p.id = n.permission_id
    left join roles r on r.id = n.role_id
   where p.organization_id is not null
     and p.organization_id is distinct from r.organization_id
   order by n.ord
   limit 1;
  if found then
    raise exception 'role % cannot hold permission % of another organization', bad.role_id, bad.permission_id
      using errcode = '23514', constraint = 'role_permissions_same_organization';
  end if;
  return null;
end $$;
create trigger role_permissions_same_organization after insert on role_permissions
  referencing new table as authz_new_rows
  for each statement execute function authz_check_role_permissions();
create trigger role_permissions_same_organization_update after update on role_permissions
  referencing new table as authz_new_rows
  for each statement execute function authz_check_role_permissions();

-- A user's primary role in an organization belongs to that organization or is global.
create function authz_check_primary_roles() returns trigger
language plpgsql as $$
declare
  bad record;
begin
  select n.primary_role_id, n.organization_id into bad
    from (select t.primary_role_id, t.organization_id, row_number() over () as ord from authz_new_rows t) n
    join roles r on r.id = n.primary_role_id
   where r.organization_id is not null
     and r.organization_id <> n.organization_id
   order by n.ord
   limit 1;
  if found then
    raise exception 'role % is not a role of organization %', bad.primary_role_id, bad.organization_id
      using errcode = '23514', constraint = 'user_organizations_primary_role_organization';
  end if;
  return null;
end $$;
create trigger user_organizations_primary_role_organization after insert on user_organizations
  referencing new table as authz_new_rows
  for each statement execute function authz_check_primary_roles();
create trigger user_organizations_primary_role_organization_update after update on user_organizations
  referencing new table as authz_new_rows
  for each statement execute function authz_check_primary_roles();

-- The row functions of 0001 have no trigger left.
drop function authz_check_role_assignment_scope();
drop function authz_check_role_permission();
drop function authz_check_primary_role();
