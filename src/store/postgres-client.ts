import postgres from "postgres";
import type { Logger } from "../logger.js";
import { createPostgresListener } from "./postgres-listener.js";
import { Reachability } from "./reachability.js";
import { type Isolation, type SqlClient, type SqlQuerier } from "./sql.js";

type Sql = postgres.Sql | postgres.TransactionSql;

/** Longest one connection attempt may take (postgres.js' default is 30 s). */
export const CONNECT_TIMEOUT_S = 5;

/**
 * Delay before a connection that failed is tried again, in seconds:
 * 50 ms doubling up to 1 s. postgres.js' default grows to 20 s, which would
 * keep the service down long after the database is back.
 */
export const reconnectBackoff = (attempt: number): number => Math.min(1, 0.05 * 2 ** Math.max(0, attempt - 1));

function querier(sql: Sql, reach: Reachability): SqlQuerier {
  return {
    query(text, params = []) {
      return reach.guard(async () => (await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[])) as unknown as never[]);
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
    connection: { application_name: opts.applicationName ?? "authz" },
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
    readWriteTx<T>(fn: (tx: SqlQuerier) => Promise<T>, options?: { isolation?: Isolation }): Promise<T> {
      const mode = options?.isolation ? `isolation level ${options.isolation}` : "";
      return reach.guard(async () => (await sql.begin(mode, (tx) => fn(querier(tx, reach)))) as T);
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
