import { PGlite, type Transaction } from "@electric-sql/pglite";
import { committedResult, type Isolation, type SentWithCommit, type SqlClient, type SqlQuerier, toStoreError } from "./sql.js";

function querier(db: PGlite | Transaction): SqlQuerier {
  return {
    async query(text, params = []) {
      try {
        return (await db.query(text, params as unknown[])).rows as never[];
      } catch (err) {
        throw toStoreError(err);
      }
    },
    async exec(text) {
      try {
        await db.exec(text);
      } catch (err) {
        throw toStoreError(err);
      }
    },
    async each(text, batchSize, onBatch) {
      // Embedded data is small: one query, handed over in batches.
      const rows = await this.query(text);
      for (let i = 0; i < rows.length; i += batchSize) onBatch(rows.slice(i, i + batchSize) as never[]);
    },
  };
}

/** The embedded database, which can also dump its data directory. */
export interface PgliteClient extends SqlClient {
  dumpDataDir(): Promise<Blob>;
}

/**
 * In-process Postgres (PGlite, WASM) for the embedded development mode: the
 * same migrations, triggers and LISTEN/NOTIFY as a real server, one session.
 * In memory; loadDataDir starts from a dumped data directory instead of
 * running initdb (embedded-snapshot.ts).
 */
export async function createPgliteClient(options: { loadDataDir?: Blob } = {}): Promise<PgliteClient> {
  const db = await PGlite.create(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {});
  const base = querier(db);
  return {
    kind: "pglite",
    ...base,
    dumpDataDir: () => db.dumpDataDir("gzip"),
    async readWriteTx<T>(fn: (tx: SqlQuerier) => Promise<T | SentWithCommit<T>>, options?: { isolation?: Isolation }): Promise<T> {
      try {
        return await db.transaction(async (tx) => {
          if (options?.isolation) await tx.query(`set transaction isolation level ${options.isolation}`);
          // In process a round trip costs nothing: the last statement is read before COMMIT.
          return committedResult(await fn(querier(tx)));
        });
      } catch (err) {
        throw toStoreError(err);
      }
    },
    async listen(channel, onNotify, onListen) {
      const unsub = await db.listen(channel, onNotify);
      onListen();
      return { unlisten: () => unsub() };
    },
    // In process: reachable for as long as the process runs.
    reachable: true,
    onReachability: () => () => {},
    async close() {
      await db.close();
    },
  };
}
