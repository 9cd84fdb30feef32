import type { Logger } from "../logger.js";
import type { SqlClient, SqlQuerier } from "./sql.js";

/** The channel the change-log trigger notifies, payload = the new revision. */
export const CHANGE_CHANNEL = "authz_changes";

export interface ChangeFeedStats {
  reconnects: number;
  catchUps: number;
  notifications: number;
}

/**
 * ChangeFeed follows the database's newest committed revision: NOTIFY for
 * speed, a catch-up read on every (re)connect of the listener for the
 * notifications lost meanwhile, and a slow poll as a last safety net.
 */
export interface ChangeFeed {
  /** The newest revision known to be committed. */
  readonly revision: bigint;
  readonly stats: Readonly<ChangeFeedStats>;
  /** Subscribes to revision advances; returns the unsubscribe function. */
  onAdvance(fn: (revision: bigint) => void): () => void;
  /** Reads the newest committed revision from the database now (fully_consistent). */
  fetchLatest(): Promise<bigint>;
  /** Resolves once revision >= target, or rejects after timeoutMs. */
  waitFor(target: bigint, timeoutMs: number): Promise<bigint>;
  stop(): Promise<void>;
}

/** The newest committed revision, numbering committed writes that have none yet (authz_stamp, migration 0008). */
export async function readLatestRevision(db: SqlQuerier): Promise<bigint> {
  const rows = await db.query<{ revision: string }>("select authz_stamp()::text as revision");
  const r = rows[0];
  if (!r) throw new Error("authz_revision is empty: migrations incomplete");
  return BigInt(r.revision);
}

export async function startChangeFeed(db: SqlClient, logger: Logger, pollMs: number): Promise<ChangeFeed> {
  let revision = await readLatestRevision(db);
  const listeners = new Set<(r: bigint) => void>();
  const stats: ChangeFeedStats = { reconnects: 0, catchUps: 0, notifications: 0 };
  let listenCount = 0;
  let stopped = false;

  const advance = (r: bigint): void => {
    if (r <= revision) return;
    revision = r;
    for (const fn of listeners) {
      try {
        fn(r);
      } catch (err) {
        logger.error({ err }, "change feed subscriber failed");
      }
    }
  };

  const catchUp = async (why: string): Promise<void> => {
    try {
      const latest = await readLatestRevision(db);
      stats.catchUps++;
      if (latest > revision) logger.info({ from: revision.toString(), to: latest.toString(), why }, "change feed caught up");
      advance(latest);
    } catch (err) {
      if (!stopped) logger.warn({ err, why }, "change feed catch-up failed; will retry");
    }
  };

  const sub = await db.listen(
    CHANGE_CHANNEL,
    (payload) => {
      stats.notifications++;
      if (/^\d+$/.test(payload)) advance(BigInt(payload));
      else void catchUp("unparseable notification");
    },
    () => {
      listenCount++;
      if (listenCount > 1) {
        stats.reconnects++;
        logger.warn({ reconnects: stats.reconnects }, "change listener reconnected; catching up");
      }
      void catchUp(listenCount > 1 ? "listener reconnected" : "listener started");
    },
  );

  const poll = setInterval(() => void catchUp("safety poll"), pollMs);
  poll.unref();

  const feed: ChangeFeed = {
    get revision() {
      return revision;
    },
    stats,
    onAdvance(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async fetchLatest() {
      const latest = await readLatestRevision(db);
      advance(latest);
      return latest;
    },
    waitFor(target, timeoutMs) {
      if (revision >= target) return Promise.resolve(revision);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          off();
          reject(new Error(`revision ${target} not reached within ${timeoutMs} ms (at ${revision})`));
        }, timeoutMs);
        const off = feed.onAdvance((r) => {
          if (r >= target) {
            clearTimeout(timer);
            off();
            resolve(r);
          }
        });
      });
    },
    async stop() {
      stopped = true;
      clearInterval(poll);
      listeners.clear();
      await sub.unlisten().catch(() => {});
    },
  };
  return feed;
}
