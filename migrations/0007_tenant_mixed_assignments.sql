-- authz 0007: a role assignment whose subject belongs to one tenant and whose
-- scope to another (or to the global scope) is "mixed": it belongs to no
-- tenant, so no tenant-bound credential can create, change or delete it.
-- Before, such a row counted as the subject's tenant, which let a tenant-A
-- key grant its own principal a role on tenant B's organization or avatar.
-- The write path checks every reference before writing (src/tenancy.ts);
-- this is the database's backstop at commit, and the definition both use.

create or replace function authz_row_tenant(tbl text, r jsonb) returns uuid
language plpgsql stable as $$
declare
  gone constant uuid := '00000000-0000-0000-0000-000000000000';
  mixed constant uuid := 'ffffffff-ffff-4fff-bfff-ffffffffffff';
  org uuid;
  scope_tenant uuid;
  subject_tenant uuid;
begin
  case tbl
    when 'tenants' then return (r->>'id')::uuid;
    when 'organizations' then return (r->>'tenant_id')::uuid;
    when 'users', 'staff', 'rate_limit_policies' then return null;
    when 'accounts', 'avatars' then
      return coalesce((select tenant_id from organizations where id = (r->>'organization_id')::uuid), gone);
    when 'principals' then
      select a.organization_id into org from accounts a where a.id = (r->>'account_id')::uuid;
      return case when org is null then gone else authz_org_tenant(org) end;
    when 'memberships', 'ownership_transfers' then
      select v.organization_id into org from avatars v where v.id = (r->>'avatar_id')::uuid;
      return case when org is null then gone else authz_org_tenant(org) end;
    when 'roles', 'permissions' then
      return case when r->>'organization_id' is null then null else authz_org_tenant((r->>'organization_id')::uuid) end;
    when 'role_permissions', 'role_inheritance' then
      if not exists (select 1 from roles where id = (r->>'role_id')::uuid) then return gone; end if;
      select organization_id into org from roles where id = (r->>'role_id')::uuid;
      return case when org is null then null else authz_org_tenant(org) end;
    when 'user_organizations' then return authz_org_tenant((r->>'organization_id')::uuid);
    when 'rate_limit_assignments' then
      return case when r->>'org_id' is null then null else authz_org_tenant((r->>'org_id')::uuid) end;
    when 'role_assignments' then
      scope_tenant := case r->>'scope_type'
        when 'tenant' then (r->>'scope_id')::uuid
        when 'organization' then authz_org_tenant((r->>'scope_id')::uuid)
        when 'avatar' then (select authz_org_tenant(organization_id) from avatars where id = (r->>'scope_id')::uuid)
        else null end;
      subject_tenant := case r->>'subject_type'
        when 'account' then (select authz_org_tenant(organization_id) from accounts where id = (r->>'subject_id')::uuid)
        when 'principal' then (select authz_org_tenant(a.organization_id) from principals p join accounts a on a.id = p.account_id
                               where p.id = (r->>'subject_id')::uuid)
        else null end;
      -- A subject of a tenant holds grants only on that tenant's scopes: a
      -- grant whose subject and scope lie in different tenants (or on the
      -- global scope) belongs to no single tenant and to no tenant-bound caller.
      if subject_tenant is not null and subject_tenant is distinct from scope_tenant then return mixed; end if;
      return scope_tenant;
    else return null;
  end case;
end $$;
