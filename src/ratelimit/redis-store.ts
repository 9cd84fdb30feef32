// The Redis counter store: one Lua script call per batch of decisions (loaded
// once per connection, then called by SHA through ioredis defineCommand), server time
// inside the script, one packed string per counter (lua.ts), always with a TTL.
//
// Single Redis: every counter of a call is in one script, so the
// all-or-nothing rule is atomic. Redis Cluster: counters are hash-tagged by
// owner, so the counters of one owner share a slot; a call touching several
// owners (a user and its organization) runs one script per owner in parallel
// and refunds the owners that spent when another one denied (reserve, then
// refund; docs/rate-limits.md).
//
// Load: calls go through a dispatcher (redis-dispatcher.ts) that keeps at
// most `maxInFlight` of them unanswered and times Redis from when a call is
// sent, so a burst queued in this process is never taken for a slow Redis.
// The calls sent in one turn of the event loop go to Redis as one script
// command at the end of the turn (ConsumeBatch, single Redis): the script
// runs them in order, each all or nothing as if alone, reads each counter
// once and writes it once, so a busy counter costs Redis one read and one
// write per batch instead of per call. ioredis auto-pipelining is off: it keeps one pipeline in flight per
// connection and holds every later command back until that pipeline's last
// reply is read, so under load a command waited (and was timed) behind
// whole pipelines in this process; and it let an oversized call escape as an
// uncaught TypeError from its nextTick callbacks (issue 11).
//
// Failure: the Redis-responsiveness timeout, no offline queue (commands fail
// at once while disconnected), no replay of unanswered commands after a
// reconnect, and a circuit breaker that stops trying for a cool-down after
// repeated Redis failures (never after local queueing) and probes in the
// background until Redis answers again.

import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../logger.js";
import { type BreakerState, CircuitBreaker } from "./circuit-breaker.js";
import { ALGORITHM_CODE, buildScripts, type Scripts } from "./lua.js";
import { createDispatcher, type Dispatcher, QueueTimeout } from "./redis-dispatcher.js";
import {
  type Bucket,
  type BucketOutcome,
  type BucketReport,
  bucketKey,
  gateOpen,
  hashTag,
  MAX_COUNTERS_PER_CALL,
  type RateLimitStore,
  type StoreState,
  unspent,
} from "./store.js";

export interface RedisStoreOptions {
  url: string;
  cluster: boolean;
  keyPrefix: string;
  /** Longest Redis may take to answer a command, from when it is sent; then the failure mode answers. */
  commandTimeoutMs: number;
  /** Commands sent to Redis and not answered yet, at most; later calls wait in order. */
  maxInFlight?: number;
  /** Longest a call waits for one of those slots; then the failure mode answers (the breaker does not count it). */
  queueTimeoutMs?: number;
  connectTimeoutMs: number;
  breakerFailures: number;
  breakerCooldownMs: number;
  logger: Logger;
  /**
   * Tests only: the scripts take the time from this clock (microseconds)
   * instead of redis.call('TIME'), to hit window edges exactly.
   */
  testClockUs?: () => number;
}

export interface RedisStore extends RateLimitStore {
  readonly breaker: BreakerState;
  /** The last failure's message, for health details. */
  readonly lastError: string | undefined;
  /** Commands handed to Redis since the start (the breaker's effect is seen as this not growing). */
  readonly commandsSent: number;
}

export class StoreUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailable";
  }
}

type ScriptClient = (Redis | Cluster) & {
  rlConsume(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  rlConsumeOne(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  rlRefund(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
};

const REPORT_FIELDS = 8;
/** A few ms of Redis time at ~10 µs a script: far inside any sensible command timeout. */
export const DEFAULT_MAX_IN_FLIGHT = 512;
export const DEFAULT_QUEUE_TIMEOUT_MS = 5000;

/** Logs calls that waited too long for a Redis slot: at most once every 10 s, with their number. */
function overloadLog(log: Logger): () => void {
  let last = 0;
  let count = 0;
  return () => {
    count++;
    const now = Date.now();
    if (now - last < 10_000) return;
    log.warn({ calls: count }, "rate-limit store: calls waited too long for a Redis slot (this process is overloaded); their failure modes answered");
    last = now;
    count = 0;
  };
}

function connection(url: string): { host: string; port: number; username?: string; password?: string; tls?: object; db: number } {
  const u = new URL(url);
  const db = Number(u.pathname.replace(/^\//, "") || "0");
  return {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: Number(u.port || "6379"),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
    db: Number.isInteger(db) ? db : 0,
  };
}

function createClient(opts: RedisStoreOptions, scripts: Scripts): ScriptClient {
  const conn = connection(opts.url);
  // No ioredis commandTimeout: its timer rejects in the timers phase of the
  // event loop, before a reply already waiting in the socket is read, and it
  // starts when the command is queued, so any event-loop lag turned into
  // spurious timeouts (and opened the breaker). The dispatcher times out
  // instead, from when a command is sent and one poll phase later.
  const common: RedisOptions = {
    connectTimeout: opts.connectTimeoutMs,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    enableReadyCheck: true,
    // Off: see the head of this file. Each command is written when it is sent.
    enableAutoPipelining: false,
    ...(conn.username ? { username: conn.username } : {}),
    ...(conn.password ? { password: conn.password } : {}),
    ...(conn.tls ? { tls: conn.tls } : {}),
  };
  const client = (
    opts.cluster
      ? new Cluster([{ host: conn.host, port: conn.port }], {
          enableOfflineQueue: false,
          enableReadyCheck: true,
          clusterRetryStrategy: (times: number) => Math.min(100 * times, 2000),
          slotsRefreshTimeout: opts.connectTimeoutMs,
          retryDelayOnClusterDown: 50,
          retryDelayOnFailover: 50,
          retryDelayOnTryAgain: 50,
          maxRedirections: 4,
          redisOptions: common,
        })
      : new Redis({
          ...common,
          host: conn.host,
          port: conn.port,
          db: conn.db,
          enableOfflineQueue: false,
          retryStrategy: (times: number) => Math.min(50 * times, 1000),
        })
  ) as ScriptClient;
  client.defineCommand("rlConsume", { lua: scripts.consume });
  client.defineCommand("rlConsumeOne", { lua: scripts.consumeOne });
  client.defineCommand("rlRefund", { lua: scripts.refund });
  return client;
}

/**
 * The client and its health: every call goes through the breaker and the
 * dispatcher; a change of state is logged once; while the breaker is open, a
 * background probe tries Redis after each cool-down.
 */
class RedisLink {
  readonly client: ScriptClient;
  readonly breaker: CircuitBreaker;
  readonly dispatcher: Dispatcher;
  /** The last failure's message, for health details. */
  lastError: string | undefined;
  readonly #log: Logger;
  readonly #overload: () => void;
  #lastOk = true;
  #reported: StoreState | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: RedisStoreOptions, scripts: Scripts) {
    this.#log = opts.logger;
    this.client = createClient(opts, scripts);
    this.breaker = new CircuitBreaker({
      failureThreshold: opts.breakerFailures,
      cooldownMs: opts.breakerCooldownMs,
      onChange: (to) => {
        if (to === "open") this.#scheduleProbe();
        this.#observe();
      },
    });
    this.dispatcher = createDispatcher({
      timeoutMs: opts.commandTimeoutMs,
      maxInFlight: opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      queueTimeoutMs: opts.queueTimeoutMs ?? DEFAULT_QUEUE_TIMEOUT_MS,
    });
    this.#overload = overloadLog(this.#log);
    for (const ev of ["ready", "close", "end", "reconnecting", "node error", "error"]) {
      this.client.on(ev, (err?: unknown) => {
        if ((ev === "error" || ev === "node error") && err instanceof Error) this.lastError = err.message;
        if (ev === "ready") this.#lastOk = true;
        this.#observe();
      });
    }
  }

  state(): StoreState {
    if (this.breaker.state !== "closed") return "breaker_open";
    if (this.client.status !== "ready" || !this.#lastOk) return "down";
    return "up";
  }

  /**
   * Runs one Redis call through the breaker and the dispatcher; rejects with
   * StoreUnavailable. Redis failures (an error, no answer within the timeout)
   * count for the breaker; a call that only waited too long here does not.
   */
  guard<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.breaker.tryPass()) return Promise.reject(new StoreUnavailable("circuit breaker open: Redis is skipped for a cool-down"));
    return this.dispatcher.run(fn).then(
      (v) => {
        this.#succeeded();
        return v;
      },
      (err: unknown) => {
        if (err instanceof QueueTimeout) {
          this.breaker.release();
          this.#overload();
          throw new StoreUnavailable(err.message, { cause: err });
        }
        throw this.#failed(err);
      },
    );
  }

  ready(timeoutMs: number): Promise<boolean> {
    const client = this.client;
    if (client.status === "ready") {
      if (this.#lastOk && this.breaker.state === "closed") return Promise.resolve(true);
      // Connected, but its last command failed (a server that hangs keeps its connections open): ask it.
      return this.#answers(timeoutMs);
    }
    return new Promise<boolean>((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        client.off("ready", onReady);
        resolve(v);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(client.status === "ready"), timeoutMs);
      timer.unref();
      client.on("ready", onReady);
    });
  }

  /** Whether a PING through the breaker and the dispatcher is answered within timeoutMs. */
  #answers(timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
      this.guard(() => this.client.ping()).then(
        () => {
          clearTimeout(timer);
          resolve(true);
        },
        () => {
          clearTimeout(timer);
          resolve(false);
        },
      );
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#probeTimer);
    this.dispatcher.close(new StoreUnavailable("the rate-limit store is closed"));
    try {
      await Promise.race([this.client.quit(), new Promise((r) => setTimeout(r, 500).unref())]);
    } catch {
      // already disconnected
    }
    this.client.disconnect();
  }

  /** Logs a change of state once, never per call. */
  #observe(): void {
    const s = this.state();
    if (s === this.#reported) return;
    const from = this.#reported;
    this.#reported = s;
    if (this.#closed) return;
    if (s === "up") {
      // The next outage's warning names its own error, not one from before this recovery.
      this.lastError = undefined;
      this.#log.info({ redis: s, from }, "rate-limit store: Redis is up");
    } else
      this.#log.warn(
        { redis: s, from, lastError: this.lastError },
        s === "breaker_open" ? "rate-limit store: circuit breaker open, Redis is skipped" : "rate-limit store: Redis is down",
      );
  }

  #succeeded(): void {
    if (!this.#lastOk || this.breaker.state !== "closed") {
      this.#lastOk = true;
      this.breaker.success();
      this.#observe();
    } else this.breaker.success();
  }

  #failed(err: unknown): StoreUnavailable {
    this.#lastOk = false;
    this.lastError = (err as Error).message;
    this.breaker.failure();
    this.#observe();
    return err instanceof StoreUnavailable ? err : new StoreUnavailable(`Redis: ${this.lastError}`, { cause: err });
  }

  /** While the breaker is open, a background PING after each cool-down closes it as soon as Redis answers. */
  #scheduleProbe(): void {
    if (this.#closed || this.#probeTimer) return;
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = undefined;
      if (this.#closed || this.breaker.state === "closed") return;
      this.guard(() => this.client.ping()).catch(() => {
        /* failure re-opens the breaker, which schedules the next probe */
      });
    }, this.breaker.msUntilProbe() + 1);
    this.#probeTimer.unref();
  }
}

/** The most counters one batch command carries; a call that would go past it starts the next batch. */
export const MAX_BATCH_COUNTERS = 512;

interface BatchCall {
  readonly buckets: readonly Bucket[];
  readonly cost: number;
  /** The test clock's time of the call (buildScripts({ clock: "argument" })). */
  readonly clock: string | undefined;
  readonly resolve: (reply: number[]) => void;
  readonly reject: (err: Error) => void;
}

/**
 * The consume calls sent in one turn of the event loop, in the batch
 * script's arguments (lua.ts CONSUME), sent as one command when the turn
 * ends; each call gets its own slice of the reply. A batch of one goes to
 * the single-call script (CONSUME_ONE), which skips the batch's bookkeeping. A Cluster client sends
 * each call alone, at once (the counters of a batch may live on several
 * nodes).
 */
class ConsumeBatch {
  #calls: BatchCall[] = [];
  #counters = 0;
  #scheduled = false;

  constructor(
    private readonly client: ScriptClient,
    private readonly keyPrefix: string,
    private readonly single: boolean,
    private readonly clockUs: (() => number) | undefined,
  ) {}

  /** Queues one call (its buckets, with `gating` per bucket); resolves with {gate, then 8 numbers per bucket}. */
  add(buckets: readonly Bucket[], cost: number): Promise<number[]> {
    if (this.#counters + buckets.length > MAX_BATCH_COUNTERS) this.#flush();
    return new Promise<number[]>((resolve, reject) => {
      this.#calls.push({ buckets, cost, clock: this.clockUs ? String(this.clockUs()) : undefined, resolve, reject });
      this.#counters += buckets.length;
      if (!this.single) this.#flush();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        process.nextTick(() => {
          this.#scheduled = false;
          this.#flush();
        });
      }
    });
  }

  /** One call as the single-call script wants it: its counters, the cost, each counter's kind, then the test clock. */
  #sendOne(c: BatchCall): Promise<unknown> {
    const keys = c.buckets.map((b) => bucketKey(this.keyPrefix, b));
    const args: (string | number)[] = [c.cost];
    for (const b of c.buckets) args.push(ALGORITHM_CODE[b.algorithm], b.limit, b.windowSec * 1_000_000, b.gating ? 1 : 0);
    if (c.clock !== undefined) args.push(c.clock);
    return this.client.rlConsumeOne(keys.length, ...keys, ...args);
  }

  /** Calls as the batch script wants them: every counter, the counter kinds and call shapes, then each call's shape. */
  #sendBatch(calls: BatchCall[]): Promise<unknown> {
    const keys: string[] = [];
    const table = new BatchTable();
    const tail: (string | number)[] = [calls.length];
    for (const c of calls) {
      for (const b of c.buckets) keys.push(bucketKey(this.keyPrefix, b));
      tail.push(table.shape(c.buckets, c.cost));
      if (c.clock !== undefined) tail.push(c.clock);
    }
    return this.client.rlConsume(keys.length, ...keys, table.kinds, ...table.kindArgs, table.shapes, ...table.shapeArgs, ...tail);
  }

  #flush(): void {
    const calls = this.#calls;
    if (calls.length === 0) return;
    this.#calls = [];
    this.#counters = 0;
    let reply: Promise<unknown>;
    try {
      reply = calls.length === 1 ? this.#sendOne(calls[0] as BatchCall) : this.#sendBatch(calls);
    } catch (err) {
      reply = Promise.reject(err);
    }
    reply.then(
      (raw) => {
        const all = raw as number[];
        let at = 0;
        for (const c of calls) {
          const end = at + 1 + c.buckets.length * REPORT_FIELDS;
          c.resolve(all.slice(at, end));
          at = end;
        }
      },
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        for (const c of calls) c.reject(e);
      },
    );
  }
}

/**
 * A batch's distinct counter kinds (algorithm, limit, window, gating) and
 * call shapes (cost and kinds), each numbered from 1 in the order met, as
 * the batch script's arguments.
 */
class BatchTable {
  readonly kindArgs: (string | number)[] = [];
  kinds = 0;
  readonly shapeArgs: (string | number)[] = [];
  shapes = 0;
  /** Kind numbers by policy id (a policy edited within a turn may give two). */
  readonly #byPolicy = new Map<number, number[]>();
  /** Shapes of one counter, by cost then kind; shapes of several, by their text. */
  readonly #single = new Map<number, Map<number, number>>();
  readonly #multi = new Map<string, number>();

  shape(buckets: readonly Bucket[], cost: number): number {
    if (buckets.length === 1) {
      const kind = this.#kind(buckets[0] as Bucket);
      let byKind = this.#single.get(cost);
      if (!byKind) {
        byKind = new Map();
        this.#single.set(cost, byKind);
      }
      let s = byKind.get(kind);
      if (s === undefined) {
        s = this.#add(cost, [kind]);
        byKind.set(kind, s);
      }
      return s;
    }
    const kinds = buckets.map((b) => this.#kind(b));
    const text = `${cost}:${kinds.join(",")}`;
    let s = this.#multi.get(text);
    if (s === undefined) {
      s = this.#add(cost, kinds);
      this.#multi.set(text, s);
    }
    return s;
  }

  #add(cost: number, kinds: number[]): number {
    this.shapeArgs.push(kinds.length, cost, ...kinds);
    return ++this.shapes;
  }

  #kind(b: Bucket): number {
    const code = ALGORITHM_CODE[b.algorithm];
    const windowUs = b.windowSec * 1_000_000;
    const gating = b.gating ? 1 : 0;
    const seen = this.#byPolicy.get(b.policyId);
    for (const k of seen ?? []) {
      const at = (k - 1) * 4;
      const a = this.kindArgs;
      if (a[at] === code && a[at + 1] === b.limit && a[at + 2] === windowUs && a[at + 3] === gating) return k;
    }
    this.kindArgs.push(code, b.limit, windowUs, gating);
    const k = ++this.kinds;
    if (seen) seen.push(k);
    else this.#byPolicy.set(b.policyId, [k]);
    return k;
  }
}

type OkOutcome = Extract<BucketOutcome, { ok: true }>;

/** The counter scripts: one call per owner group, and in a cluster the refunds when another owner denied. */
class RedisCounters {
  readonly #batch: ConsumeBatch;

  constructor(
    private readonly link: RedisLink,
    private readonly opts: RedisStoreOptions,
  ) {
    this.#batch = new ConsumeBatch(link.client, opts.keyPrefix, !opts.cluster, opts.testClockUs);
  }

  async consume(buckets: readonly Bucket[], cost: number): Promise<BucketOutcome[]> {
    if (buckets.length === 0) return [];
    if (!this.opts.cluster) return this.#runGroup(buckets, cost);
    // One script per owner (one slot each), in parallel.
    const groups = new Map<string, number[]>();
    buckets.forEach((b, i) => {
      const tag = hashTag(b.owner);
      const g = groups.get(tag);
      if (g) g.push(i);
      else groups.set(tag, [i]);
    });
    if (groups.size === 1) return this.#runGroup(buckets, cost);
    const outcomes: BucketOutcome[] = new Array(buckets.length);
    await Promise.all(
      [...groups.values()].map(async (idx) => {
        const res = await this.#runGroup(
          idx.map((i) => buckets[i] as Bucket),
          cost,
        );
        idx.forEach((i, j) => (outcomes[i] = res[j] as BucketOutcome));
      }),
    );
    if (gateOpen(buckets, outcomes)) return outcomes;
    // Another owner denied (or is unreachable and fails closed): give back what was spent.
    await Promise.all([...groups.values()].map((idx) => this.#refundOwner(buckets, outcomes, idx, cost)));
    return outcomes;
  }

  /** The refund script's arguments: the cost, then per bucket its algorithm, limit, window (µs) and `last`; the test clock at the end. */
  #refundCall(buckets: readonly Bucket[], cost: number, last: (b: Bucket, i: number) => number): (string | number)[] {
    const keys = buckets.map((b) => bucketKey(this.opts.keyPrefix, b));
    const args: (string | number)[] = [cost];
    buckets.forEach((b, i) => args.push(ALGORITHM_CODE[b.algorithm], b.limit, b.windowSec * 1_000_000, last(b, i)));
    return [...keys, ...args, ...(this.opts.testClockUs ? [String(this.opts.testClockUs())] : [])];
  }

  async #runGroup(buckets: readonly Bucket[], cost: number): Promise<BucketOutcome[]> {
    if (buckets.length > MAX_COUNTERS_PER_CALL) {
      // The limiter refuses such calls first; never send an oversized script.
      const error = new StoreUnavailable(`a call may touch at most ${MAX_COUNTERS_PER_CALL} counters, got ${buckets.length}`);
      return buckets.map(() => ({ ok: false, error }));
    }
    try {
      const raw = await this.link.guard(() => this.#batch.add(buckets, cost));
      const gate = raw[0] === 1;
      return buckets.map((_, i) => {
        const f = (j: number) => Number(raw[1 + i * REPORT_FIELDS + j]);
        const report: BucketReport = {
          allowed: f(0) === 1,
          remaining: f(1),
          resetAfterUs: f(2),
          retryAfterUs: f(3),
          count: f(4),
          previousCount: f(5),
          windowStartUs: f(6),
          lastUpdatedUs: f(7),
        };
        const spent = gate && report.allowed && cost > 0;
        return { ok: true, report: spent ? report : unspent(report, cost), spent };
      });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      return buckets.map(() => ({ ok: false, error }));
    }
  }

  /** Gives back what one owner's group (`idx`) spent, and reports those buckets as not spent. */
  async #refundOwner(buckets: readonly Bucket[], outcomes: BucketOutcome[], idx: readonly number[], cost: number): Promise<void> {
    const spent = idx.filter((i) => {
      const o = outcomes[i] as BucketOutcome;
      return o.ok && o.spent;
    });
    if (spent.length === 0) return;
    const spentBuckets = spent.map((i) => buckets[i] as Bucket);
    const reports = spent.map((i) => (outcomes[i] as OkOutcome).report);
    try {
      await this.link.guard(() =>
        this.link.client.rlRefund(spentBuckets.length, ...this.#refundCall(spentBuckets, cost, (_, i) => (reports[i] as BucketReport).windowStartUs)),
      );
      for (const i of spent) {
        const o = outcomes[i] as OkOutcome;
        outcomes[i] = {
          ok: true,
          report: { ...o.report, count: Math.max(0, o.report.count - cost), remaining: Math.min(buckets[i]?.limit ?? 0, o.report.remaining + cost) },
          spent: false,
        };
      }
    } catch (err) {
      this.opts.logger.warn(
        { err: (err as Error).message, owner: hashTag((buckets[spent[0] as number] as Bucket).owner) },
        "rate-limit refund failed: the units stay counted until the window ends",
      );
    }
  }
}

export function createRedisStore(opts: RedisStoreOptions): RedisStore {
  const link = new RedisLink(opts, buildScripts({ clock: opts.testClockUs ? "argument" : "server" }));
  const counters = new RedisCounters(link, opts);
  return {
    kind: opts.cluster ? "redis-cluster" : "redis",
    get breaker() {
      return link.breaker.state;
    },
    get lastError() {
      return link.lastError;
    },
    get commandsSent() {
      return link.dispatcher.stats().sent;
    },
    consume: (buckets, cost) => counters.consume(buckets, cost),
    state: () => link.state(),
    ready: (timeoutMs) => link.ready(timeoutMs),
    failureRetryAfterUs() {
      return Math.max(link.breaker.msUntilProbe(), 1000) * 1000;
    },
    close: () => link.close(),
  };
}
