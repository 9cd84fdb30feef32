// The one write pipeline. Every writer (ManageRoles, ManageRateLimits, the
// ownership RPCs, the directory) supplies its validated request, a
// confinement pass and its mutations; the pipeline runs them in one
// transaction, in this order:
//
//   1. the writer marks the transaction as numbering itself (no NOTIFY
//      'pending'); with expected_revision it takes the writers' lock
//      exclusively, so no other write is in flight, and numbers what has
//      committed before comparing;
//   2. the idempotency record, scoped to the caller (and its tenant), under
//      a lock on that key: a retry of the same request returns the first
//      answer, a different request under the same key is ALREADY_EXISTS;
//   3. confinement: a tenant-bound caller's references are checked before
//      any mutation runs, so no error can name another tenant's rows;
//   4. expected_revision;
//   5. the mutations;
//   6. the database's tenancy backstop (authz_assert_tenant) for bound callers;
//   7. the transaction numbers itself when no other stamper is at work
//      (authz_try_stamp_self) and keeps the idempotency record, in one
//      statement sent together with COMMIT (finish, SentWithCommit);
//   8. otherwise, after commit, authz_stamp(xid) numbers it (with whatever
//      else committed meanwhile, in one batch). That revision is returned
//      (read-your-writes). Writers never wait for each other on one lock row
//      (migration 0008, docs/data-model.md "Change log").
//
// Round trips are what a write costs under load (the backends of a busy
// write benchmark mostly wait for their client), so statements whose answer
// is not needed yet are sent without waiting: step 1 travels with the next
// statement, step 7 with COMMIT, and a batch's one-statement mutations
// (BatchWriter.pipelined) back to back; a run of like mutations can be one
// statement (BatchWriter.runKey/applyRun). The database runs them in order,
// answers are read in order, so results and the first error are as if each
// had waited (test/write-runs.test.ts). With postgres.js every statement with
// parameters is prepared once per connection (postgres-client.ts).
//
// Database refusals become domain errors through one mapping (write-errors.ts).

import { createHash } from "node:crypto";
import type { Caller } from "../auth/caller.js";
import { AuthzError, type DomainCode, invalidArgument, type ReasonOf } from "../errors.js";
import { expectedRevision, idempotencyKey, optional } from "../validation.js";
import { SentWithCommit, type SqlClient, SqlError, type SqlQuerier, writeFailure } from "./sql.js";
import { WriteConfinement } from "./tenant-lookup.js";
import { fromSqlError } from "./write-errors.js";

/** Who writes: the caller's stable id (idempotency scope) and tenant binding. */
export type WriteCaller = Pick<Caller, "id" | "tenantId">;

/**
 * The writer of in-process calls (the CLI, the importer, sweeps, tests): the
 * same identity as an unauthenticated caller when authentication is off.
 */
export const INTERNAL_WRITER: WriteCaller = Object.freeze({ id: "anonymous", tenantId: null });

/** What a writer's mutations get from the pipeline. */
export interface WriteTx {
  readonly tx: SqlQuerier;
  /** The transaction's clock, read once after the lock (ISO-8601 UTC with microseconds). */
  now(): Promise<string>;
}

/** A refusal recorded in the transaction: committed, then thrown (e.g. marking an expired transfer). */
export class CommittedRefusal {
  constructor(readonly error: AuthzError) {}
}

export interface WritePlan<R> {
  /** The RPC: the idempotency namespace. */
  readonly rpc: string;
  /** The validated, normalized request (hashed for idempotency). */
  readonly request: unknown;
  readonly idempotencyKey?: string | undefined;
  readonly expectedRevision?: string | undefined;
  /** Checks every row the write refers to against a tenant-bound caller's tenant; not called for unbound callers. */
  confine?(c: WriteConfinement): Promise<void>;
  /** The mutations. */
  apply(w: WriteTx): Promise<R | CommittedRefusal>;
  /** Rebuilds the result from its stored JSON (dates and the like); JSON as is by default. */
  revive?(stored: unknown): R;
}

export interface WriteOutcome<R> {
  /** The revision the write committed at (the current one when nothing changed). */
  readonly revision: string;
  readonly value: R;
}

/** JSON with sorted keys, undefined left out and dates as ISO strings: equal requests, equal text. */
export function canonicalJson(v: unknown): string {
  if (v instanceof Date) return JSON.stringify(v.toISOString());
  if (typeof v === "bigint") return JSON.stringify(v.toString());
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    const entries = Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v ?? null);
}

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

/** The idempotency namespace of an RPC for one caller: keys of different callers never meet. */
export function idempotencyScope(rpc: string, caller: WriteCaller): string {
  return `${rpc}:${sha256(`${caller.id}\u0000${caller.tenantId ?? ""}`).slice(0, 32)}`;
}

const ISO_NOW = `to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** What the idempotency record keeps: the writer's value and how to find its revision again. */
interface Stored {
  /** The writing transaction (when it changed something): its revision is authz_stamp(xid). */
  xid: string | null;
  /** The revision, when known before commit (expected_revision writes) or when nothing changed. */
  revision: string | null;
  value: unknown;
}

const lockKey = (s: string) => `hashtextextended(${s}, 0)`;

async function replay(tx: SqlQuerier, scope: string, key: string, hash: string): Promise<Stored | undefined> {
  // One request per key at a time: a concurrent duplicate waits here and then finds the first one's record.
  // The lock and the read are two statements: a statement reads the snapshot taken when it started, so a
  // read in the locking statement would not see the record that the first request committed while this
  // one waited for the lock (it would run the mutations again and fail on the record's key at commit).
  await tx.query(`select pg_advisory_xact_lock(${lockKey("$1::text || ':' || $2::text")})`, [scope, key]);
  const rows = await tx.query<{ request_hash: string; response: string }>(
    "select request_hash, response::text as response from authz_idempotency where scope = $1::text and key = $2::text",
    [scope, key],
  );
  const first = rows[0];
  if (!first || first.request_hash === null) return undefined;
  if (first.request_hash !== hash) {
    throw new AuthzError("ALREADY_EXISTS", "idempotency_key was already used with a different request", { reason: "IDEMPOTENCY_KEY_REUSED" });
  }
  return JSON.parse(first.response) as Stored;
}

/** The revision of a stored write: numbered now if no stamp did it yet. */
async function storedRevision(db: SqlQuerier, stored: Stored): Promise<string> {
  if (stored.revision !== null) return stored.revision;
  const [row] = await db.query<{ revision: string | null }>("select authz_stamp($1::text::xid8)::text as revision", [stored.xid]);
  if (row?.revision) return row.revision;
  return ((await db.query<{ revision: string }>("select revision::text as revision from authz_revision"))[0] as { revision: string }).revision;
}

async function assertTenant(tx: SqlQuerier, tenantId: string): Promise<void> {
  try {
    await tx.query("select authz_assert_tenant($1::text::uuid)", [tenantId]);
  } catch (err) {
    if (err instanceof SqlError && err.code === "42501") {
      throw new AuthzError("PERMISSION_DENIED", `this credential is bound to tenant ${tenantId} and cannot change rows outside it`, {
        reason: "OTHER_TENANT",
        cause: err,
      });
    }
    throw err;
  }
}

function checkExpected(expected: string | undefined, current: string): void {
  if (expected === undefined || expected === current) return;
  // A revision no write has reached yet was never returned by authz: a bad token, not a moved revision.
  if (BigInt(expected) > BigInt(current)) {
    throw new AuthzError("INVALID_ARGUMENT", `expected_revision ${expected} is newer than this deployment's newest revision ${current}; nothing was written`, {
      reason: "UNKNOWN_REVISION",
      metadata: { field: "expected_revision" },
    });
  }
  throw new AuthzError("FAILED_PRECONDITION", `expected_revision ${expected} is not the newest revision ${current}; nothing was written`, {
    reason: "REVISION_MOVED",
    metadata: { expected_revision: expected, revision: current },
  });
}

/**
 * Opens the write: marks it as numbering itself. With a precondition, it
 * also waits until no other write is in flight (the writers' lock,
 * exclusive), numbers everything committed, and returns that newest revision.
 */
async function open(tx: SqlQuerier, exclusive: boolean): Promise<{ head: string | undefined; xid: string }> {
  if (!exclusive) {
    const [row] = await tx.query<{ xid: string }>("select set_config('authz.self_stamp', 'on', true), pg_current_xact_id()::text as xid");
    return { head: undefined, xid: (row as { xid: string }).xid };
  }
  const [row] = await tx.query<{ head: string }>(
    `select pg_advisory_xact_lock(authz_writer_lock_key()), set_config('authz.self_stamp', 'on', true),
            set_config('authz.tx_open', 'on', true), authz_stamp()::text as head`,
  );
  return { head: (row as { head: string }).head, xid: "" };
}

/**
 * A transaction's own revision when it can number itself now; for one that
 * changed nothing, the newest revision now (kept in its idempotency record,
 * so a replay answers the revision the first call did, not a newer one);
 * otherwise null (numbered after commit).
 */
const SELF_OR_HEAD = `coalesce(authz_try_stamp_self(),
  (select revision from authz_revision where not exists (select 1 from authz_changes where xid = pg_current_xact_id_if_assigned())))`;

/**
 * The last statement before commit, which numbers the transaction and keeps
 * the idempotency record in one round trip. With a precondition no other
 * write is in flight, so the transaction numbers itself now; otherwise it does
 * so only when no other stamper is at work (authz_try_stamp_self), else it is
 * numbered after commit: authz_stamp(xid), or the head if it changed nothing.
 * Returns what the record keeps (also without a key).
 */
async function finish(tx: SqlQuerier, exclusive: boolean, xid: string, value: unknown, record?: { scope: string; key: string; hash: string }): Promise<Stored> {
  const own = exclusive ? "coalesce(authz_stamp(pg_current_xact_id()), authz_stamp())" : SELF_OR_HEAD;
  let revision: string | null;
  if (record === undefined) {
    const [row] = await tx.query<{ revision: string | null }>(`select ${own}::text as revision`);
    revision = row?.revision ?? null;
  } else {
    // The record as stored when numbered after commit; the revision replaces the xid when known now.
    const later = JSON.stringify({ xid, revision: null, value } satisfies Stored);
    const [row] = await tx.query<{ revision: string | null }>(
      `with own as (select ${own}::text as rev)
       insert into authz_idempotency (scope, key, request_hash, response)
       select $1::text, $2::text, $3::text,
              case when rev is null then $4::text::jsonb else $4::text::jsonb || jsonb_build_object('xid', null, 'revision', rev) end
         from own
       returning response->>'revision' as revision`,
      [record.scope, record.key, record.hash, later],
    );
    revision = row?.revision ?? null;
  }
  return revision !== null ? { xid: null, revision, value } : { xid, revision: null, value };
}

type Outcome = { stored: Stored; replayed: boolean } | CommittedRefusal;

/**
 * Runs one write atomically: every mutation or none. Returns the revision
 * it committed at and the writer's result; replays the first answer for a
 * repeated idempotency key.
 */
export async function runWrite<R>(db: SqlClient, caller: WriteCaller, plan: WritePlan<R>): Promise<WriteOutcome<R>> {
  try {
    return await writeOnce(db, caller, plan);
  } catch (err) {
    throw writeFailure(err, plan.idempotencyKey !== undefined);
  }
}

async function writeOnce<R>(db: SqlClient, caller: WriteCaller, plan: WritePlan<R>): Promise<WriteOutcome<R>> {
  const exclusive = plan.expectedRevision !== undefined;
  const record =
    plan.idempotencyKey === undefined
      ? undefined
      : { scope: idempotencyScope(plan.rpc, caller), key: plan.idempotencyKey, hash: sha256(canonicalJson(plan.request)) };
  let outcome: Outcome;
  try {
    outcome = await db.readWriteTx<Outcome>(async (tx) => {
      // Sent now, read when needed: the next statements follow it on the connection without waiting for its answer.
      const opening = open(tx, exclusive);
      opening.catch(() => {});
      try {
        return await writeInTx(tx, caller, plan, exclusive, opening, record);
      } catch (err) {
        await opening; // a failed open is what made the statements after it fail
        throw err;
      }
    });
  } catch (err) {
    // Failures outside a mutation: the lock or idempotency statements, or a deferred check at commit.
    throw err instanceof SqlError ? fromSqlError(err, "the write") : err;
  }
  if (outcome instanceof CommittedRefusal) throw outcome.error;
  const { stored, replayed } = outcome;
  // Committed: number it (read-your-writes). A lost connection here leaves the write committed; a retry
  // with the same idempotency key returns it.
  const revive = plan.revive ?? ((v: unknown) => v as R);
  return { revision: await storedRevision(db, stored), value: replayed ? revive(stored.value) : (stored.value as R) };
}

/** Inside the transaction, after open: replay, confinement, expected_revision, the mutations, the backstop, finish. */
async function writeInTx<R>(
  tx: SqlQuerier,
  caller: WriteCaller,
  plan: WritePlan<R>,
  exclusive: boolean,
  opening: Promise<{ head: string | undefined; xid: string }>,
  record: { scope: string; key: string; hash: string } | undefined,
): Promise<Outcome | SentWithCommit<Outcome>> {
  if (record !== undefined) {
    const first = await replay(tx, record.scope, record.key, record.hash);
    if (first) return { stored: first, replayed: true };
  }
  if (caller.tenantId && plan.confine) await plan.confine(new WriteConfinement(tx, caller));
  if (exclusive) checkExpected(plan.expectedRevision, (await opening).head as string);
  let now: string | undefined;
  const value = await plan.apply({
    tx,
    async now() {
      now ??= ((await tx.query<{ now: string }>(`select ${ISO_NOW} as now`))[0] as { now: string }).now;
      return now;
    },
  });
  if (value instanceof CommittedRefusal) return value;
  if (caller.tenantId) await assertTenant(tx, caller.tenantId);
  const { xid } = await opening;
  return new SentWithCommit(finish(tx, exclusive, xid, value, record).then((stored) => ({ stored, replayed: false })));
}

/** A batch of mutations as every batch RPC takes it. */
export interface BatchInput<M> {
  mutations: M[];
  idempotencyKey?: string;
  expectedRevision?: string;
}

/** At most this many mutations per batch. */
export const MAX_MUTATIONS = 1000;

/** Checks and normalizes a batch: 1 to max mutations, each through `each`, and the shared fields; INVALID_ARGUMENT naming the first bad field. */
export function validateBatch<M>(input: BatchInput<M>, each: (m: M, i: number) => M, max = MAX_MUTATIONS): BatchInput<M> {
  if (!Array.isArray(input.mutations) || input.mutations.length === 0 || input.mutations.length > max) {
    throw invalidArgument(`mutations must hold 1 to ${max} changes`, "mutations");
  }
  return {
    mutations: input.mutations.map(each),
    ...optional("idempotencyKey", idempotencyKey(input.idempotencyKey)),
    ...optional("expectedRevision", expectedRevision(input.expectedRevision)),
  };
}

/** What a batch writer supplies: per mutation, its proto field name, the confinement of its references and its apply. */
export interface BatchWriter<M, R> {
  readonly rpc: string;
  field(m: M): string;
  confine(c: WriteConfinement, m: M, index: number): Promise<void>;
  apply(tx: SqlQuerier, m: M, index: number): Promise<R>;
  /**
   * Whether apply(m) sends all its statements before its first await, none
   * chosen by what an earlier one answered (one statement, typically). Such
   * mutations are sent back to back without waiting for each other's answers
   * (one round trip for a run of them); the database still runs them in
   * order, and the first refusal in mutation order is the one reported.
   * Absent: every mutation waits for the one before.
   */
  pipelined?(m: M): boolean;
  /**
   * Optional set-based apply. Consecutive mutations with the same run key
   * form a run, which applyRun may apply in one statement; it returns
   * undefined when it cannot (the run is then applied one by one), else one
   * outcome per mutation: its result, or the refusal it gets (read in order,
   * so the first refusal is thrown with its mutation's index). A run must give
   * the outcomes that applying its mutations one by one would. When its
   * statement fails in the database, the whole write runs again one mutation
   * at a time, so the error names its mutation exactly as before.
   */
  runKey?(m: M): string | undefined;
  applyRun?(tx: SqlQuerier, run: ReadonlyArray<{ m: M; index: number }>): Promise<Array<R | AuthzError>> | undefined;
}

/** A run's statement failed in the database: the write is rolled back and runs again one mutation at a time. */
class RunFailed extends Error {}

/** Runs a validated batch through the pipeline: every mutation or none, one result per mutation. */
export async function runBatch<M, R>(
  db: SqlClient,
  caller: WriteCaller,
  input: BatchInput<M>,
  w: BatchWriter<M, R>,
): Promise<{ revision: string; results: R[] }> {
  const once = (runs: boolean) =>
    runWrite(db, caller, {
      rpc: w.rpc,
      request: { mutations: input.mutations, expectedRevision: input.expectedRevision ?? null },
      idempotencyKey: input.idempotencyKey,
      expectedRevision: input.expectedRevision,
      async confine(c) {
        for (const [i, m] of input.mutations.entries()) await w.confine(c, m, i);
      },
      apply: ({ tx }) => applyInOrder(tx, input.mutations, w, runs),
    });
  let outcome: WriteOutcome<R[]>;
  try {
    outcome = await once(w.applyRun !== undefined);
  } catch (err) {
    if (!(err instanceof RunFailed)) throw err;
    outcome = await once(false);
  }
  return { revision: outcome.revision, results: outcome.value };
}

/** The mutations from `start` that share its run key (at least two), or none. */
function runAt<M, R>(mutations: readonly M[], start: number, w: BatchWriter<M, R>): Array<{ m: M; index: number }> {
  const key = w.runKey?.(mutations[start] as M);
  if (key === undefined) return [];
  let end = start + 1;
  while (end < mutations.length && w.runKey?.(mutations[end] as M) === key) end++;
  return end - start < 2 ? [] : mutations.slice(start, end).map((m, k) => ({ m, index: start + k }));
}

/** Sends a run's statement; its outcomes are read in order (the first refusal thrown with its index). */
function sendRun<M, R>(tx: SqlQuerier, run: Array<{ m: M; index: number }>, w: BatchWriter<M, R>): Array<Promise<R>> | undefined {
  const sent = w.applyRun?.(tx, run);
  if (sent === undefined) return undefined;
  const failed = sent.catch((err: unknown) => {
    throw err instanceof SqlError ? new RunFailed("a run of mutations failed in the database", { cause: err }) : err;
  });
  return run.map(({ m, index }, k) =>
    atMutation(index, w.field(m), async () => {
      const outcome = (await failed)[k] as R | AuthzError;
      if (outcome instanceof AuthzError) throw outcome;
      return outcome;
    }),
  );
}

/**
 * Applies the mutations in order. A run of pipelined ones is sent at once and
 * their answers read in order: the first failure in mutation order is thrown
 * (a later one's "transaction is aborted" is only its consequence), and the
 * transaction rolls back as it would have without pipelining.
 */
async function applyInOrder<M, R>(tx: SqlQuerier, mutations: readonly M[], w: BatchWriter<M, R>, runs: boolean): Promise<R[]> {
  const results: R[] = [];
  let sent: Array<Promise<R>> = [];
  const send = (p: Promise<R>) => {
    p.catch(() => {}); // read (and thrown) in order by collect; never unhandled
    sent.push(p);
  };
  const collect = async () => {
    for (const p of sent) results.push(await p);
    sent = [];
  };
  for (let i = 0; i < mutations.length; i++) {
    const m = mutations[i] as M;
    const run = runs ? runAt(mutations, i, w) : [];
    const many = run.length > 0 ? sendRun(tx, run, w) : undefined;
    if (many !== undefined) {
      for (const p of many) send(p);
      i += run.length - 1;
      continue;
    }
    const one = (k: number) => atMutation(k, w.field(m), () => w.apply(tx, m, k));
    if (w.pipelined?.(m)) {
      send(one(i));
      continue;
    }
    await collect();
    results.push(await one(i));
  }
  await collect();
  return results;
}

/** A refusal found while applying one mutation (atMutation adds the mutation's index). */
export const refusal = <C extends DomainCode>(code: C, message: string, reason?: ReasonOf<C>): AuthzError =>
  new AuthzError(code, message, reason ? { reason } : {});

/**
 * Runs one mutation of a batch: its refusals carry the mutation's index, and
 * a database refusal is mapped with the mutation's field path.
 */
export async function atMutation<T>(index: number, field: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof SqlError) throw withIndex(fromSqlError(err, `mutations[${index}].${field}`), index);
    throw withIndex(err, index);
  }
}

function withIndex(err: unknown, index: number): unknown {
  if (!(err instanceof AuthzError) || err.metadata.mutation_index !== undefined) return err;
  return new AuthzError(err.code, err.message, { reason: err.reason, metadata: { ...err.metadata, mutation_index: String(index) }, cause: err.cause });
}
