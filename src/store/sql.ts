// The small SQL surface the rest of the service needs, implemented by a
// postgres.js pool (real Postgres) and by PGlite (embedded development mode).
// Numbers that may exceed 2^53 (revisions) are selected as text by callers.

export type Row = Record<string, unknown>;

export interface SqlQuerier {
  /** One statement with $1..$n parameters. */
  query<T extends Row = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Several statements without parameters (migrations). */
  exec(text: string): Promise<void>;
  /** A large result in batches, so it never sits in memory whole. */
  each<T extends Row = Row>(text: string, batchSize: number, onBatch: (rows: T[]) => void): Promise<void>;
}

export type Isolation = "read committed" | "repeatable read" | "serializable";

export interface SqlClient extends SqlQuerier {
  /** Runs fn in a transaction: commits when it resolves, rolls back when it throws. */
  readWriteTx<T>(fn: (tx: SqlQuerier) => Promise<T>, options?: { isolation?: Isolation }): Promise<T>;
  /**
   * LISTEN on a channel. onListen runs each time the listener is (re)connected,
   * before any notification sent after that point: the hook for catching up on
   * notifications lost while nobody listened.
   */
  listen(channel: string, onNotify: (payload: string) => void, onListen: () => void): Promise<{ unlisten(): Promise<void> }>;
  close(): Promise<void>;
  /** "postgres" or "pglite", for logs and health. */
  readonly kind: "postgres" | "pglite";
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
