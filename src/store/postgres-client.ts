import postgres from "postgres";
import type { Logger } from "../logger.js";
import { type Isolation, type SqlClient, type SqlQuerier, toSqlError } from "./sql.js";

type Sql = postgres.Sql | postgres.TransactionSql;

function querier(sql: Sql): SqlQuerier {
  return {
    async query(text, params = []) {
      try {
        return (await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[])) as unknown as never[];
      } catch (err) {
        throw toSqlError(err);
      }
    },
    async exec(text) {
      try {
        await sql.unsafe(text).simple();
      } catch (err) {
        throw toSqlError(err);
      }
    },
    async each(text, batchSize, onBatch) {
      try {
        await sql.unsafe(text).cursor(batchSize, (rows) => {
          onBatch(rows as unknown as never[]);
        });
      } catch (err) {
        throw toSqlError(err);
      }
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

export function createPostgresClient(opts: PostgresClientOptions): SqlClient {
  const sql = postgres(opts.url, {
    max: opts.poolMax,
    idle_timeout: 60,
    connect_timeout: 10,
    onnotice: () => {},
    connection: { application_name: opts.applicationName ?? "authz" },
    // Keep int8 as text: revisions are compared as bigint, never as float.
    types: {},
  });
  const base = querier(sql);
  return {
    kind: "postgres",
    ...base,
    async readWriteTx<T>(fn: (tx: SqlQuerier) => Promise<T>, options?: { isolation?: Isolation }): Promise<T> {
      try {
        const mode = options?.isolation ? `isolation level ${options.isolation}` : "";
        return (await sql.begin(mode, (tx) => fn(querier(tx)))) as T;
      } catch (err) {
        throw toSqlError(err);
      }
    },
    async listen(channel, onNotify, onListen) {
      const sub = await sql.listen(channel, (payload) => onNotify(payload), onListen);
      return { unlisten: () => sub.unlisten() };
    },
    async close() {
      await sql.end({ timeout: 5 });
    },
  };
}
