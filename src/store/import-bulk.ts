// The importer's bulk writer: a section's upserts run up to CHUNK_ROWS rows
// per statement (insert ... select from a JSON array ... on conflict), not
// one statement per record. Records that touch the same row twice keep
// their order: a chunk never holds one row twice, and chunks run in order.
// A chunk the database refuses is rolled back to its savepoint and run again
// one upsert at a time, so the error names the record as before.

import {
  type Col,
  combine,
  conflictAction,
  explain,
  fetchLookups,
  isSingleUpsert,
  type Lookups,
  type Outcome,
  placeOrgCols,
  placeUpserts,
  RecordError,
  type Upsert,
  upsertFor,
  type Validated,
  writeRecord,
  type Value,
} from "./import-rows.js";
import { setImmediate as turn } from "node:timers/promises";
import { SqlError, type SqlQuerier } from "./sql.js";

/** Rows per bulk statement. */
export const CHUNK_ROWS = 5000;

/** One upsert and the record it writes (with its signature and row key, computed once). */
export interface Item {
  rec: Validated;
  u: Upsert;
  sig?: number;
  key?: string;
}

/** A refusal naming its record (the importer turns it into an ImportError). */
export class RecordRefused extends Error {
  constructor(rec: Validated, err: unknown) {
    super(`${rec.label}: ${explain(err)}`);
  }
}

/** Calls fn, turning a RecordError or a database refusal into RecordRefused naming rec. */
function naming<T>(rec: Validated, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new RecordRefused(rec, err);
  }
}

/**
 * Upserts of one signature (table, conflict target, columns and their types)
 * share a statement. A section has few signatures: each is numbered by its
 * place in `seen`, compared field by field, so no string is built per upsert.
 */
function signature(u: Upsert, seen: Upsert[]): number {
  for (let n = 0; n < seen.length; n++) if (sameShape(seen[n] as Upsert, u)) return n;
  seen.push(u);
  return seen.length - 1;
}

function sameShape(a: Upsert, b: Upsert): boolean {
  if (a.table !== b.table || a.conflict !== b.conflict || a.cols.length !== b.cols.length) return false;
  for (let i = 0; i < a.cols.length; i++) {
    const x = a.cols[i] as Col;
    const y = b.cols[i] as Col;
    if (x[0] !== y[0] || x[1] !== y[1]) return false;
  }
  return true;
}

const CONFLICT_COLUMNS = new Map<string, string[]>();

/** The columns of an upsert's conflict target: "(a, b)" or, for a named constraint, the kept natural key. */
function conflictColumns(u: Upsert): string[] {
  const cached = CONFLICT_COLUMNS.get(u.conflict);
  if (cached) return cached;
  const m = /^\((.*)\)$/.exec(u.conflict);
  const cols = m ? (m[1] as string).split(",").map((x) => x.trim()) : u.keep;
  CONFLICT_COLUMNS.set(u.conflict, cols);
  return cols;
}

/** The row an upsert writes, as its conflict key's values (null as \u0001); bulkUpsert returns the same text. */
export function rowKey(u: Upsert): string {
  const names = conflictColumns(u);
  // Joined from an array: one flat string (hashed once in the Set), not a chain of concatenations.
  const parts: string[] = new Array(names.length);
  for (let i = 0; i < names.length; i++) {
    let v: Value | undefined;
    for (const col of u.cols) if (col[0] === names[i]) v = col[2];
    parts[i] = v ?? "\u0001";
  }
  return parts.join("|");
}

/**
 * Cuts upserts into chunks that one statement can take (one signature: table,
 * conflict target, columns; no row twice; at most CHUNK_ROWS) as they come,
 * so the first chunk can be sent before the last upsert is built. While every
 * upsert writes its own row of one table, each signature fills a chunk of its
 * own (their order does not matter). From the first upsert that writes a row
 * again (or another table, or by another conflict target) on, the chunks
 * being filled are cut and chunks follow the upserts' order, so every row's
 * writes run in record order.
 */
export class Chunker {
  private readonly shapes: Upsert[] = [];
  private readonly keys = new Set<string>();
  private readonly open = new Map<number, Item[]>();
  private first: Upsert | undefined;
  private strict = false;
  private cur: Item[] = [];
  private seen = new Set<string>();

  /**
   * distinct: tables whose rows come at most once (restore mode holds a
   * second write of a row back, import-held.ts): their keys need no set.
   */
  constructor(private readonly distinct?: ReadonlySet<string>) {}

  /** Takes the next upsert; returns the chunks it completed, to run in this order. */
  add(i: Item): Item[][] {
    i.sig = signature(i.u, this.shapes);
    i.key ??= rowKey(i.u);
    this.first ??= i.u;
    const out: Item[][] = [];
    if (!this.strict && (i.u.table !== this.first.table || i.u.conflict !== this.first.conflict || this.keys.has(i.key))) {
      this.strict = true;
      out.push(...this.open.values());
      this.open.clear();
    }
    if (!this.strict) {
      if (!this.distinct?.has(i.u.table)) this.keys.add(i.key);
      const g = this.open.get(i.sig) ?? [];
      this.open.set(i.sig, g);
      g.push(i);
      if (g.length >= CHUNK_ROWS) {
        out.push(g);
        this.open.delete(i.sig);
      }
      return out;
    }
    if (this.cur.length > 0 && (i.sig !== (this.cur[0] as Item).sig || this.cur.length >= CHUNK_ROWS || this.seen.has(i.key))) {
      out.push(this.cur);
      this.cur = [];
      this.seen = new Set();
    }
    this.cur.push(i);
    this.seen.add(i.key);
    return out;
  }

  /** The chunks still being filled. */
  end(): Item[][] {
    const out = [...this.open.values(), ...(this.cur.length > 0 ? [this.cur] : [])];
    this.open.clear();
    this.cur = [];
    return out;
  }
}

/** The items' chunks, each built when it is asked for (item() may throw RecordRefused). */
function* chunked<T>(from: Iterable<T>, item: (x: T) => Item, distinct?: ReadonlySet<string>): Generator<Item[]> {
  const c = new Chunker(distinct);
  for (const x of from) yield* c.add(item(x));
  yield* c.end();
}

/** The statement text for a chunk, returning what `returning` says, and its one parameter (the rows as JSON). */
function chunkStatement(chunk: Item[], returning: string, keyless?: ReadonlySet<string>): [string, string[]] {
  const u0 = (chunk[0] as Item).u;
  const names = u0.cols.map(([c]) => c);
  // A table whose unique keys restore mode took down has nothing to conflict with: a plain insert.
  const onConflict = keyless?.has(u0.table) ? "" : `on conflict ${u0.conflict} ${conflictAction(u0.table, names, u0.keep)}`;
  const select = u0.cols.map(([, t], i) => `(e.r->>${i})::${t}`);
  const text = `insert into ${u0.table} (${names.join(", ")})
     select ${select.join(", ")} from jsonb_array_elements($1::text::jsonb) with ordinality as e(r, ord) order by e.ord
     ${onConflict}
     returning ${returning}`;
  return [text, [JSON.stringify(chunk.map((i) => i.u.cols.map(([, , v]) => v)))]];
}

/** One statement for a whole chunk; per row written: its conflict key and whether it was inserted. */
async function bulkUpsert(tx: SqlQuerier, chunk: Item[], keyless?: ReadonlySet<string>): Promise<Map<string, Outcome>> {
  const u0 = (chunk[0] as Item).u;
  const key = conflictColumns(u0)
    .map((c) => `coalesce(${u0.table}.${c}::text, chr(1))`)
    .join(` || '|' || `);
  const [text, params] = chunkStatement(chunk, `${key} as k, (xmax = 0) as inserted`, keyless);
  const rows = await tx.query<{ k: string; inserted: boolean }>(text, params);
  return new Map(rows.map((r) => [r.k, r.inserted ? "inserted" : "updated"]));
}

/** How many records (or rows) were inserted, updated, or left as they were. */
export interface Tally {
  inserted: number;
  updated: number;
  unchanged: number;
}

/**
 * One statement for a whole chunk, answering only how many rows it inserted
 * and updated: no row goes back to this process. A chunk never writes one
 * row twice, so the rest of its items left their rows unchanged.
 */
async function bulkCount(tx: SqlQuerier, chunk: Item[], keyless?: ReadonlySet<string>): Promise<Tally> {
  const [text, params] = chunkStatement(chunk, "(xmax = 0) as inserted", keyless);
  const [r] = await tx.query<{ inserted: number; updated: number }>(
    `with w as (${text}) select count(*) filter (where inserted)::int as inserted, count(*) filter (where not inserted)::int as updated from w`,
    params,
  );
  const inserted = Number(r?.inserted ?? 0);
  const updated = Number(r?.updated ?? 0);
  return { inserted, updated, unchanged: chunk.length - inserted - updated };
}

async function oneUpsert(tx: SqlQuerier, u: Upsert): Promise<Outcome> {
  const names = u.cols.map(([c]) => c);
  const rows = await tx.query(
    `insert into ${u.table} (${names.join(", ")}) values (${u.cols.map(([, t], i) => `$${i + 1}::text::${t}`).join(", ")})
     on conflict ${u.conflict} ${conflictAction(u.table, names, u.keep)} returning (xmax = 0) as inserted`,
    u.cols.map(([, , v]) => v),
  );
  const row = rows[0];
  return row ? (row.inserted === true ? "inserted" : "updated") : "unchanged";
}

/**
 * A slice of the caller's own work, run while PostgreSQL works on a chunk of
 * `rows` rows (after the next chunk is sent, before this one's answer is
 * read): a small fraction of the time the database takes for them.
 */
export type Meanwhile = (rows: number) => void;

/** How chunks are run: the caller's work meanwhile, and whether chunks go without their savepoints. */
export interface Pipe {
  meanwhile?: Meanwhile;
  /**
   * Each chunk's statement alone, without the savepoint that lets a refused chunk be replayed record by
   * record: a refusal throws CHUNK_REFUSED, and the caller runs the import again with savepoints to name
   * the record. (postgres.js holds back a transaction's next statement until a large one is answered; with
   * a savepoint and a release between every two chunks, PostgreSQL waited on this process's event loop
   * for a third of a large import.)
   */
  bare?: boolean;
  /** The tables whose unique keys restore mode took down: their rows go in by plain inserts. */
  keyless?: ReadonlySet<string>;
  /** Restore mode's writes of rows already written, held back until the keys are back (import-held.ts). */
  held?: Holder;
}

/** A record some of whose writes restore mode holds back: its section, and the outcome of what it has written. */
export interface Deferred {
  section: string;
  outcome: Outcome;
}

/** Where restore mode holds back a write whose row may have been written already (import-held.ts). */
export interface Holder {
  /** True when the item is held back, for the record owner() gives. */
  hold(i: Item, owner: () => Deferred): boolean;
  /** A record with writes held back. */
  defer(section: string): Deferred;
}

/** A chunk refused in a bare pipe (the transaction is aborted). */
export const CHUNK_REFUSED = Symbol("chunk refused");

/** A chunk's statements as sent: what its statement answered, or the database's refusal of it. */
type Sent<R> = Promise<{ written: R } | { refused: SqlError }>;

/** A chunk's statement: bulkUpsert (an outcome per row) or bulkCount (only counts). */
type ChunkStatement<R> = (tx: SqlQuerier, chunk: Item[], keyless?: ReadonlySet<string>) => Promise<R>;

/**
 * Sends a chunk's savepoint, statement and release without waiting for any
 * answer, so the caller can build the next chunk while PostgreSQL runs this
 * one (postgres.js pipelines statements of one transaction in order). A
 * refusal of the statement is returned, any other failure thrown.
 */
function sendChunk<R>(tx: SqlQuerier, chunk: Item[], statement: ChunkStatement<R>, pipe: Pipe): Sent<R> {
  const sent = sendChunkNow(tx, chunk, statement, pipe);
  // Awaited only once the chunk before it is answered (pipeChunks): a chunk sent behind a refused one fails
  // before then (at once on PGlite), which must not count as an unhandled rejection (Node ends the process).
  sent.catch(() => {});
  return sent;
}

function sendChunkNow<R>(tx: SqlQuerier, chunk: Item[], statement: ChunkStatement<R>, pipe: Pipe): Sent<R> {
  if (pipe.bare) {
    return statement(tx, chunk, pipe.keyless).then(
      (written) => ({ written }),
      (err: unknown) => {
        throw err instanceof SqlError ? CHUNK_REFUSED : err;
      },
    );
  }
  const sent = [tx.query("savepoint authz_import_chunk"), statement(tx, chunk), tx.query("release savepoint authz_import_chunk")] as const;
  return Promise.allSettled(sent).then(([sp, ins, rel]) => {
    if (ins.status === "rejected" && ins.reason instanceof SqlError && sp.status === "fulfilled") return { refused: ins.reason };
    for (const r of [sp, ins, rel]) if (r.status === "rejected") throw r.reason;
    return { written: (ins as PromiseFulfilledResult<R>).value };
  });
}

/** A refused chunk again, one upsert at a time after rolling back to its savepoint, so the refusal names its record. */
async function replayChunk(tx: SqlQuerier, chunk: Item[]): Promise<Outcome[]> {
  await tx.query("rollback to savepoint authz_import_chunk");
  const out: Outcome[] = [];
  for (const i of chunk) {
    try {
      out.push(await oneUpsert(tx, i.u));
    } catch (err) {
      throw new RecordRefused(i.rec, err);
    }
  }
  await tx.query("release savepoint authz_import_chunk");
  return out;
}

/**
 * Runs the chunks in order, one statement each, handing take() each chunk's
 * answer (or, for a chunk replayed record by record, its outcomes). The next
 * chunk is built and sent before this one's answer is read, so this
 * process's work overlaps PostgreSQL's. When a chunk is refused, the one sent
 * behind it fails too (the transaction is aborted up to the savepoint): it is
 * awaited, the refused chunk replayed, then it is sent again.
 */
async function pipeChunks<R>(
  tx: SqlQuerier,
  source: Iterator<Item[]>,
  statement: ChunkStatement<R>,
  take: (chunk: Item[], got: { written: R } | { replayed: Outcome[] }) => void,
  pipe: Pipe = {},
): Promise<void> {
  const { meanwhile } = pipe;
  const pull = (): Item[] | undefined => {
    const r = source.next();
    return r.done ? undefined : r.value;
  };
  let chunk = pull();
  let sent = chunk && sendChunk(tx, chunk, statement, pipe);
  while (chunk && sent) {
    const after = await pullBehind(pull, sent);
    let next = after && sendChunk(tx, after, statement, pipe);
    if (meanwhile) await inSlices(meanwhile, chunk.length);
    const got = await sent.catch(async (err: unknown) => {
      await next?.catch(() => {});
      throw err;
    });
    if ("written" in got) take(chunk, got);
    else {
      await next?.catch(() => {}); // failed behind the refusal; sent again below
      take(chunk, { replayed: await replayChunk(tx, chunk) });
      next = after && sendChunk(tx, after, statement, pipe);
    }
    chunk = after;
    sent = next;
  }
}

/** Rows of meanwhile's work between two turns of the event loop. */
const SLICE_ROWS = 250;

/**
 * The caller's work for `rows` rows, in slices with a turn of the event loop
 * between them. postgres.js sends a transaction's next statement only once it
 * has read the answer to the one before: one long run of work here would
 * leave PostgreSQL idle after it answered.
 */
async function inSlices(meanwhile: Meanwhile, rows: number): Promise<void> {
  for (let done = 0; done < rows; done += SLICE_ROWS) {
    meanwhile(Math.min(SLICE_ROWS, rows - done));
    await turn();
  }
}

/** The next chunk, built while `sent` runs; when building it fails, `sent` is let finish first. */
async function pullBehind<R>(pull: () => Item[] | undefined, sent: Sent<R>): Promise<Item[] | undefined> {
  try {
    return pull();
  } catch (err) {
    await sent.catch(() => {});
    throw err;
  }
}

/** Runs the items in chunks; returns each item's outcome, in the items' order. */
export async function runItems(tx: SqlQuerier, items: Item[], onRows?: (n: number) => void, pipe?: Pipe): Promise<Outcome[]> {
  const outcome = new Map<Item, Outcome>();
  await pipeChunks(
    tx,
    chunked(items, (i) => i, pipe?.keyless),
    bulkUpsert,
    (chunk, got) => {
      chunk.forEach((i, k) => {
        const o = "written" in got ? got.written.get(i.key ?? rowKey(i.u)) : got.replayed[k];
        outcome.set(i, o ?? "unchanged");
      });
      onRows?.(chunk.length);
    },
    pipe,
  );
  return items.map((i) => outcome.get(i) ?? "unchanged");
}

/** Runs the items in chunks, as runItems, when only the counts matter: no row comes back. */
async function countItems(tx: SqlQuerier, source: Iterator<Item[]>, onRows?: (n: number) => void, pipe?: Pipe): Promise<Tally> {
  const t = newTally();
  await pipeChunks(
    tx,
    source,
    bulkCount,
    (chunk, got) => {
      if ("written" in got) for (const k of ["inserted", "updated", "unchanged"] as const) t[k] += got.written[k];
      else for (const o of got.replayed) t[o]++;
      onRows?.(chunk.length);
    },
    pipe,
  );
  return t;
}

export const newTally = (): Tally => ({ inserted: 0, updated: 0, unchanged: 0 });

/** The outcomes counted. */
export function tally(outcomes: readonly Outcome[]): Tally {
  const t = newTally();
  for (const o of outcomes) t[o]++;
  return t;
}

/**
 * Writes one section's records (already in write order) in bulk; returns
 * how many were inserted, updated and unchanged. RecordRefused names the
 * first record refused.
 */
export async function writeSection(tx: SqlQuerier, recs: Validated[], onRows?: (n: number) => void, pipe?: Pipe): Promise<Tally> {
  const l = await fetchLookups(tx, recs);
  if (recs.length > 0 && isSingleUpsert((recs[0] as Validated).section)) {
    // Each record's upsert is built as its chunk is: the first statement goes out before the last record is looked at.
    return countItems(
      tx,
      chunked(singles(recs, l, onRows, pipe?.held), (i) => i, pipe?.keyless),
      onRows,
      pipe,
    );
  }
  return tally(await writePlaces(tx, recs, l, onRows, pipe));
}

/** The upserts of single-upsert records, as they are built; those restore mode holds back are counted as done and left out. */
function* singles(recs: Validated[], l: Lookups, onRows?: (n: number) => void, held?: Holder): Generator<Item> {
  for (const rec of recs) {
    const i: Item = { rec, u: naming(rec, () => upsertFor(rec, l)) };
    if (held?.hold(i, () => held.defer(rec.section))) onRows?.(1);
    else yield i;
  }
}

/**
 * UserOrganizationInfo in bulk: the organizations' slug and role structure,
 * then the places, then the grants; a record's outcome combines its rows'.
 * The outcomes are those of the records restore mode held nothing back of
 * (the others are counted when their held writes run).
 */
async function writePlaces(tx: SqlQuerier, recs: Validated[], l: Lookups, onRows?: (n: number) => void, pipe?: Pipe): Promise<Outcome[]> {
  await tx.query("savepoint authz_import_orgs");
  let outcomes: Outcome[];
  try {
    outcomes = await patchOrganizations(tx, recs);
    await tx.query("release savepoint authz_import_orgs");
  } catch (err) {
    if (!(err instanceof SqlError)) throw err;
    // An organization field refused (a slug taken, a bad role structure): record by record names it.
    // Not in restore mode: the places' keys are down, so a record's upsert could not run (and a refusal
    // need not be the first): the import is run again as usual, which names it.
    if (pipe?.bare) throw CHUNK_REFUSED;
    await tx.query("rollback to savepoint authz_import_orgs");
    return writeOneByOne(tx, recs, onRows);
  }
  // Places, then grants: each list runs in chunks of one table (the places and grants of one record touch different rows).
  const places: Array<Item & { at: number }> = [];
  const grants: Array<Item & { at: number }> = [];
  recs.forEach((rec, at) => {
    const [place, ...roles] = naming(rec, () => placeUpserts(rec, l));
    places.push({ rec, u: place as Upsert, at });
    for (const u of roles) grants.push({ rec, u, at });
  });
  const held = pipe?.held;
  const owners = new Map<number, Deferred>();
  const ownerOf = (h: Holder, at: number, section: string): Deferred => {
    let d = owners.get(at);
    if (!d) {
      d = h.defer(section);
      owners.set(at, d);
    }
    return d;
  };
  for (const all of [places, grants]) {
    const items = held ? all.filter((i) => !held.hold(i, () => ownerOf(held, i.at, i.rec.section))) : all;
    const got = await runItems(tx, items, undefined, pipe);
    items.forEach((i, n) => {
      outcomes[i.at] = combine(outcomes[i.at] as Outcome, got[n] as Outcome);
    });
  }
  onRows?.(recs.length);
  for (const [at, d] of owners) d.outcome = combine(d.outcome, outcomes[at] as Outcome);
  return owners.size === 0 ? outcomes : outcomes.filter((_, at) => !owners.has(at));
}

/** Writes records one statement at a time (the fallback, and the benchmark's baseline). */
export async function writeOneByOne(tx: SqlQuerier, recs: Validated[], onRows?: (n: number) => void): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const rec of recs) {
    try {
      out.push(await writeRecord(tx, rec));
    } catch (err) {
      throw new RecordRefused(rec, err);
    }
  }
  onRows?.(recs.length);
  return out;
}

/**
 * Sets the organization fields UserOrganizationInfo records give, one
 * statement per set of fields; the last record naming an organization wins,
 * as when written one by one (and is the one counted as updating it).
 */
async function patchOrganizations(tx: SqlQuerier, recs: Validated[]): Promise<Outcome[]> {
  const outcomes: Outcome[] = recs.map(() => "unchanged");
  const groups = new Map<string, Map<string, { at: number; cols: Col[] }>>();
  recs.forEach((rec, at) => {
    const cols = placeOrgCols(rec);
    if (cols.length === 0) return;
    const sig = cols.map(([c]) => c).join(",");
    const g = groups.get(sig) ?? new Map<string, { at: number; cols: Col[] }>();
    groups.set(sig, g);
    g.set(rec.values.get("org_id") ?? "", { at, cols });
  });
  for (const [sig, byOrg] of groups) {
    const names = sig.split(",");
    const entries = [...byOrg.entries()];
    const rows = await tx.query<{ id: string; found: boolean; changed: boolean }>(
      `with q as (select (e.r->>0)::uuid as id, ${names.map((_, i) => `e.r->>${i + 1} as v${i}`).join(", ")} from jsonb_array_elements($1::text::jsonb) e(r)),
            u as (update organizations o set ${names.map((c, i) => `${c} = q.v${i}`).join(", ")} from q
                   where o.id = q.id and (${names.map((c) => `o.${c}`).join(", ")}) is distinct from (${names.map((_, i) => `q.v${i}`).join(", ")})
                   returning o.id)
       select q.id::text as id, exists (select 1 from organizations o where o.id = q.id) as found,
              exists (select 1 from u where u.id = q.id) as changed from q`,
      [JSON.stringify(entries.map(([org, { cols }]) => [org, ...cols.map(([, , v]) => v as Value)]))],
    );
    for (const r of rows) {
      const e = byOrg.get(r.id) as { at: number };
      const rec = recs[e.at] as Validated;
      if (!r.found) throw new RecordRefused(rec, new RecordError(`org_id ${r.id} is not a known organization`));
      if (r.changed) outcomes[e.at] = "updated";
    }
  }
  return outcomes;
}
