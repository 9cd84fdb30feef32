// The one write pipeline. Every writer (ManageRoles, ManageRateLimits, the
// ownership RPCs, the directory) supplies its validated request, a
// confinement pass and its mutations; the pipeline runs them in one
// transaction, in this order:
//
//   1. the writers' lock (revision order, see docs/data-model.md);
//   2. the idempotency record, scoped to the caller (and its tenant): a retry
//      of the same request returns the first answer, a different request
//      under the same key is ALREADY_EXISTS;
//   3. confinement: a tenant-bound caller's references are checked before
//      any mutation runs, so no error can name another tenant's rows;
//   4. expected_revision;
//   5. the mutations;
//   6. the database's tenancy backstop (authz_assert_tenant) for bound callers;
//   7. the revision the write committed at, and the idempotency record.
//
// Database refusals become domain errors through one mapping (write-errors.ts).

import { createHash } from "node:crypto";
import type { Caller } from "../auth/caller.js";
import { AuthzError } from "../errors.js";
import { type SqlClient, SqlError, type SqlQuerier } from "./sql.js";
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

interface Stored {
  revision: string;
  value: unknown;
}

async function replay(tx: SqlQuerier, scope: string, key: string, hash: string): Promise<Stored | undefined> {
  const rows = await tx.query<{ request_hash: string; response: string }>(
    "select request_hash, response::text as response from authz_idempotency where scope = $1::text and key = $2::text",
    [scope, key],
  );
  const first = rows[0];
  if (!first) return undefined;
  if (first.request_hash !== hash) {
    throw new AuthzError("ALREADY_EXISTS", "idempotency_key was already used with a different request", { reason: "IDEMPOTENCY_KEY_REUSED" });
  }
  return JSON.parse(first.response) as Stored;
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
  throw new AuthzError("FAILED_PRECONDITION", `expected_revision ${expected} is not the newest revision ${current}; nothing was written`, {
    reason: "REVISION_MOVED",
    metadata: { expected_revision: expected, revision: current },
  });
}

/**
 * Runs one write atomically: every mutation or none. Returns the revision
 * it committed at and the writer's result; replays the first answer for a
 * repeated idempotency key.
 */
export async function runWrite<R>(db: SqlClient, caller: WriteCaller, plan: WritePlan<R>): Promise<WriteOutcome<R>> {
  const scope = idempotencyScope(plan.rpc, caller);
  const hash = plan.idempotencyKey === undefined ? "" : sha256(canonicalJson(plan.request));
  const revive = plan.revive ?? ((v: unknown) => v as R);
  let outcome: WriteOutcome<R> | CommittedRefusal;
  try {
    outcome = await db.readWriteTx(async (tx) => {
      const [locked] = await tx.query<{ revision: string }>("select revision::text as revision from authz_revision for update");
      const current = (locked as { revision: string }).revision;
      if (plan.idempotencyKey !== undefined) {
        const first = await replay(tx, scope, plan.idempotencyKey, hash);
        if (first) return { revision: first.revision, value: revive(first.value) };
      }
      if (caller.tenantId && plan.confine) await plan.confine(new WriteConfinement(tx, caller));
      checkExpected(plan.expectedRevision, current);
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
      const [after] = await tx.query<{ revision: string }>("select revision::text as revision from authz_revision");
      const result: WriteOutcome<R> = { revision: (after as { revision: string }).revision, value };
      if (plan.idempotencyKey !== undefined) {
        await tx.query(
          "insert into authz_idempotency (scope, key, request_hash, response) values ($1::text, $2::text, $3::text, $4::text::jsonb)",
          [scope, plan.idempotencyKey, hash, JSON.stringify(result)],
        );
      }
      return result;
    });
  } catch (err) {
    // Failures outside a mutation: the lock or idempotency statements, or a deferred check at commit.
    throw err instanceof SqlError ? fromSqlError(err, "the write") : err;
  }
  if (outcome instanceof CommittedRefusal) throw outcome.error;
  return outcome;
}

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
