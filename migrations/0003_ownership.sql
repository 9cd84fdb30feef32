-- authz 0003: avatar ownership (seed 003). Every active avatar has exactly one
-- active owner membership at every committed instant. The unique partial index
-- memberships_one_active_owner (0001) already forbids a second owner at any
-- moment; the deferred constraint trigger below forbids none at commit, so an
-- ownership move (clear the old owner, then set the new one) and an avatar
-- created together with its owner membership are each one transaction.
-- docs/ownership.md describes the TransferOwnership RPCs built on this.

-- Checks one avatar at commit: if it exists and is active, it has exactly one
-- membership with owner and active. Every write to memberships or avatars
-- takes the writers' lock on authz_revision (authz_record_change) and holds it
-- until commit, so the state this check reads cannot change before the commit
-- completes: two concurrent transactions cannot each pass the check and
-- together leave an avatar with no owner.
create function authz_check_avatar_owner() returns trigger
language plpgsql as $$
declare
  avatar_ids uuid[];
  avatar uuid;
  owners integer;
begin
  if tg_table_name = 'avatars' then
    avatar_ids := array[new.id];
  elsif tg_op = 'INSERT' then
    avatar_ids := array[new.avatar_id];
  elsif tg_op = 'DELETE' then
    avatar_ids := array[old.avatar_id];
  else
    -- A membership moved to another avatar affects both.
    avatar_ids := array[new.avatar_id, old.avatar_id];
  end if;
  foreach avatar in array avatar_ids loop
    -- A deleted or inactive avatar needs no owner.
    continue when not exists (select 1 from avatars a where a.id = avatar and a.active);
    select count(*) into owners from memberships m where m.avatar_id = avatar and m.owner and m.active;
    if owners <> 1 then
      raise exception 'active avatar % must have exactly one active owner membership, has %', avatar, owners
        using errcode = '23514', constraint = 'avatars_exactly_one_owner';
    end if;
  end loop;
  return null;
end $$;

create constraint trigger avatars_exactly_one_owner after insert or update or delete on memberships
  deferrable initially deferred
  for each row execute function authz_check_avatar_owner();

create constraint trigger avatars_exactly_one_owner after insert or update of active on avatars
  deferrable initially deferred
  for each row when (new.active)
  execute function authz_check_avatar_owner();

-- The rule holds for the data already present too; otherwise every later
-- change to such an avatar's memberships would fail at commit. Fix the data
-- (give each listed avatar one active owner membership, or deactivate it) and
-- start again.
do $$
declare
  bad text;
  n integer;
begin
  select count(*), string_agg(id::text, ', ' order by id) filter (where rn <= 20)
    into n, bad
    from (select a.id, row_number() over (order by a.id) as rn
            from avatars a
           where a.active
             and (select count(*) from memberships m where m.avatar_id = a.id and m.owner and m.active) <> 1) x;
  if n > 0 then
    raise exception 'cannot enforce avatars_exactly_one_owner: % active avatar(s) do not have exactly one active owner membership: %',
      n, bad || case when n > 20 then ', ...' else '' end
      using errcode = '23514', constraint = 'avatars_exactly_one_owner';
  end if;
end $$;

-- The expiry sweep looks for pending transfers whose time is up.
create index ownership_transfers_pending_expiry_idx on ownership_transfers (expires_at) where status = 'pending';
