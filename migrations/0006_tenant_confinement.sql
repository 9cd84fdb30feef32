-- authz 0006: which tenant a row belongs to, and a check that a transaction
-- only wrote rows of one tenant. Credentials bound to a tenant run every write
-- through authz_assert_tenant() before commit, so their confinement is
-- enforced by the database on exactly what the transaction changed (the
-- change log), whatever code path did the writing.

-- The tenant of an organization / avatar / account / principal / role /
-- permission id; null when it has none (global).
create function authz_org_tenant(org uuid) returns uuid
language sql stable as $$ select tenant_id from organizations where id = org $$;

-- The tenant a changed row belongs to. null = global data (no tenant).
-- '00000000-0000-0000-0000-000000000000' = its parent was deleted in the same
-- transaction (that parent's own change row is checked instead).
create function authz_row_tenant(tbl text, r jsonb) returns uuid
language plpgsql stable as $$
declare
  gone constant uuid := '00000000-0000-0000-0000-000000000000';
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
      if subject_tenant is not null and subject_tenant is distinct from scope_tenant then return subject_tenant; end if;
      return scope_tenant;
    else return null;
  end case;
end $$;

-- Raises insufficient_privilege unless every row this transaction changed
-- (before and after images) belongs to `tenant`.
create function authz_assert_tenant(tenant uuid) returns void
language plpgsql as $$
declare
  rev bigint := nullif(current_setting('authz.tx_revision', true), '')::bigint;
  c record;
  t uuid;
begin
  if rev is null then return; end if;
  for c in select table_name, old_row, new_row from authz_changes where revision = rev loop
    foreach t in array array[
      case when c.old_row is null then tenant else authz_row_tenant(c.table_name, c.old_row) end,
      case when c.new_row is null then tenant else authz_row_tenant(c.table_name, c.new_row) end
    ] loop
      if t is distinct from tenant and t is distinct from '00000000-0000-0000-0000-000000000000'::uuid then
        raise exception 'this credential is bound to tenant % and cannot change % outside it', tenant, c.table_name
          using errcode = '42501', constraint = 'tenant_confinement';
      end if;
    end loop;
  end loop;
end $$;
