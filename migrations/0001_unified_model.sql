-- authz 0001: the unified data model of seed 000 (users, organizations, roles,
-- permissions, rate limits) and seed 003 (tenants, accounts, principals,
-- avatars, memberships, ownership transfers, capabilities, role assignments),
-- with a change log and NOTIFY so every replica's cache follows every write.
-- docs/data-model.md maps each seed field to its column here.

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- Keeps updated_at current on every update that changes something and does
-- not set updated_at itself. Trigger arguments name generated columns, which
-- are not yet computed in a BEFORE trigger and must not count as changes. An
-- update that changes nothing stays a no-op (and is not logged).
create function authz_touch_updated_at() returns trigger
language plpgsql as $$
declare
  ignored text[] := array['updated_at'] || tg_argv;
begin
  if new.updated_at is not distinct from old.updated_at
     and (to_jsonb(new) - ignored) is distinct from (to_jsonb(old) - ignored) then
    new.updated_at := now();
  end if;
  return new;
end $$;

-- ---------------------------------------------------------------------------
-- Tenancy and identities (seed 003 + seed 000 User/Organization)
-- ---------------------------------------------------------------------------

create table tenants (
  id         uuid primary key default gen_random_uuid(),
  name       text not null,
  slug       text not null unique,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table organizations (
  id             uuid primary key default gen_random_uuid(),          -- Organization.org_id, ORGANIZATION.id
  tenant_id      uuid references tenants (id) on delete cascade,      -- ORGANIZATION.tenant_id (null: no tenant)
  name           text not null,                                        -- Organization.org_name, ORGANIZATION.name
  slug           text,                                                 -- ORGANIZATION.slug, UserOrganizationInfo.url_safe_org_name
  metadata       jsonb not null default '{}'::jsonb,                   -- Organization.org_metadata
  role_structure text not null default 'single_role_in_hierarchy'      -- UserOrganizationInfo.org_role_structure
                 check (role_structure in ('single_role_in_hierarchy', 'multi_role')),
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  constraint organizations_slug_format check (slug is null or slug ~ '^[a-z0-9][a-z0-9._-]*$')
);
create unique index organizations_tenant_slug_key
  on organizations (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), slug)
  where slug is not null;
create index organizations_tenant_id_idx on organizations (tenant_id);

create table users (
  id                       uuid primary key default gen_random_uuid(), -- User.user_id, USER.id
  logical_key              text unique,                                 -- USER.logical_key
  legacy_user_id           text,
  email                    text,
  email_confirmed          boolean not null default false,
  username                 text,
  first_name               text,
  last_name                text,
  picture_url              text,
  properties               jsonb not null default '{}'::jsonb,
  has_password             boolean not null default false,
  update_password_required boolean not null default false,
  locked                   boolean not null default false,
  enabled                  boolean not null default true,
  mfa_enabled              boolean not null default false,
  can_create_orgs          boolean not null default false,
  created_at               timestamptz not null default now(),         -- User.created_at (epoch seconds in the seed)
  last_active_at           timestamptz,                                 -- User.last_active_at (epoch seconds in the seed)
  updated_at               timestamptz not null default now()
);

create table staff (
  id          uuid primary key default gen_random_uuid(),
  logical_key text not null unique,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

create table accounts (
  id              uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations (id) on delete cascade,
  email           text,
  active          boolean not null default true,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
);
create index accounts_organization_id_idx on accounts (organization_id);

-- A principal is an identity (a user or a staff member) inside an account.
-- subject_type/subject_id are the seed's polymorphic pair; the generated
-- user_id/staff_id columns give them real foreign keys.
create table principals (
  id              uuid primary key default gen_random_uuid(),
  account_id      uuid not null references accounts (id) on delete cascade,
  subject_type    text not null check (subject_type in ('user', 'staff')),
  subject_id      uuid not null,
  user_id         uuid generated always as (case when subject_type = 'user' then subject_id end) stored
                  references users (id) on delete cascade,
  staff_id        uuid generated always as (case when subject_type = 'staff' then subject_id end) stored
                  references staff (id) on delete cascade,
  identity_id     uuid,
  region          text,
  personality_key text,
  active          boolean not null default true,
  accepted_at     timestamptz,
  valid_until     timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
);
create index principals_account_id_idx on principals (account_id);
create index principals_subject_idx on principals (subject_type, subject_id);

create table avatars (
  id              uuid primary key default gen_random_uuid(),
  organization_id uuid not null references organizations (id) on delete cascade,
  handle          text not null,
  active          boolean not null default true,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint avatars_organization_handle_key unique (organization_id, handle)
);

create table memberships (
  id           uuid primary key default gen_random_uuid(),
  principal_id uuid not null references principals (id) on delete cascade,
  avatar_id    uuid not null references avatars (id) on delete cascade,
  owner        boolean not null default false,
  active       boolean not null default true,
  accepted_at  timestamptz,
  valid_until  timestamptz,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  constraint memberships_principal_avatar_key unique (principal_id, avatar_id)
);
create index memberships_avatar_id_idx on memberships (avatar_id);
-- At most one active owner membership per avatar.
create unique index memberships_one_active_owner on memberships (avatar_id) where owner and active;

create table ownership_transfers (
  id                 uuid primary key default gen_random_uuid(),
  avatar_id          uuid not null references avatars (id) on delete cascade,
  from_membership_id uuid not null references memberships (id),
  to_membership_id   uuid not null references memberships (id),
  status             text not null
                     check (status in ('pending', 'completed', 'declined', 'cancelled', 'expired')),
  occurred_at        timestamptz,
  created_at         timestamptz not null default now(),
  expires_at         timestamptz,
  idempotency_key    text,
  updated_at         timestamptz not null default now(),
  constraint ownership_transfers_distinct_memberships check (from_membership_id <> to_membership_id),
  constraint ownership_transfers_idempotency_key unique (avatar_id, idempotency_key)
);
create index ownership_transfers_avatar_created_idx on ownership_transfers (avatar_id, created_at desc, id desc);
-- At most one pending transfer per avatar.
create unique index ownership_transfers_one_pending on ownership_transfers (avatar_id) where status = 'pending';

-- ---------------------------------------------------------------------------
-- Roles and permissions (seed 000 Role/Permission/RolePermission/
-- RoleInheritance/UserRole + seed 003 ROLE/CAPABILITY/ROLE_PERMISSION/
-- ROLE_ASSIGNMENT). organization_id null = a global role or permission.
-- ---------------------------------------------------------------------------

create table roles (
  id              uuid primary key default gen_random_uuid(),          -- Role.role_id, ROLE.id
  organization_id uuid references organizations (id) on delete cascade, -- Role.org_id
  key             text not null check (key ~ '^[A-Za-z0-9._:-]{1,128}$'),
  name            text not null,
  description     text,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint roles_organization_key unique nulls not distinct (organization_id, key)
);

create table permissions (
  id              uuid primary key default gen_random_uuid(),          -- Permission.permission_id
  organization_id uuid references organizations (id) on delete cascade, -- Permission.org_id
  key             text not null check (key ~ '^[A-Za-z0-9._:-]{1,128}$'), -- Permission.name, CAPABILITY.key
  description     text,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint permissions_organization_key unique nulls not distinct (organization_id, key)
);

create table role_permissions (
  id            uuid primary key default gen_random_uuid(),            -- ROLE_PERMISSION.id
  role_id       uuid not null references roles (id) on delete cascade,
  permission_id uuid not null references permissions (id) on delete cascade,
  created_at    timestamptz not null default now(),
  constraint role_permissions_role_permission_key unique (role_id, permission_id)
);
create index role_permissions_permission_id_idx on role_permissions (permission_id);

-- (role_id, parent_role_id): role_id inherits every permission of parent_role_id.
create table role_inheritance (
  role_id        uuid not null references roles (id) on delete cascade,
  parent_role_id uuid not null references roles (id) on delete cascade,
  created_at     timestamptz not null default now(),
  primary key (role_id, parent_role_id),
  constraint role_inheritance_not_self check (role_id <> parent_role_id)
);
create index role_inheritance_parent_idx on role_inheritance (parent_role_id);

-- A role assignment grants a role to a subject on a scope. The polymorphic
-- (subject_type, subject_id) and (scope_type, scope_id) pairs get real foreign
-- keys through generated columns.
create table role_assignments (
  id              uuid primary key default gen_random_uuid(),          -- ROLE_ASSIGNMENT.id
  subject_type    text not null check (subject_type in ('user', 'account', 'principal', 'staff')),
  subject_id      uuid not null,
  user_id         uuid generated always as (case when subject_type = 'user' then subject_id end) stored
                  references users (id) on delete cascade,               -- UserRole.user_id
  account_id      uuid generated always as (case when subject_type = 'account' then subject_id end) stored
                  references accounts (id) on delete cascade,            -- ROLE_ASSIGNMENT.account_id
  principal_id    uuid generated always as (case when subject_type = 'principal' then subject_id end) stored
                  references principals (id) on delete cascade,
  staff_id        uuid generated always as (case when subject_type = 'staff' then subject_id end) stored
                  references staff (id) on delete cascade,
  role_id         uuid not null references roles (id) on delete cascade,
  scope_type      text not null check (scope_type in ('global', 'tenant', 'organization', 'avatar')),
  scope_id        uuid,
  tenant_scope_id uuid generated always as (case when scope_type = 'tenant' then scope_id end) stored
                  references tenants (id) on delete cascade,
  organization_scope_id uuid generated always as (case when scope_type = 'organization' then scope_id end) stored
                  references organizations (id) on delete cascade,
  avatar_scope_id uuid generated always as (case when scope_type = 'avatar' then scope_id end) stored
                  references avatars (id) on delete cascade,
  active          boolean not null default true,
  assigned_at     timestamptz not null default now(),                   -- UserRole.assigned_at
  valid_until     timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint role_assignments_scope_id check ((scope_type = 'global') = (scope_id is null)),
  constraint role_assignments_unique unique nulls not distinct (subject_type, subject_id, role_id, scope_type, scope_id)
);
create index role_assignments_subject_idx on role_assignments (subject_type, subject_id);
create index role_assignments_role_idx on role_assignments (role_id);
create index role_assignments_scope_idx on role_assignments (scope_type, scope_id);

-- Seed 000 UserOrganizationInfo: a user's membership in an organization and
-- its primary role (user_role). The derived fields are computed by the
-- user_organization_info view below.
create table user_organizations (
  user_id         uuid not null references users (id) on delete cascade,
  organization_id uuid not null references organizations (id) on delete cascade,
  primary_role_id uuid references roles (id) on delete set null,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (user_id, organization_id)
);
create index user_organizations_organization_idx on user_organizations (organization_id);

-- ---------------------------------------------------------------------------
-- Rate limits (seed 000 RateLimitPolicy/RateLimitAssignment/RateLimitCounter)
-- ---------------------------------------------------------------------------

create table rate_limit_policies (
  id           integer generated by default as identity primary key,   -- RateLimitPolicy.policy_id
  name         text not null unique,
  scope        text not null check (scope in ('user', 'organization', 'key', 'global')),
  limit_count  integer not null check (limit_count > 0),
  window_sec   integer not null check (window_sec > 0),
  description  text,
  algorithm    text not null default 'fixed_window'
               check (algorithm in ('fixed_window', 'sliding_window', 'token_bucket')),
  failure_mode text not null default 'open' check (failure_mode in ('open', 'closed')),
  shadow       boolean not null default false,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);

create table rate_limit_assignments (
  id         bigint generated by default as identity primary key,
  policy_id  integer not null references rate_limit_policies (id) on delete cascade,
  user_id    uuid references users (id) on delete cascade,
  org_id     uuid references organizations (id) on delete cascade,
  created_at timestamptz not null default now(),
  constraint rate_limit_assignments_one_target check (num_nonnulls(user_id, org_id) = 1),
  constraint rate_limit_assignments_unique unique nulls not distinct (policy_id, user_id, org_id)
);

-- Durable copy of a counter (the live counters are in Redis or in process);
-- both seed variants are merged: exactly one of key_id, user_id, org_id.
create table rate_limit_counters (
  id           bigint generated by default as identity primary key,
  policy_id    integer not null references rate_limit_policies (id) on delete cascade,
  key_id       text,
  user_id      uuid references users (id) on delete cascade,
  org_id       uuid references organizations (id) on delete cascade,
  window_start timestamptz not null,
  count        integer not null default 0 check (count >= 0),
  last_updated timestamptz not null default now(),
  constraint rate_limit_counters_one_target check (num_nonnulls(key_id, user_id, org_id) = 1),
  constraint rate_limit_counters_unique unique nulls not distinct (policy_id, key_id, user_id, org_id, window_start)
);

-- ---------------------------------------------------------------------------
-- Invariants that need more than a column constraint
-- ---------------------------------------------------------------------------

-- A role or permission never moves between organizations: grants,
-- inheritance edges and assignments were checked against its organization.
create function authz_freeze_organization() returns trigger
language plpgsql as $$
begin
  if new.organization_id is distinct from old.organization_id then
    raise exception '% % cannot move to another organization', tg_table_name, old.id
      using errcode = '23514', constraint = tg_table_name || '_organization_fixed';
  end if;
  return new;
end $$;
create trigger roles_organization_fixed before update of organization_id on roles
  for each row execute function authz_freeze_organization();
create trigger permissions_organization_fixed before update of organization_id on permissions
  for each row execute function authz_freeze_organization();

-- A role may hold only permissions of its own organization or global ones.
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

-- Inheritance stays within one organization or reaches up to global roles, and
-- never forms a cycle. The check is deferred to commit, when the transaction
-- holds the revision lock (see authz_record_change), so two concurrent
-- transactions cannot each add half of a cycle.
create function authz_check_role_inheritance() returns trigger
language plpgsql as $$
declare
  child_org  uuid;
  parent_org uuid;
begin
  if not exists (select 1 from role_inheritance where role_id = new.role_id and parent_role_id = new.parent_role_id) then
    return null; -- the edge was removed again before commit
  end if;
  select organization_id into child_org from roles where id = new.role_id;
  select organization_id into parent_org from roles where id = new.parent_role_id;
  if parent_org is not null and parent_org is distinct from child_org then
    raise exception 'role % cannot inherit role % of another organization', new.role_id, new.parent_role_id
      using errcode = '23514', constraint = 'role_inheritance_same_organization';
  end if;
  if exists (
    with recursive reach(id) as (
      select ri.parent_role_id from role_inheritance ri where ri.role_id = new.parent_role_id
      union
      select ri.parent_role_id from role_inheritance ri join reach on ri.role_id = reach.id
    )
    select 1 from reach where id = new.role_id
  ) then
    raise exception 'role inheritance % -> % would form a cycle', new.role_id, new.parent_role_id
      using errcode = '23514', constraint = 'role_inheritance_acyclic';
  end if;
  return null;
end $$;
create constraint trigger role_inheritance_valid after insert or update on role_inheritance
  deferrable initially deferred
  for each row execute function authz_check_role_inheritance();

-- An organization's role applies only inside that organization: on the
-- organization itself or on one of its avatars.
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

-- A user's primary role in an organization belongs to that organization or is global.
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

-- ---------------------------------------------------------------------------
-- Change log: every committed write to a table that affects a decision gets a
-- revision. Revisions are handed out under a row lock on authz_revision that
-- the writing transaction holds until it commits, so revisions follow commit
-- order: once revision R is visible, every revision below R is visible too.
-- A replica that has applied revision R replays `revision > R` and misses
-- nothing. NOTIFY (delivered on commit) carries the new revision.
-- ---------------------------------------------------------------------------

create table authz_revision (
  singleton boolean primary key default true check (singleton),
  revision  bigint not null
);
insert into authz_revision (singleton, revision) values (true, 0);

create table authz_changes (
  id         bigint generated always as identity primary key,
  revision   bigint not null,
  table_name text not null,
  op         text not null check (op in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
  old_row    jsonb,
  new_row    jsonb,
  changed_at timestamptz not null default clock_timestamp()
);
create index authz_changes_revision_idx on authz_changes (revision);

create function authz_record_change() returns trigger
language plpgsql as $$
declare
  rev bigint := nullif(current_setting('authz.tx_revision', true), '')::bigint;
begin
  if rev is null then
    update authz_revision set revision = revision + 1 returning revision into rev;
    perform set_config('authz.tx_revision', rev::text, true);
  end if;
  insert into authz_changes (revision, table_name, op, old_row, new_row)
  values (
    rev, tg_table_name, tg_op,
    case when tg_op in ('UPDATE', 'DELETE') then to_jsonb(old) end,
    case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end
  );
  perform pg_notify('authz_changes', rev::text);
  return null;
end $$;

do $$
declare
  t text;
begin
  foreach t in array array[
    'tenants', 'organizations', 'users', 'staff', 'accounts', 'principals', 'avatars',
    'memberships', 'ownership_transfers', 'roles', 'permissions', 'role_permissions',
    'role_inheritance', 'role_assignments', 'user_organizations',
    'rate_limit_policies', 'rate_limit_assignments'
  ] loop
    execute format('create trigger %I after insert or delete on %I for each row execute function authz_record_change()',
                   t || '_change_log_write', t);
    execute format('create trigger %I after update on %I for each row when (old.* is distinct from new.*) execute function authz_record_change()',
                   t || '_change_log_update', t);
    execute format('create trigger %I after truncate on %I for each statement execute function authz_record_change()',
                   t || '_change_log_truncate', t);
    if exists (select 1 from information_schema.columns
               where table_schema = current_schema() and table_name = t and column_name = 'updated_at') then
      execute format('create trigger %I before update on %I for each row execute function authz_touch_updated_at(%s)',
                     t || '_touch_updated_at', t,
                     coalesce((select string_agg(quote_literal(column_name), ', ' order by column_name)
                               from information_schema.columns
                               where table_schema = current_schema() and table_name = t and is_generated = 'ALWAYS'), ''));
    end if;
  end loop;
end $$;

-- ---------------------------------------------------------------------------
-- Seed 000 UserOrganizationInfo, computed from the tables: a plain recursive
-- SQL reading of the rules, also used as a reference to test the engine.
-- ---------------------------------------------------------------------------

create view role_closure as
with recursive closure (role_id, inherited_role_id) as (
  select id, id from roles
  union
  select c.role_id, ri.parent_role_id
  from closure c join role_inheritance ri on ri.role_id = c.inherited_role_id
)
select role_id, inherited_role_id from closure;

create view user_organization_info as
select
  uo.user_id,
  uo.organization_id as org_id,
  pr.key as user_role,
  o.slug as url_safe_org_name,
  o.role_structure as org_role_structure,
  array(
    select r.key from role_closure c join roles r on r.id = c.inherited_role_id
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
    order by p.key
  ) as user_permissions,
  array(
    select r.key
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
