import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";
import { bounded, type SqlClient, type SqlQuerier } from "./sql.js";

/** The channel the change-log trigger notifies: the newest revision, or "pending" (docs/data-model.md). */
export const CHANGE_CHANNEL = "authz_changes";

/** Poll interval while the listener is down: the replica learns of new revisions this fast without notifications. */
export const FAST_POLL_MS = 200;
/** While catch-ups keep failing (the database is down), at most one warning per this many ms, with the count since the last. */
const FAILURE_LOG_MS = 10_000;

/** Why a catch-up ran when another client's write was announced ("pending"). */
const PENDING_WRITE = "a write is pending";

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

/** The change feed as a component: built at once, following the database from start() until stop(). */
export class ChangeFeedFollower implements ChangeFeed {
  readonly name = "change feed";
  readonly stats: ChangeFeedStats = { reconnects: 0, catchUps: 0, notifications: 0, listenerLosses: 0, pollFailures: 0 };
  #revision = 0n;
  #confirmedAt = Date.now();
  #lastPollOk = true;
  #listening = false;
  #listenCount = 0;
  #started = false;
  #stopped = false;
  #poll: NodeJS.Timeout | undefined;
  #sub: { unlisten(): Promise<void> } | undefined;
  readonly #subscribers = new Set<(r: bigint) => void>();

  constructor(
    private readonly db: SqlClient,
    private readonly logger: Logger,
    private readonly pollMs: number,
  ) {}

  get revision(): bigint {
    return this.#revision;
  }

  get listening(): boolean {
    return this.#listening;
  }

  /** Reads the newest revision, then listens and polls. */
  async start(): Promise<void> {
    this.#revision = await readLatestRevision(this.db);
    this.#confirmedAt = Date.now();
    this.#started = true;
    this.#sub = await this.db.listen(
      CHANGE_CHANNEL,
      (payload) => this.#onNotify(payload),
      () => this.#onListen(),
      () => this.#onLost(),
    );
    this.#schedulePoll();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#poll);
    this.#subscribers.clear();
    await this.#sub?.unlisten().catch(() => {});
  }

  stalenessMs(now = Date.now()): number {
    if (!this.#started) return Number.POSITIVE_INFINITY;
    // Notifications flowing and the last poll answered: as fresh as the notification latency.
    if (this.#listening && this.#lastPollOk) return 0;
    return Math.max(0, now - this.#confirmedAt);
  }

  onAdvance(fn: (revision: bigint) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  /** Reads the newest revision; a success confirms the feed as of the moment the read started. */
  async fetchLatest(): Promise<bigint> {
    if (!this.#started) throw new AuthzError("UNAVAILABLE", "authz is starting: the change feed is not following yet", { reason: "DATABASE_UNAVAILABLE" });
    const started = Date.now();
    const latest = await bounded(readLatestRevision(this.db), READ_TIMEOUT_MS);
    this.#confirmedAt = Math.max(this.#confirmedAt, started);
    this.#lastPollOk = true;
    this.#advance(latest);
    return latest;
  }

  waitFor(target: bigint, timeoutMs: number): Promise<bigint> {
    if (this.#revision >= target) return Promise.resolve(this.#revision);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`revision ${target} not reached within ${timeoutMs} ms (at ${this.#revision})`));
      }, timeoutMs);
      const off = this.onAdvance((r) => {
        if (r < target) return;
        clearTimeout(timer);
        off();
        resolve(r);
      });
    });
  }

  #advance(r: bigint): void {
    if (r <= this.#revision) return;
    this.#revision = r;
    for (const fn of this.#subscribers) {
      try {
        fn(r);
      } catch (err) {
        this.logger.error({ err }, "change feed subscriber failed");
      }
    }
  }

  /** Failed catch-ups not logged yet, and when one was last logged: an outage logs once per FAILURE_LOG_MS, not per fast poll. */
  #failures = { unlogged: 0, loggedAt: Number.NEGATIVE_INFINITY, inOutage: 0 };

  async #catchUp(why: string): Promise<void> {
    const before = this.#revision;
    try {
      await this.fetchLatest();
      this.stats.catchUps++;
      if (this.#failures.inOutage > 0) {
        this.logger.info({ failures: this.#failures.inOutage }, "change feed catch-up works again");
        this.#failures = { unlogged: 0, loggedAt: Number.NEGATIVE_INFINITY, inOutage: 0 };
      }
      if (this.#revision <= before) return;
      // Numbering another client's write is routine (one per write); a poll or a reconnect that finds
      // something new is worth an info line.
      const line = { from: before.toString(), to: this.#revision.toString(), why };
      if (why === PENDING_WRITE) this.logger.debug(line, "change feed caught up");
      else this.logger.info(line, "change feed caught up");
    } catch (err) {
      this.stats.pollFailures++;
      this.#lastPollOk = false;
      const f = this.#failures;
      f.inOutage++;
      f.unlogged++;
      if (!this.#stopped && Date.now() - f.loggedAt >= FAILURE_LOG_MS) {
        this.logger.warn({ err: (err as Error).message, why, failures: f.unlogged }, "change feed catch-up failed; will retry");
        f.unlogged = 0;
        f.loggedAt = Date.now();
      }
    }
  }

  /** The safety poll, rescheduled after each run: slow while notifications flow, fast while they cannot. */
  #schedulePoll(): void {
    if (this.#stopped) return;
    clearTimeout(this.#poll);
    const ms = this.#listening && this.#lastPollOk ? this.pollMs : Math.min(this.pollMs, FAST_POLL_MS);
    this.#poll = setTimeout(() => void this.#catchUp(this.#listening ? "safety poll" : "listener down").finally(() => this.#schedulePoll()), ms);
    this.#poll.unref();
  }

  #onNotify(payload: string): void {
    this.stats.notifications++;
    // A number is the newest revision; "pending" is a write by another client that this feed numbers (authz_stamp).
    if (/^\d+$/.test(payload)) this.#advance(BigInt(payload));
    else void this.#catchUp(PENDING_WRITE);
  }

  #onListen(): void {
    this.#listenCount++;
    this.#listening = true;
    if (this.#listenCount > 1) {
      // Not fresh until the catch-up below has read what was missed while nobody listened.
      this.#lastPollOk = false;
      this.stats.reconnects++;
      this.logger.warn({ reconnects: this.stats.reconnects }, "change listener reconnected; catching up");
    }
    void this.#catchUp(this.#listenCount > 1 ? "listener reconnected" : "listener started");
    this.#schedulePoll();
  }

  #onLost(): void {
    // Notifications flowed until now; from here the feed ages until a poll answers, and polls run fast.
    if (this.#listening && this.#lastPollOk) this.#confirmedAt = Date.now();
    this.#listening = false;
    this.stats.listenerLosses++;
    this.#schedulePoll();
  }
}

/** A change feed that is already following (tests and tools). */
export async function startChangeFeed(db: SqlClient, logger: Logger, pollMs: number): Promise<ChangeFeedFollower> {
  const feed = new ChangeFeedFollower(db, logger, pollMs);
  await feed.start();
  return feed;
}
