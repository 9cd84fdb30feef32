import { NeedsReload, type Snapshot, SnapshotBuilder } from "../engine/snapshot.js";
import { type Change, FOLLOWED_TABLES, SNAPSHOT_COLUMNS } from "../engine/rows.js";
import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { ChangeFeed } from "./change-feed.js";
import { copyTableInto } from "./snapshot-copy.js";
import type { SqlClient } from "./sql.js";

/** Rows per batch while loading a snapshot. */
const SNAPSHOT_BATCH_ROWS = 20_000;

/** Above this many change rows a catch-up reloads a snapshot instead. */
const MAX_CATCH_UP_ROWS = 200_000;

export interface LiveEngineStats {
  loads: number;
  catchUps: number;
  changesApplied: number;
  lastLoadMs: number;
  /** Catch-ups that failed (each is retried with backoff while the engine is behind). */
  catchUpFailures: number;
  /** Token-less reads answered while the engine was staler than the bound (each also logged). */
  staleReads: number;
}

/** First and longest bound on one change-log catch-up (it doubles after each timeout). */
const CATCH_UP_TIMEOUT_MS = 1000;
const CATCH_UP_TIMEOUT_MAX_MS = 60_000;

/** Rejects when p has not settled within ms (p itself is left to finish, its outcome ignored). */
function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`catch-up did not finish within ${ms} ms`));
    }, ms);
  });
  p.catch(() => {});
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** First and longest wait before a failed catch-up is retried. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;

/**
 * The engine kept fresh: loaded from a consistent snapshot, then advanced by
 * replaying the change log (revision > applied) whenever the change feed
 * reports a newer revision; a failed catch-up is retried with backoff until
 * the engine reaches the feed. Callers ask for an engine at least as fresh as
 * they need; it never hands out an older one. Token-less reads get the
 * current engine; when it is staler than the bound (AUTHZ_MAX_STALENESS_MS)
 * that is counted and logged.
 */
export interface LiveEngine {
  /** The current engine (minimize_latency). */
  current(): Snapshot;
  /** The revision of the current engine (no stale-read accounting: for metrics and logs). */
  readonly revision: bigint;
  /** An engine at revision >= `revision`, waiting at most `timeoutMs`; INVALID_ARGUMENT at once for a revision the database has not reached. */
  atLeast(revision: bigint, timeoutMs: number): Promise<Snapshot>;
  /** An engine that includes every write committed before this call. */
  fullyConsistent(timeoutMs: number): Promise<Snapshot>;
  /** How long ago the current engine was last known to hold the database's newest revision. */
  stalenessMs(now?: number): number;
  readonly maxStalenessMs: number;
  readonly stats: Readonly<LiveEngineStats>;
  stop(): void;
}

/** How loadSnapshot reads the tables: row by row through the driver, or (real Postgres) binary COPY. */
export type SnapshotVia = "rows" | "copy";

/**
 * Loads the followed tables in one repeatable-read snapshot into a new
 * engine snapshot. On real Postgres each table streams by binary COPY
 * (snapshot-copy.ts); elsewhere (PGlite), or with via "rows", rows are read
 * in batches through a cursor. The transaction ends when the last row is
 * read: the build's closing work runs after it, so the connection is never
 * left idle in a transaction while node computes.
 */
export async function loadSnapshot(db: SqlClient, opts: { via?: SnapshotVia } = {}): Promise<Snapshot> {
  const { builder, revision } = await db.readWriteTx(
    async (tx) => {
      const [head] = await tx.query<{ revision: string }>("select revision::text as revision from authz_revision");
      const builder = new SnapshotBuilder();
      // The planner's row estimates size the id tables up front (no rehash while loading); a stale estimate only costs a rehash.
      const estimates = await tx.query<{ t: string; n: number }>(
        "select relname as t, reltuples::float8 as n from pg_class where oid = any($1::text::text[]::regclass[])",
        [`{${FOLLOWED_TABLES.join(",")}}`],
      );
      builder.reserve(Object.fromEntries(estimates.map((r) => [r.t, Number(r.n)])));
      const copyOut = opts.via === "rows" ? undefined : tx.copyOut?.bind(tx);
      for (const t of FOLLOWED_TABLES) {
        if (copyOut) await copyTableInto(copyOut, t, builder);
        else await tx.each(`select ${SNAPSHOT_COLUMNS[t]} from ${t}`, SNAPSHOT_BATCH_ROWS, (rows) => builder.load(t, rows));
      }
      return { builder, revision: BigInt(head?.revision ?? "0") };
    },
    { isolation: "repeatable read" },
  );
  return builder.build(revision);
}

type ChangeRow = {
  head: string;
  revision: string | null;
  table_name: string;
  op: Change["op"];
  old_row: Record<string, unknown> | null;
  new_row: Record<string, unknown> | null;
};

/**
 * The newest revision and the changes after \`after\` up to it, in one
 * statement: one snapshot (what a repeatable-read transaction gave) in one
 * round trip instead of four (begin, head, changes, commit), which is most of
 * a write's way to a replica on a busy machine. No change past the head is
 * returned, so a later commit is never half seen.
 */
async function fetchChanges(db: SqlClient, after: bigint): Promise<{ head: bigint; changes: Change[] | "too many" | "pruned" }> {
  const rows = await db.query<ChangeRow>(
    `select h.revision::text as head, c.revision::text as revision, c.table_name, c.op, c.old_row, c.new_row
       from authz_revision h
       left join lateral (
         select revision, id, table_name, op, old_row, new_row from authz_changes
          where revision > $1::text::bigint and revision <= h.revision
          order by revision, id limit ${MAX_CATCH_UP_ROWS + 1}) c on true
      order by c.revision, c.id`,
    [after.toString()],
  );
  const head = BigInt(rows[0]?.head ?? "0");
  if (head <= after) return { head, changes: [] };
  const found = rows[0]?.revision === null ? [] : rows;
  // Every revision has at least one row, so a missing next revision means
  // the log was pruned past this replica: only a snapshot can catch up.
  if (found.length === 0 || BigInt((found[0] as ChangeRow).revision as string) !== after + 1n) return { head, changes: "pruned" };
  // So does a hole further on (a log pruned by age alone): replaying over it would skip a revision for good.
  for (let i = 1; i < found.length; i++) {
    if (BigInt((found[i] as ChangeRow).revision as string) > BigInt((found[i - 1] as ChangeRow).revision as string) + 1n) return { head, changes: "pruned" };
  }
  if (found.length > MAX_CATCH_UP_ROWS) return { head, changes: "too many" };
  return { head, changes: found.map((r) => ({ table: r.table_name, op: r.op, oldRow: r.old_row, newRow: r.new_row })) };
}

/** AUTHZ_MAX_STALENESS_MS's default. */
export const DEFAULT_MAX_STALENESS_MS = 5000;

export interface LiveEngineOptions {
  /** Token-less reads from an engine staler than this are counted and logged (AUTHZ_MAX_STALENESS_MS). */
  maxStalenessMs: number;
}

const starting = () => new AuthzError("UNAVAILABLE", "authz is starting: the engine is not loaded yet; retry shortly");

/**
 * The live engine as a component: built at once (reads answer UNAVAILABLE
 * until start() has loaded a snapshot), then following the change feed
 * until stop(). A catch-up publishes the next snapshot only when its apply
 * succeeded; otherwise the last good one keeps serving while a snapshot
 * reloads.
 */
export class LiveEngineFollower implements LiveEngine {
  readonly name = "engine";
  readonly stats: LiveEngineStats = { loads: 0, catchUps: 0, changesApplied: 0, lastLoadMs: 0, catchUpFailures: 0, staleReads: 0 };
  readonly maxStalenessMs: number;
  #engine: Snapshot | undefined;
  readonly #waiters = new Set<() => void>();
  #stopped = false;
  /** When the engine was last known to hold the newest revision, while it is behind the feed. */
  #behindSince: number | undefined;
  #staleEpisode = false;
  #slowCatchUps = 0;
  #unsubscribe: () => void = () => {};
  readonly #refresh: () => Promise<void>;

  constructor(
    private readonly db: SqlClient,
    private readonly feed: ChangeFeed,
    private readonly logger: Logger,
    opts: LiveEngineOptions = { maxStalenessMs: DEFAULT_MAX_STALENESS_MS },
  ) {
    this.maxStalenessMs = opts.maxStalenessMs;
    this.#refresh = createRefresher(() => this.#catchUp(), {
      behind: () => !this.#stopped && this.#loaded.revision < this.feed.revision,
      onFailure: (err, retryInMs) => {
        this.stats.catchUpFailures++;
        const at = { at: this.#loaded.revision.toString(), target: this.feed.revision.toString() };
        this.logger.warn({ err: (err as Error).message, retryInMs, ...at }, "engine catch-up failed; retrying");
      },
      onSettled: () => {
        if (this.#loaded.revision >= this.feed.revision) this.#behindSince = undefined;
        for (const wake of [...this.#waiters]) wake();
      },
    });
  }

  get #loaded(): Snapshot {
    if (!this.#engine) throw starting();
    return this.#engine;
  }

  get revision(): bigint {
    return this.#engine?.revision ?? 0n;
  }

  async start(): Promise<void> {
    this.#engine = await this.#firstLoad();
    this.#unsubscribe = this.feed.onAdvance((r) => {
      if (r <= this.#loaded.revision) return;
      this.#behindSince ??= Date.now() - this.feed.stalenessMs();
      void this.#refresh();
    });
    if (this.feed.revision > this.#engine.revision) await this.#refresh();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe();
  }

  stalenessMs(now = Date.now()): number {
    if (!this.#engine) return Number.POSITIVE_INFINITY;
    const fromFeed = this.feed.stalenessMs(now);
    return this.#behindSince === undefined ? fromFeed : Math.max(fromFeed, now - this.#behindSince);
  }

  /** The current snapshot (minimize_latency); a read staler than the bound is counted and logged. */
  current(): Snapshot {
    const engine = this.#loaded;
    const age = this.stalenessMs();
    if (age > this.maxStalenessMs) {
      this.stats.staleReads++;
      if (!this.#staleEpisode) {
        this.#staleEpisode = true;
        const at = { stalenessMs: age, boundMs: this.maxStalenessMs, revision: engine.revision.toString(), listening: this.feed.listening };
        this.logger.warn(at, "answering token-less reads from an engine staler than AUTHZ_MAX_STALENESS_MS (counted in authz_engine_stale_reads_total)");
      }
    } else if (this.#staleEpisode) {
      this.#staleEpisode = false;
      this.logger.info({ stalenessMs: age, staleReads: this.stats.staleReads }, "engine within its staleness bound again");
    }
    return engine;
  }

  async atLeast(revision: bigint, timeoutMs: number): Promise<Snapshot> {
    if (this.#loaded.revision >= revision) return this.#loaded;
    // A token beyond what the feed knows: ask the database's newest revision
    // (one cheap read) and refuse at once when the token is beyond it too.
    if (revision > this.feed.revision) {
      const head = await this.#latest();
      if (revision > head) {
        throw new AuthzError("INVALID_ARGUMENT", `revision ${revision} is newer than this deployment's newest revision ${head}`, {
          reason: "UNKNOWN_REVISION",
          metadata: { field: "consistency.at_least_as_fresh" },
        });
      }
    }
    // The database has it: catch up from the change log, bounded by the budget.
    void this.#refresh();
    await this.#waitFor(revision, timeoutMs);
    if (this.#loaded.revision >= revision) return this.#loaded;
    throw new AuthzError("UNAVAILABLE", `could not reach revision ${revision} within ${timeoutMs} ms (at ${this.#loaded.revision}); retry`, {
      reason: "NOT_FRESH_ENOUGH",
    });
  }

  async fullyConsistent(timeoutMs: number): Promise<Snapshot> {
    return this.atLeast(await this.#latest(), timeoutMs);
  }

  /**
   * The first load, retried with backoff (0.5 s doubling to 10 s, as opening the database is) while the database
   * is unavailable: a connection lost in the middle of a cold load (a failover during a rollout) must not end the
   * process. Any other failure ends the start.
   */
  async #firstLoad(): Promise<Snapshot> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#load();
      } catch (err) {
        if (this.#stopped || !(err instanceof AuthzError && err.code === "UNAVAILABLE")) throw err;
        const wait = Math.min(10_000, 250 * 2 ** Math.min(attempt, 6));
        this.logger.warn({ err: err.message, attempt, retryInMs: wait }, "loading the engine failed; retrying");
        await new Promise((r) => setTimeout(r, wait).unref());
      }
    }
  }

  async #load(): Promise<Snapshot> {
    const started = Date.now();
    const e = await loadSnapshot(this.db);
    this.stats.loads++;
    this.stats.lastLoadMs = Date.now() - started;
    this.logger.info({ revision: e.revision.toString(), ms: this.stats.lastLoadMs, ...e.stats() }, "engine loaded");
    return e;
  }

  async #catchUp(): Promise<void> {
    // Bounded: a catch-up stuck on a broken connection must not hold every later one.
    // The bound doubles after each timeout, so a large backlog still gets through.
    const boundMs = Math.min(CATCH_UP_TIMEOUT_MAX_MS, CATCH_UP_TIMEOUT_MS * 2 ** this.#slowCatchUps);
    const { head, changes } = await withTimeout(fetchChanges(this.db, this.#loaded.revision), boundMs, () => this.#slowCatchUps++);
    this.#slowCatchUps = 0;
    if (head <= this.#loaded.revision) return;
    if (changes === "too many" || changes === "pruned") {
      const why = changes === "pruned" ? "the change log no longer reaches back to this replica" : "change backlog too large";
      this.logger.warn({ from: this.#loaded.revision.toString(), to: head.toString(), why: changes }, `${why}; reloading a snapshot`);
      this.#engine = await this.#load();
      return;
    }
    // The next snapshot is published only when apply succeeded; the last good one serves meanwhile.
    try {
      this.#engine = this.#loaded.apply(changes, head);
    } catch (err) {
      if (err instanceof NeedsReload) this.logger.info({ why: err.message }, "reloading a snapshot");
      else this.logger.warn({ err }, "applying the change log failed; reloading a snapshot");
      this.#engine = await this.#load();
      return;
    }
    this.stats.catchUps++;
    this.stats.changesApplied += changes.length;
  }

  #waitFor(revision: bigint, ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#loaded.revision >= revision) return resolve();
      const check = () => {
        if (this.#loaded.revision < revision) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        resolve();
      }, ms);
      this.#waiters.add(check);
    });
  }

  /** The database's newest revision; UNAVAILABLE when it cannot be asked. */
  async #latest(): Promise<bigint> {
    try {
      return await this.feed.fetchLatest();
    } catch (err) {
      if (err instanceof AuthzError) throw err;
      throw new AuthzError("UNAVAILABLE", "the database cannot be reached to confirm freshness; retry, or use minimize_latency", {
        reason: "DATABASE_UNAVAILABLE",
        cause: err,
      });
    }
  }
}

/** A live engine that is already loaded and following (tests and tools). */
export async function startLiveEngine(db: SqlClient, feed: ChangeFeed, logger: Logger, opts?: LiveEngineOptions): Promise<LiveEngineFollower> {
  const live = new LiveEngineFollower(db, feed, logger, opts);
  await live.start();
  return live;
}

/**
 * Runs catch-ups one at a time: a request during a run schedules exactly one
 * more. A run that fails is retried with backoff (50 ms doubling to 1 s) for
 * as long as `behind()` holds, so a failure is never waiting for the next
 * notification, which may not come.
 */
function createRefresher(
  catchUp: () => Promise<void>,
  hooks: { behind(): boolean; onFailure(err: unknown, retryInMs: number): void; onSettled(): void },
): () => Promise<void> {
  let running: Promise<void> | undefined;
  let again = false;
  let failures = 0;
  let retry: NodeJS.Timeout | undefined;
  const refresh = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    clearTimeout(retry);
    retry = undefined;
    running = (async () => {
      try {
        do {
          again = false;
          await catchUp();
        } while (again && hooks.behind());
        failures = 0;
      } catch (err) {
        failures++;
        const wait = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (failures - 1));
        hooks.onFailure(err, wait);
        retry = setTimeout(() => {
          retry = undefined;
          if (hooks.behind()) void refresh();
        }, wait);
        retry.unref();
      } finally {
        running = undefined;
        hooks.onSettled();
      }
    })();
    return running;
  };
  return refresh;
}
