// Restore mode of the importer: a large import into an empty directory (a
// fresh database, a restore from an export) writes its big tables without
// their secondary indexes and foreign keys, and builds them once at the end,
// inside the same transaction. Maintaining them row by row is most of what
// PostgreSQL spends per imported row (docs/benchmarks.md, "Import"); building
// an index is one sort, checking a foreign key one anti-join. DDL is
// transactional, so a refused or rolled-back import leaves the schema as it
// was. The unique keys stay (the upserts' conflict targets), and so do the
// indexes of tables with deferred checks (PostgreSQL refuses DDL on a table
// with pending trigger events, and those checks run per row at the end).
//
// The tables are locked (ACCESS EXCLUSIVE) for the rest of the import: an
// empty directory has no readers to block for long. A lock not granted within
// LOCK_WAIT_MS, or a table that is not empty, and the import writes as usual.

import { TRACKED_TABLES } from "./change-stream.js";
import { SqlError, type SqlQuerier } from "./sql.js";

/** The tables an import writes: those the change log tracks, and the counters table (which stays empty). */
const TABLES = [...TRACKED_TABLES, "rate_limit_counters"] as const;

/** The roles migration 0002 seeds: an empty directory holds these and nothing else. */
const BUILTIN_ROLES = ["00000000-0000-4000-8000-00000000a001", "00000000-0000-4000-8000-00000000a002"];

/** How long restore mode waits for its locks before the import writes as usual. */
export const LOCK_WAIT_MS = 1_000;

/** The definitions taken down, kept for the rebuild (dropped with the transaction). */
const DEFS = "authz_import_restore_defs";

/** Thrown by rebuild when an index or foreign key cannot be built: the import is run again as usual, which names the record. */
export const REBUILD_REFUSED = Symbol("restore rebuild refused");

/**
 * The big tables whose unique keys go down too: nothing in an empty directory
 * can conflict with their rows, so the import writes them by plain inserts
 * (no conflict target to keep), and nothing looks a row of theirs up by key
 * while it runs (the importer resolves permissions and roles by key: those
 * keep theirs). A table some foreign key of a kept table refers to keeps its
 * keys (the key cannot be dropped without that foreign key).
 */
export const KEYLESS = ["user_organizations", "role_permissions", "role_assignments"] as const;

/**
 * The definitions to take down and build back, from the catalog: the tables'
 * foreign keys (step 2), the unique keys of the KEYLESS tables (step 1), and
 * plain indexes (step 0). They are taken down from step 2 and built back
 * from step 0: a foreign key goes before the key it refers to and comes
 * back after it.
 */
const DEFS_QUERY = `
  with t as (
    select c.oid from pg_class c
    where c.oid = any(array[${TABLES.map((t) => `'${t}'`).join(", ")}]::regclass[])
      and not exists (select 1 from pg_trigger g where g.tgrelid = c.oid and g.tgdeferrable)),
  keyless as (
    select t.oid from t
    where t.oid = any(array[${KEYLESS.map((t) => `'${t}'`).join(", ")}]::regclass[])
      and not exists (select 1 from pg_constraint f where f.contype = 'f' and f.confrelid = t.oid and f.conrelid not in (select oid from t)))
  select 2 as step, k.oid::bigint as ord, null::text as tbl,
         format('alter table %s drop constraint %I', k.conrelid::regclass, k.conname) as down,
         format('alter table %s add constraint %I %s', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid)) as up
    from pg_constraint k join t on t.oid = k.conrelid where k.contype = 'f'
  union all
  select 1, i.indexrelid::bigint, i.indrelid::regclass::text,
         case when k.oid is null then format('drop index %s', i.indexrelid::regclass)
              else format('alter table %s drop constraint %I', k.conrelid::regclass, k.conname) end,
         case when k.oid is null then pg_get_indexdef(i.indexrelid)
              else format('alter table %s add constraint %I %s', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid)) end
    from pg_index i join keyless on keyless.oid = i.indrelid
    left join pg_constraint k on k.conindid = i.indexrelid and k.conrelid = i.indrelid and k.contype in ('p', 'u')
   where i.indisunique or i.indisprimary
  union all
  select 0, i.indexrelid::bigint, null, format('drop index %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
    from pg_index i join t on t.oid = i.indrelid
   where not i.indisunique and not i.indisprimary
     and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid)`;

/**
 * Takes the locks (waiting at most LOCK_WAIT_MS), checks the directory is
 * empty, and drops the indexes and foreign keys DEFS_QUERY names, in one
 * block whose failure (a lock not granted in time, rows already there, a
 * role that does not own the tables) undoes the block alone: nothing is
 * held or changed, and the import writes as usual. (A refused statement
 * would fail the whole transaction: postgres.js fails a transaction on any
 * refused statement, even one its caller handles.)
 */
const STRIP = `
do $$
declare
  prev text := current_setting('lock_timeout');
  r record;
begin
  perform set_config('authz.import_restore', 'off', true);
  begin
    perform set_config('lock_timeout', '${LOCK_WAIT_MS}ms', true);
    lock table ${TABLES.join(", ")} in access exclusive mode;
    perform set_config('lock_timeout', prev, true);
    if ${TABLES.filter((t) => t !== "roles")
      .map((t) => `exists (select 1 from ${t})`)
      .join(" or ")}
       or exists (select 1 from roles where id <> all(array[${BUILTIN_ROLES.map((r) => `'${r}'`).join(", ")}]::uuid[])) then
      raise exception 'the directory is not empty';
    end if;
    create temp table ${DEFS} on commit drop as ${DEFS_QUERY};
    for r in select down from ${DEFS} order by step desc, ord loop
      execute r.down;
    end loop;
    perform set_config('authz.import_restore', 'on', true);
  exception when others then
    null;
  end;
end $$`;

/**
 * Restore mode's preparation (STRIP): undefined when the import writes as
 * usual, else the tables whose unique keys are down (their rows go in by
 * plain inserts).
 */
export async function stripForRestore(tx: SqlQuerier): Promise<ReadonlySet<string> | undefined> {
  await tx.query(STRIP);
  const [row] = await tx.query<{ on: string }>("select current_setting('authz.import_restore') as on");
  if (row?.on !== "on") return undefined;
  const keyless = await tx.query<{ tbl: string }>(`select distinct tbl from ${DEFS} where step = 1`);
  return new Set(keyless.map((r) => r.tbl));
}

/**
 * Builds what stripForRestore dropped: the indexes (one sort each), then the
 * foreign keys (one check each over the whole table). Throws REBUILD_REFUSED
 * when the database refuses one (a reference to a row the document does not
 * hold): the import is then run again as usual, to name the record. The keys
 * are built in the order they were first created: PostgreSQL fires a table's
 * foreign-key triggers (an `on delete cascade`) in the order of their names,
 * which hold oids given out as the keys are created, so the order among the
 * rebuilt keys stays as it was (they all come after the keys of the tables
 * left alone: a cascade's change rows may come in another order).
 */
export async function rebuildAfterRestore(tx: SqlQuerier): Promise<void> {
  try {
    await tx.query(`do $$ declare r record; begin for r in select up from ${DEFS} order by step, ord loop execute r.up; end loop; end $$`);
  } catch (err) {
    if (err instanceof SqlError) throw REBUILD_REFUSED;
    throw err;
  }
}
