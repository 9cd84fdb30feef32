import { NeedsReload, type Snapshot, SnapshotBuilder } from "../engine/snapshot.js";
import { type Change, FOLLOWED_TABLES, SNAPSHOT_COLUMNS } from "../engine/rows.js";
import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { ChangeFeed } from "./change-feed.js";
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
}

/**
 * The engine kept fresh: loaded from a consistent snapshot, then advanced by
 * replaying the change log (revision > applied) whenever the change feed
 * reports a newer revision. Callers ask for an engine at least as fresh as
 * they need; it never hands out an older one.
 */
export interface LiveEngine {
  /** The current engine (minimize_latency). */
  current(): Snapshot;
  /** An engine at revision >= `revision`, waiting at most `timeoutMs`. */
  atLeast(revision: bigint, timeoutMs: number): Promise<Snapshot>;
  /** An engine that includes every write committed before this call. */
  fullyConsistent(timeoutMs: number): Promise<Snapshot>;
  readonly stats: Readonly<LiveEngineStats>;
  stop(): void;
}

/** Loads the followed tables in one repeatable-read snapshot, streaming rows into a new engine snapshot. */
export async function loadSnapshot(db: SqlClient): Promise<Snapshot> {
  return db.readWriteTx(
    async (tx) => {
      const [head] = await tx.query<{ revision: string }>("select revision::text as revision from authz_revision");
      const builder = new SnapshotBuilder();
      for (const t of FOLLOWED_TABLES) {
        await tx.each(`select ${SNAPSHOT_COLUMNS[t]} from ${t}`, SNAPSHOT_BATCH_ROWS, (rows) => builder.load(t, rows));
      }
      return builder.build(BigInt(head?.revision ?? "0"));
    },
    { isolation: "repeatable read" },
  );
}

async function fetchChanges(db: SqlClient, after: bigint): Promise<{ head: bigint; changes: Change[] | "too many" | "pruned" }> {
  return db.readWriteTx(
    async (tx) => {
      const [h] = await tx.query<{ revision: string }>("select revision::text as revision from authz_revision");
      const head = BigInt(h?.revision ?? "0");
      if (head <= after) return { head, changes: [] };
      const rows = await tx.query<{
        revision: string;
        table_name: string;
        op: Change["op"];
        old_row: Record<string, unknown> | null;
        new_row: Record<string, unknown> | null;
      }>(
        `select revision::text as revision, table_name, op, old_row, new_row from authz_changes
          where revision > $1::text::bigint and revision <= $2::text::bigint order by id limit ${MAX_CATCH_UP_ROWS + 1}`,
        [after.toString(), head.toString()],
      );
      // Every revision has at least one row, so a missing next revision means
      // the log was pruned past this replica: only a snapshot can catch up.
      if (rows.length === 0 || BigInt((rows[0] as { revision: string }).revision) !== after + 1n) return { head, changes: "pruned" };
      if (rows.length > MAX_CATCH_UP_ROWS) return { head, changes: "too many" };
      return { head, changes: rows.map((r) => ({ table: r.table_name, op: r.op, oldRow: r.old_row, newRow: r.new_row })) };
    },
    { isolation: "repeatable read" },
  );
}

export async function startLiveEngine(db: SqlClient, feed: ChangeFeed, logger: Logger): Promise<LiveEngine> {
  const stats: LiveEngineStats = { loads: 0, catchUps: 0, changesApplied: 0, lastLoadMs: 0 };
  const load = async (): Promise<Snapshot> => {
    const started = Date.now();
    const e = await loadSnapshot(db);
    stats.loads++;
    stats.lastLoadMs = Date.now() - started;
    logger.info({ revision: e.revision.toString(), ms: stats.lastLoadMs, ...e.stats() }, "engine loaded");
    return e;
  };
  let engine = await load();
  const waiters = new Set<() => void>();
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  const catchUp = async (): Promise<void> => {
    const { head, changes } = await fetchChanges(db, engine.revision);
    if (head <= engine.revision) return;
    if (changes === "too many" || changes === "pruned") {
      logger.warn(
        { from: engine.revision.toString(), to: head.toString(), why: changes },
        changes === "pruned" ? "the change log no longer reaches back to this replica; reloading a snapshot" : "change backlog too large; reloading a snapshot",
      );
      engine = await load();
      return;
    }
    // The next snapshot is published only when apply succeeded; the last good one serves meanwhile.
    try {
      engine = engine.apply(changes, head);
    } catch (err) {
      if (err instanceof NeedsReload) logger.info({ why: err.message }, "reloading a snapshot");
      else logger.warn({ err }, "applying the change log failed; reloading a snapshot");
      engine = await load();
      return;
    }
    stats.catchUps++;
    stats.changesApplied += changes.length;
  };

  /** Runs catch-ups one at a time; a request during a run schedules exactly one more. */
  const refresh = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await catchUp();
        } while (again && !stopped);
      } catch (err) {
        logger.warn({ err }, "engine catch-up failed; the next notification or poll retries");
      } finally {
        running = undefined;
        for (const wake of [...waiters]) wake();
      }
    })();
    return running;
  };

  const unsubscribe = feed.onAdvance((r) => {
    if (r > engine.revision) void refresh();
  });
  if (feed.revision > engine.revision) await refresh();

  const waitFor = (revision: bigint, ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (engine.revision >= revision) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      }
      function check() {
        if (engine.revision >= revision) done();
      }
      waiters.add(check);
    });

  /** The database's newest revision; UNAVAILABLE when it cannot be asked. */
  const latest = async (): Promise<bigint> => {
    try {
      return await feed.fetchLatest();
    } catch (err) {
      throw new AuthzError("UNAVAILABLE", "the database cannot be reached to confirm freshness; retry, or use minimize_latency", {
        reason: "DATABASE_UNAVAILABLE",
        cause: err,
      });
    }
  };

  const atLeast = async (revision: bigint, timeoutMs: number): Promise<Snapshot> => {
    if (engine.revision >= revision) return engine;
    // Give the listener a moment (half the budget), then catch up ourselves.
    await waitFor(revision, Math.max(1, Math.floor(timeoutMs / 2)));
    if (engine.revision >= revision) return engine;
    await refresh();
    if (engine.revision >= revision) return engine;
    const head = await latest();
    if (revision > head) {
      throw new AuthzError("INVALID_ARGUMENT", `revision ${revision} is newer than this deployment's newest revision ${head}`, {
        reason: "UNKNOWN_REVISION",
        metadata: { field: "consistency.at_least_as_fresh" },
      });
    }
    await waitFor(revision, Math.max(1, Math.floor(timeoutMs / 2)));
    if (engine.revision >= revision) return engine;
    throw new AuthzError("UNAVAILABLE", `could not reach revision ${revision} within ${timeoutMs} ms (at ${engine.revision}); retry`, {
      reason: "NOT_FRESH_ENOUGH",
    });
  };

  return {
    current: () => engine,
    atLeast,
    async fullyConsistent(timeoutMs) {
      return atLeast(await latest(), timeoutMs);
    },
    stats,
    stop() {
      stopped = true;
      unsubscribe();
    },
  };
}
