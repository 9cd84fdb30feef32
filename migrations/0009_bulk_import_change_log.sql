-- authz 0009: a bulk import logs one change row, not one per row.
--
-- A large import (authz import) writes hundreds of thousands of rows. Logging
-- each of them (one jsonb row per changed row) doubled the work of the import
-- and sent every replica a backlog it then replaced by a snapshot reload
-- anyway (above 200,000 change rows). Now such an import sets
-- authz.bulk_log = 'on' for its transaction: the row triggers still take the
-- writers' shared lock, but log nothing; instead the import logs one row with
-- op 'RELOAD' (authz_log_reload), which tells every replica to load a fresh
-- snapshot at that revision instead of replaying rows (docs/data-model.md,
-- "Change log and notifications"). An import that changes nothing logs
-- nothing and takes no revision.

alter table authz_changes drop constraint authz_changes_op_check;
alter table authz_changes add constraint authz_changes_op_check
  check (op in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'RELOAD'));

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
  -- A bulk import logs one RELOAD row for the whole transaction (authz_log_reload).
  if current_setting('authz.bulk_log', true) = 'on' then
    return null;
  end if;
  insert into authz_changes (revision, table_name, op, old_row, new_row)
  values (
    null, tg_table_name, tg_op,
    case when tg_op in ('UPDATE', 'DELETE') then to_jsonb(old) end,
    case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end
  );
  return null;
end $$;

-- The row triggers skip a bulk import's rows in their WHEN clause, so no
-- PL/pgSQL function runs per imported row (about 4 µs a row). A bulk import
-- therefore takes the writers' shared lock itself, before its first change
-- (authz_bulk_begin).
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
    execute format('drop trigger %I on %I', t || '_change_log_write', t);
    execute format('drop trigger %I on %I', t || '_change_log_update', t);
    execute format('create trigger %I after insert or delete on %I for each row
                      when (current_setting(''authz.bulk_log'', true) is distinct from ''on'')
                      execute function authz_record_change()', t || '_change_log_write', t);
    execute format('create trigger %I after update on %I for each row
                      when (old.* is distinct from new.* and current_setting(''authz.bulk_log'', true) is distinct from ''on'')
                      execute function authz_record_change()', t || '_change_log_update', t);
  end loop;
end $$;

-- Opens a bulk import: holds the writers' shared lock from before its first
-- change (as the row trigger does for other writes) and turns row logging off
-- for the transaction.
create function authz_bulk_begin() returns void
language plpgsql as $$
begin
  perform pg_advisory_xact_lock_shared(authz_writer_lock_key());
  perform set_config('authz.tx_open', 'on', true);
  perform set_config('authz.bulk_log', 'on', true);
end $$;

-- The one change row of a bulk import: replicas reload a snapshot at its
-- revision. `what` (a jsonb object, e.g. the import's counts per section) is
-- kept in new_row for operators; replicas do not read it.
create function authz_log_reload(what jsonb) returns void
language plpgsql as $$
begin
  if current_setting('authz.tx_open', true) is distinct from 'on' then
    perform pg_advisory_xact_lock_shared(authz_writer_lock_key());
    perform set_config('authz.tx_open', 'on', true);
    if current_setting('authz.self_stamp', true) is distinct from 'on' then
      perform pg_notify('authz_changes', 'pending');
    end if;
  end if;
  insert into authz_changes (revision, table_name, op, old_row, new_row)
  values (null, 'authz_import', 'RELOAD', null, what);
end $$;
