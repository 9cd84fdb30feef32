-- authz 0002: the built-in avatar roles and the idempotency record of writes.

-- An active, accepted, unexpired membership of a principal in an avatar holds
-- avatar_member on that avatar; the owner membership also holds avatar_owner.
-- Both are ordinary global roles: grant them permissions, let them inherit,
-- like any other. They cannot be deleted or re-keyed.
insert into roles (id, organization_id, key, name, description) values
  ('00000000-0000-4000-8000-00000000a001', null, 'avatar_member', 'Avatar member',
   'Built-in: held on an avatar by each of its active, accepted, unexpired memberships'),
  ('00000000-0000-4000-8000-00000000a002', null, 'avatar_owner', 'Avatar owner',
   'Built-in: held on an avatar by its owner membership')
on conflict do nothing;

create function authz_protect_builtin_roles() returns trigger
language plpgsql as $$
begin
  if tg_op = 'DELETE' then
    raise exception 'built-in role % cannot be deleted', old.key
      using errcode = '23514', constraint = 'roles_builtin';
  end if;
  if new.key is distinct from old.key or new.organization_id is distinct from old.organization_id then
    raise exception 'built-in role % cannot be re-keyed or moved', old.key
      using errcode = '23514', constraint = 'roles_builtin';
  end if;
  return new;
end $$;
create trigger roles_builtin before update or delete on roles
  for each row when (old.id in ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-00000000a002'))
  execute function authz_protect_builtin_roles();

-- The first response to each idempotency key, so a retried write returns it
-- again instead of writing twice. Not part of the change log.
create table authz_idempotency (
  scope        text not null,
  key          text not null,
  request_hash text not null,
  response     jsonb not null,
  created_at   timestamptz not null default now(),
  primary key (scope, key)
);
create index authz_idempotency_created_idx on authz_idempotency (created_at);
