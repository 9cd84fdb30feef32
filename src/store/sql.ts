// The small SQL surface the rest of the service needs, implemented by a
// postgres.js pool (real Postgres) and by PGlite (embedded development mode).
// Numbers that may exceed 2^53 (revisions) are selected as text by callers.
// A statement that fails because the connection failed (refused, reset,
// terminated, timed out) rejects with AuthzError UNAVAILABLE
// (DATABASE_UNAVAILABLE), so every caller maps it right without knowing SQL.

import { AuthzError } from "../errors.js";

export type Row = Record<string, unknown>;

export interface SqlQuerier {
  /** One statement with $1..$n parameters. */
  query<T extends Row = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Several statements without parameters (migrations). */
  exec(text: string): Promise<void>;
  /** A large result in batches, so it never sits in memory whole. */
  each<T extends Row = Row>(text: string, batchSize: number, onBatch: (rows: T[]) => void): Promise<void>;
  /**
   * COPY ... TO STDOUT, its data handed to onFrames as it streams, as the
   * protocol's CopyData messages ('d', a 32-bit length counting itself, the
   * data): each call one or more whole messages, valid only during the call
   * (CopyBinaryReader.pushFrames reads them). Only where the client can
   * stream COPY (real Postgres); absent otherwise (PGlite), where callers
   * read rows instead.
   */
  copyOut?(text: string, onFrames: (frames: Buffer) => void): Promise<void>;
}

export type Isolation = "read committed" | "repeatable read" | "serializable";

/**
 * What a transaction function returns when its last statement may be sent
 * together with COMMIT: the client does not wait for that statement's answer
 * before committing, so the transaction holds its locks one round trip less.
 * readWriteTx resolves with the statement's result after the commit; if the
 * statement failed, the COMMIT behind it rolled back and readWriteTx rejects
 * with the statement's error.
 */
export class SentWithCommit<T> {
  constructor(readonly last: Promise<T>) {
    last.catch(() => {}); // read by readWriteTx after the commit
  }
}

/** The result of a transaction function, its last statement read when it was sent with COMMIT. */
export const committedResult = <T>(r: T | SentWithCommit<T>): Promise<T> | T => (r instanceof SentWithCommit ? r.last : r);

export interface SqlClient extends SqlQuerier {
  /** Runs fn in a transaction: commits when it resolves, rolls back when it throws (see SentWithCommit). */
  readWriteTx<T>(fn: (tx: SqlQuerier) => Promise<T | SentWithCommit<T>>, options?: { isolation?: Isolation }): Promise<T>;
  /**
   * LISTEN on a channel. onListen runs each time the listener is (re)connected,
   * before any notification sent after that point: the hook for catching up on
   * notifications lost while nobody listened.
   */
  listen(channel: string, onNotify: (payload: string) => void, onListen: () => void, onLost?: () => void): Promise<{ unlisten(): Promise<void> }>;
  close(): Promise<void>;
  /** "postgres" or "pglite", for logs and health. */
  readonly kind: "postgres" | "pglite";
  /** Whether the database answered the last attempt to reach it (false: statements are refused at once). */
  readonly reachable: boolean;
  /** Subscribes to changes of `reachable`; returns the unsubscribe function. */
  onReachability(fn: (reachable: boolean) => void): () => void;
}

/** A database error reduced to what callers may inspect; never shown to API callers as is. */
export class SqlError extends Error {
  readonly code: string | undefined;
  readonly constraint: string | undefined;
  readonly detail: string | undefined;
  constructor(message: string, code: string | undefined, constraint: string | undefined, detail: string | undefined) {
    super(message);
    this.name = "SqlError";
    this.code = code;
    this.constraint = constraint;
    this.detail = detail;
  }
}

export function toSqlError(err: unknown): unknown {
  if (err instanceof SqlError || typeof err !== "object" || err === null) return err;
  const e = err as { message?: unknown; code?: unknown; constraint_name?: unknown; constraint?: unknown; detail?: unknown };
  if (typeof e.code !== "string" || !/^[0-9A-Z]{5}$/.test(e.code)) return err;
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return new SqlError(String(e.message ?? "database error"), e.code, str(e.constraint_name) ?? str(e.constraint), str(e.detail));
}

/** The reason of every UNAVAILABLE that a lost, refused or timed-out database connection causes. */
export const DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE";

const UNAVAILABLE_MESSAGE = "the database cannot be reached; retry with backoff";

export const databaseUnavailable = (cause?: unknown): AuthzError => new AuthzError("UNAVAILABLE", UNAVAILABLE_MESSAGE, { reason: DATABASE_UNAVAILABLE, cause });

/**
 * A write's failure as its caller gets it: a lost database leaves a write's
 * outcome unknown, which the message says, and, for a write sent with an
 * idempotency key, that a retry with the same key returns it if it was
 * applied. Reads keep the plain message.
 */
export function writeFailure(err: unknown, keyed: boolean): unknown {
  if (!(err instanceof AuthzError) || err.reason !== DATABASE_UNAVAILABLE || err.message !== UNAVAILABLE_MESSAGE) return err;
  const hint = keyed ? "a write: it may have been applied; a retry with the same idempotency_key returns it" : "a write: it may have been applied";
  return new AuthzError("UNAVAILABLE", `${UNAVAILABLE_MESSAGE} (${hint})`, { reason: DATABASE_UNAVAILABLE, cause: err.cause });
}

/** Client-side codes (postgres.js and Node's net) of a connection that failed, as opposed to a statement. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * SQLSTATEs of a connection-level failure: class 08 (connection exception),
 * 57P01–57P03 (terminated by an administrator, crash, cannot connect now),
 * 53300 (too many connections), 25P03 (the server ended a transaction left
 * idle: idle_in_transaction_session_timeout).
 */
const CONNECTION_SQLSTATE = /^(08[0-9A-Z]{3}|57P0[1-3]|53300|25P03)$/;

/** Whether err means the database connection failed (the statement may never have run, or its outcome is unknown). */
export function isConnectionFailure(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  return CONNECTION_CODES.has(code) || CONNECTION_SQLSTATE.test(code);
}

/** Failures that say the server cannot be reached at all (not just one connection lost). */
const UNREACHABLE = new Set(["CONNECT_TIMEOUT", "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "57P03", "08001", "08004"]);

export function isUnreachable(err: unknown): boolean {
  const cause = err instanceof AuthzError ? err.cause : err;
  const code = typeof cause === "object" && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return typeof code === "string" && UNREACHABLE.has(code);
}

/** What a failed statement rejects with: UNAVAILABLE for a failed connection, SqlError for a statement error, else as is. */
export function toStoreError(err: unknown): unknown {
  if (err instanceof AuthzError) return err;
  if (isConnectionFailure(err)) return databaseUnavailable(err);
  return toSqlError(err);
}

/** Rejects when p has not settled within ms. */
export function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => {});
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
