import type { Logger } from "../logger.js";
import type { SqlClient, SqlQuerier } from "./sql.js";

/** The channel the change-log trigger notifies, payload = the new revision. */
export const CHANGE_CHANNEL = "authz_changes";

/** Poll interval while the listener is down: the replica learns of new revisions this fast without notifications. */
export const FAST_POLL_MS = 200;

/** A read of the newest revision slower than this counts as failed (the next poll tries again). */
const READ_TIMEOUT_MS = 2000;

export interface ChangeFeedStats {
  reconnects: number;
  catchUps: number;
  notifications: number;
  /** Times the listener connection was lost. */
  listenerLosses: number;
  /** Reads of the newest revision that failed. */
  pollFailures: number;
}

/**
 * ChangeFeed follows the database's newest committed revision: NOTIFY for
 * speed, a catch-up read on every (re)connect of the listener for the
 * notifications lost meanwhile, and a poll as a safety net — every
 * AUTHZ_REVISION_POLL_MS while the listener is up, every FAST_POLL_MS while
 * it is down. It knows how old its knowledge is (stalenessMs).
 */
export interface ChangeFeed {
  /** The newest revision known to be committed. */
  readonly revision: bigint;
  readonly stats: Readonly<ChangeFeedStats>;
  /** Whether LISTEN is active (notifications arrive). */
  readonly listening: boolean;
  /** How long ago `revision` was last confirmed to be the database's newest; 0 while notifications flow. */
  stalenessMs(now?: number): number;
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
  let confirmedAt = Date.now();
  let lastPollOk = true;
  const listeners = new Set<(r: bigint) => void>();
  const stats: ChangeFeedStats = { reconnects: 0, catchUps: 0, notifications: 0, listenerLosses: 0, pollFailures: 0 };
  let listening = false;
  let listenCount = 0;
  let stopped = false;
  let poll: NodeJS.Timeout | undefined;

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

  /** Reads the newest revision; a success confirms the feed as of the moment the read started. */
  const confirm = async (): Promise<bigint> => {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const read = readLatestRevision(db);
    read.catch(() => {});
    const latest = await Promise.race([
      read,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${READ_TIMEOUT_MS} ms`)), READ_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    confirmedAt = Math.max(confirmedAt, started);
    lastPollOk = true;
    advance(latest);
    return latest;
  };

  const catchUp = async (why: string): Promise<void> => {
    const before = revision;
    try {
      await confirm();
      stats.catchUps++;
      if (revision > before) logger.info({ from: before.toString(), to: revision.toString(), why }, "change feed caught up");
    } catch (err) {
      stats.pollFailures++;
      lastPollOk = false;
      if (!stopped) logger.warn({ err: (err as Error).message, why }, "change feed catch-up failed; will retry");
    }
  };

  /** The safety poll, rescheduled after each run: slow while notifications flow, fast while they cannot. */
  const schedulePoll = (): void => {
    if (stopped) return;
    clearTimeout(poll);
    poll = setTimeout(
      () => {
        void catchUp(listening ? "safety poll" : "listener down").finally(schedulePoll);
      },
      listening && lastPollOk ? pollMs : Math.min(pollMs, FAST_POLL_MS),
    );
    poll.unref();
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
      listening = true;
      // Not fresh until the catch-up below has read what was missed while nobody listened.
      if (listenCount > 1) lastPollOk = false;
      if (listenCount > 1) {
        stats.reconnects++;
        logger.warn({ reconnects: stats.reconnects }, "change listener reconnected; catching up");
      }
      void catchUp(listenCount > 1 ? "listener reconnected" : "listener started");
      schedulePoll();
    },
    () => {
      // From here until the listener is back, notifications are lost: poll fast.
      // Notifications flowed until now; from here the feed ages until a poll answers.
      if (listening && lastPollOk) confirmedAt = Date.now();
      listening = false;
      stats.listenerLosses++;
      schedulePoll();
    },
  );
  schedulePoll();

  const feed: ChangeFeed = {
    get revision() {
      return revision;
    },
    stats,
    get listening() {
      return listening;
    },
    stalenessMs(now = Date.now()) {
      // Notifications flowing and the last poll answered: as fresh as the notification latency.
      if (listening && lastPollOk) return 0;
      return Math.max(0, now - confirmedAt);
    },
    onAdvance(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    fetchLatest: confirm,
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
      clearTimeout(poll);
      listeners.clear();
      await sub.unlisten().catch(() => {});
    },
  };
  return feed;
}
