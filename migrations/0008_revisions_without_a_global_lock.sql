-- authz 0008: revisions without a global lock.
--
-- Before: a writing transaction took the authz_revision row lock at its first
-- tracked write and held it until commit, so every writer in the database
-- queued behind one row (~155 writes/s whatever the concurrency, while
-- Postgres itself commits thousands per second with group commit).
--
-- Now writers do not touch authz_revision. Each change row records the
-- writing transaction's id (xid) and no revision. A revision is handed out
-- after commit by authz_stamp(), which numbers the committed, not yet
-- numbered transactions, one revision each, under an advisory lock held only
-- by stampers, for one short statement. So:
--   * revisions stay gap-free and every committed write gets exactly one;
--   * a revision, once handed out, never changes and nothing is ever numbered
--     below it: replaying "revision > R" never misses a later commit;
--   * transactions are numbered in the order of their last change row (the
--     identity of authz_changes), which respects every dependency between
--     them: a transaction that waited for another's row lock, or read its
--     committed rows, wrote its changes after that one committed;
--   * unnumbered change rows (revision null) are invisible to replicas until
--     a stamp numbers them.
-- authz's own writers call authz_stamp(their xid) right after commit and
-- return that revision (read-your-writes). Writes from any other client send
-- NOTIFY authz_changes 'pending'; every replica's change feed then stamps.
--
-- Two rules that the global lock used to give for free now take their own,
-- narrow locks:
--   * expected_revision ("write only if nothing changed since R") needs no
--     other writer in flight: every tracked write takes a shared advisory
--     lock at its first change (authz_writer_lock_key), and a writer with a
--     precondition takes it exclusively;
--   * role inheritance cycles: a check for a cycle takes an advisory lock
--     per organization's role graph (cycles never cross organizations: an
--     organization's roles inherit only its own or global roles, global roles
--     only global ones), so two transactions cannot each add half a cycle.

alter table authz_changes alter column revision drop not null;
alter table authz_changes add column xid xid8 not null default pg_current_xact_id();
create index authz_changes_xid_idx on authz_changes (xid);
create index authz_changes_pending_idx on authz_changes (id) where revision is null;

-- The advisory lock every tracked writer holds (shared) from its first change to its end.
create function authz_writer_lock_key() returns bigint
language sql immutable as $$ select 7306354296385593601::bigint $$;

-- The advisory lock stampers take (one numbering at a time).
create function authz_stamp_lock_key() returns bigint
language sql immutable as $$ select 7306354296385593602::bigint $$;

-- The advisory lock of one organization's role graph (null: the global roles).
create function authz_lock_role_graph(org uuid) returns void
language sql as $$
  select pg_advisory_xact_lock(hashtextextended('authz:role-graph:' || coalesce(org::text, 'global'), 0))
$$;

create or replace function authz_record_change() returns trigger
language plpgsql as $$
begin
  if current_setting('authz.tx_open', true) is distinct from 'on' then
    perform pg_advisory_xact_lock_shared(authz_writer_lock_key());
    perform set_config('authz.tx_open', 'on', true);
    -- authz's own writers number their transaction themselves after commit.
    if current_setting('authz.self_stamp', true) is distinct from 'on' then
      perform pg_notify('authz_changes', 'pending');
    end if;
  end if;
  insert into authz_changes (revision, table_name, op, old_row, new_row)
  values (
    null, tg_table_name, tg_op,
    case when tg_op in ('UPDATE', 'DELETE') then to_jsonb(old) end,
    case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end
  );
  return null;
end $$;

-- Numbers every committed, unnumbered transaction (and, when called inside a
-- writing transaction, that transaction's own changes), in the order of
-- their last change row; notifies the new newest revision; returns the
-- revision of `tx` when given (null when it wrote nothing), else the newest.
create or replace function authz_stamp(tx xid8 default null) returns bigint
language plpgsql as $$
declare
  mine bigint;
  head bigint;
  numbered bigint;
begin
  if tx is not null then
    select revision into mine from authz_changes where xid = tx order by revision nulls first limit 1;
    if not found then return null; end if;          -- the transaction wrote nothing
    if mine is not null then return mine; end if;   -- already numbered
  elsif not exists (select 1 from authz_changes where revision is null) then
    select revision into head from authz_revision;
    return head;
  end if;
  -- One stamper at a time. An advisory lock, not the authz_revision row lock: waiting for
  -- it writes nothing, so a caller whose transaction the previous stamper numbered
  -- returns without a commit of its own to flush.
  perform pg_advisory_xact_lock(authz_stamp_lock_key());
  if tx is not null then
    select revision into mine from authz_changes where xid = tx limit 1;
    if mine is not null then return mine; end if;
  end if;
  select revision into head from authz_revision;
  with pending as (
    select xid, max(id) as last_id from authz_changes where revision is null group by xid
  ), numbers as (
    select xid, head + row_number() over (order by last_id) as rev from pending
  ), done as (
    update authz_changes c set revision = numbers.rev
      from numbers where c.xid = numbers.xid and c.revision is null
    returning numbers.rev
  )
  select coalesce(max(rev), head) into numbered from done;
  if numbered > head then
    update authz_revision set revision = numbered;
    perform pg_notify('authz_changes', numbered::text);
    head := numbered;
  end if;
  if tx is not null then
    select revision into mine from authz_changes where xid = tx limit 1;
    return mine;
  end if;
  return head;
end $$;

-- Called by a writer as the last statement before its commit: when no other
-- stamper is at work, the transaction numbers itself (and whatever committed
-- before it) now, so its commit is the only one to flush; otherwise it
-- returns null and the writer calls authz_stamp(its xid) after commit.
-- Safe: nothing can commit in between and need a lower number, because the
-- stamp lock is held until this commit, and a transaction that commits
-- meanwhile cannot have written anything this one read.
create function authz_try_stamp_self() returns bigint
language plpgsql as $$
begin
  if pg_current_xact_id_if_assigned() is null
     or not exists (select 1 from authz_changes where xid = pg_current_xact_id()) then
    return null;
  end if;
  if not pg_try_advisory_xact_lock(authz_stamp_lock_key()) then
    return null;
  end if;
  return authz_stamp(pg_current_xact_id());
end $$;

-- The rows this transaction changed, for the tenancy backstop.
create or replace function authz_assert_tenant(tenant uuid) returns void
language plpgsql as $$
declare
  c record;
  t uuid;
  me xid8 := pg_current_xact_id_if_assigned();
begin
  if me is null then return; end if;
  for c in select table_name, old_row, new_row from authz_changes where xid = me loop
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

-- The deferred inheritance check takes its organization's role-graph lock
-- first, so a concurrent transaction adding the other half of a cycle
-- commits (and is seen) before this check runs, or waits for this one.
create or replace function authz_check_role_inheritance() returns trigger
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
  perform authz_lock_role_graph(child_org);
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
