import postgres from "postgres";
import type { Logger } from "../logger.js";
import { createPostgresListener } from "./postgres-listener.js";
import { Reachability } from "./reachability.js";
import { committedResult, type Isolation, type SentWithCommit, type SqlClient, type SqlQuerier } from "./sql.js";

type Sql = postgres.Sql | postgres.TransactionSql;

/** The server ends a transaction idle (waiting for its client) for longer than this. */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000;

/** Longest one connection attempt may take (postgres.js' default is 30 s). */
export const CONNECT_TIMEOUT_S = 5;

/**
 * Delay before a connection that failed is tried again, in seconds: at once,
 * then 25 ms doubling up to 250 ms. postgres.js counts failures across the
 * pool until a connection succeeds, and its default grows to 20 s, which kept
 * replicas stale and the service down long after the database was back.
 */
export const reconnectBackoff = (failures: number): number => (failures <= 1 ? 0 : Math.min(0.25, 0.025 * 2 ** (failures - 2)));

function querier(sql: Sql, reach: Reachability): SqlQuerier {
  return {
    query(text, params = []) {
      // Statements with parameters are prepared once per connection (their texts are fixed, never built from
      // values): one round trip instead of two (parse and describe, then bind and execute) and no re-planning.
      return reach.guard(
        async () => (await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: params.length > 0 })) as unknown as never[],
      );
    },
    exec(text) {
      return reach.guard(async () => {
        await sql.unsafe(text).simple();
      });
    },
    each(text, batchSize, onBatch) {
      return reach.guard(async () => {
        await sql.unsafe(text).cursor(batchSize, (rows) => {
          onBatch(rows as unknown as never[]);
        });
      });
    },
    copyOut(text, onFrames) {
      return reach.guard(async () => {
        // The patched postgres.js (patches/) hands copyFrames each socket read's run of whole CopyData
        // messages, inside the socket's data handler (which is the backpressure): no Buffer, stream push
        // or event per row. A call onFrames refuses fails the COPY, but the rest is still read (and
        // dropped), so the connection is left ready for the rollback. The stream only ends.
        let failed: { err: unknown } | undefined;
        const q = sql.unsafe(text) as unknown as postgres.PendingQuery<postgres.Row[]> & { copyFrames?: (frames: Buffer) => void };
        q.copyFrames = (frames) => {
          if (failed) return;
          try {
            onFrames(frames);
          } catch (err) {
            failed = { err };
          }
        };
        const stream = await q.readable();
        await new Promise<void>((resolve, reject) => {
          stream.on("data", () => {
            failed ??= { err: new Error("postgres.js streamed COPY data past copyFrames: is patches/postgres+3.4.9.patch applied?") };
          });
          stream.on("end", () => (failed ? reject(failed.err) : resolve()));
          stream.on("error", reject);
        });
      });
    },
  };
}

export interface PostgresClientOptions {
  url: string;
  poolMax: number;
  logger: Logger;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
}

/**
 * A postgres.js pool behind the SqlClient surface. Connection failures reject
 * with UNAVAILABLE (DATABASE_UNAVAILABLE); while the database is known to be
 * unreachable every statement is refused at once and a probe watches for its
 * return. LISTEN runs on a connection of its own (postgres-listener.ts).
 */
export function createPostgresClient(opts: PostgresClientOptions): SqlClient {
  const common = {
    connect_timeout: CONNECT_TIMEOUT_S,
    backoff: reconnectBackoff,
    onnotice: () => {},
    connection: {
      application_name: opts.applicationName ?? "authz",
      // A safety net: a transaction whose client stopped talking (a connection wedged by a
      // driver fault) is ended by the server, releasing its locks (the writers' row lock).
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
      // No JIT: authz's statements are short index lookups, and a table the planner misjudges (the
      // one-row authz_revision before its first ANALYZE, where autovacuum is off) made the change
      // feed's catch-up compile for ~100 ms on every write, so replicas lagged by hundreds of ms.
      jit: "off",
    },
  };
  const sql = postgres(opts.url, {
    ...common,
    max: opts.poolMax,
    idle_timeout: 60,
    // Keep int8 as text: revisions are compared as bigint, never as float.
    types: {},
  });
  const reach = new Reachability(() => sql`select 1`, opts.logger);
  const listener = createPostgresListener(opts.url, common, reach, opts.logger);
  const base = querier(sql, reach);
  return {
    kind: "postgres",
    ...base,
    readWriteTx<T>(fn: (tx: SqlQuerier) => Promise<T | SentWithCommit<T>>, options?: { isolation?: Isolation }): Promise<T> {
      const mode = options?.isolation ? `isolation level ${options.isolation}` : "";
      // A SentWithCommit resolves fn at once: postgres.js queues COMMIT right behind its statement.
      return reach.guard(async () => committedResult((await sql.begin(mode, (tx) => fn(querier(tx, reach)))) as T | SentWithCommit<T>));
    },
    listen: listener.listen,
    get reachable() {
      return reach.up;
    },
    onReachability: (fn) => reach.subscribe(fn),
    async close() {
      reach.close();
      await listener.close();
      await sql.end({ timeout: 5 });
    },
  };
}
