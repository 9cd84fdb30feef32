// One conformance suite for every counter store: the shared single Redis
// (unique key prefix per run), a local 3-master Redis Cluster started here,
// and the in-process store. Time is the store's own (Redis server time), so
// the assertions hold whatever the clock says; test/ratelimit-arithmetic.test.ts
// pins the arithmetic to exact times.
import { randomUUID } from "node:crypto";
import { Cluster, Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { AppliedPolicy, CounterOwner, RateLimitAlgorithm, RatePolicy } from "../src/engine/rate-limit-policies.js";
import { createLogger } from "../src/logger.js";
import { NEVER } from "../src/ratelimit/algorithms.js";
import { consume, readCounters } from "../src/ratelimit/limiter.js";
import { createMemoryStore } from "../src/ratelimit/memory-store.js";
import { createRedisStore } from "../src/ratelimit/redis-store.js";
import { ALGORITHM_CODE, decodeStoredCounter } from "../src/ratelimit/lua.js";
import { type Bucket, type BucketOutcome, bucketKey, type RateLimitStore } from "../src/ratelimit/store.js";
import { type RedisCluster, startRedisCluster } from "./support/redis.js";

const logger = createLogger("silent");
const ALGORITHMS: RateLimitAlgorithm[] = ["fixed_window", "sliding_window", "token_bucket"];

interface Backend {
  name: string;
  /** Multi-owner calls are reserve-then-refund (Redis Cluster): atomic per owner only. */
  perOwnerAtomic: boolean;
  store: RateLimitStore;
  prefix: string;
  /** A raw client on the same Redis, for TTL checks. */
  raw?: Redis | Cluster;
}

let cluster: RedisCluster | undefined;
const backends: Backend[] = [];

const redisStore = (url: string, isCluster: boolean, prefix: string) =>
  createRedisStore({
    url,
    cluster: isCluster,
    keyPrefix: prefix,
    // This suite is about arithmetic and atomicity under load, not timeouts
    // (test/ratelimit-failure.test.ts covers those): a CI machine running two
    // test files at once must not turn slow answers into failure-mode ones.
    commandTimeoutMs: 5000,
    // Nor about this process' own queueing: 2000 calls in one process on a crowded machine may wait
    // longer than the 5 s default for a slot.
    queueTimeoutMs: 60_000,
    connectTimeoutMs: 2000,
    breakerFailures: 1000,
    breakerCooldownMs: 500,
    logger,
  });

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  const singlePrefix = `authz:test:${process.pid}:${randomUUID()}`;
  const clusterPrefix = `authz:test:${randomUUID()}`;
  backends.push(
    {
      name: "single Redis",
      perOwnerAtomic: false,
      store: redisStore(inject("redisUrl"), false, singlePrefix),
      prefix: singlePrefix,
      raw: new Redis(inject("redisUrl")),
    },
    {
      name: "Redis Cluster (3 masters)",
      perOwnerAtomic: true,
      store: redisStore(cluster.url, true, clusterPrefix),
      prefix: clusterPrefix,
      raw: new Cluster([{ host: "127.0.0.1", port: cluster.ports[0] as number }]),
    },
    { name: "in-process store", perOwnerAtomic: false, store: createMemoryStore(), prefix: "" },
  );
  for (const b of backends) expect(await b.store.ready(10_000), `${b.name} ready`).toBe(true);
}, 60_000);

afterAll(async () => {
  for (const b of backends) {
    await b.store.close();
    b.raw?.disconnect();
  }
  await cluster?.stop();
});

const user = (): CounterOwner => ({ type: "user", id: randomUUID() });
const org = (): CounterOwner => ({ type: "organization", id: randomUUID() });

let nextPolicyId = 1;
function bucket(algorithm: RateLimitAlgorithm, limit: number, windowSec: number, owner: CounterOwner, extra: Partial<Bucket> = {}): Bucket {
  return { policyId: nextPolicyId++, algorithm, limit, windowSec, owner, gating: true, failClosed: false, ...extra };
}

function policy(name: string, algorithm: RateLimitAlgorithm, limit: number, windowSec: number, extra: Partial<RatePolicy> = {}): RatePolicy {
  return { id: nextPolicyId++, name, scope: "user", limit, windowSec, algorithm, failureMode: "open", shadow: false, description: null, ...extra };
}

const ok = (o: BucketOutcome | undefined) => {
  if (!o?.ok) throw new Error(`store failed: ${o?.error.message}`);
  return o;
};

/** Waits until a fixed window has at least `ms` left, so a burst cannot straddle two windows. */
async function awayFromEdge(store: RateLimitStore, windowSec: number, ms: number): Promise<void> {
  const b = bucket("fixed_window", 1, windowSec, { type: "key", id: randomUUID() });
  const [o] = await store.consume([b], 0);
  const left = ok(o).report.resetAfterUs / 1000;
  if (left < ms) await new Promise((r) => setTimeout(r, left + 50));
}

const BACKEND_NAMES = ["single Redis", "Redis Cluster (3 masters)", "in-process store"];

describe.each(BACKEND_NAMES.map((name, i) => ({ name, i })))("counter store conformance: $name", ({ name, i }) => {
  const be = () => backends[i] as Backend;

  it("runs on the backend it names", () => {
    expect(be().name).toBe(name);
  });

  it.each(ALGORITHMS)(
    "2000 concurrent consumes against limit 100 allow exactly 100 (%s)",
    async (algorithm) => {
      const { store } = be();
      await awayFromEdge(store, 60, 15_000);
      const b = bucket(algorithm, 100, 60, user());
      const results = await Promise.all(Array.from({ length: 2000 }, () => store.consume([b], 1)));
      const allowed = results.filter(([o]) => ok(o).report.allowed).length;
      expect(allowed, be().name).toBe(100);
      const [after] = await store.consume([b], 0);
      expect(ok(after).report).toMatchObject({ count: 100, remaining: 0 });
    },
    60_000,
  );

  it("all or nothing across several policies: a denial spends none of them", async () => {
    const { store } = be();
    await awayFromEdge(store, 60, 5_000);
    const u = user();
    const o = org();
    // The token bucket refills 1000 a day (one unit every 86 s), not 1000 a minute (one every 60 ms): on
    // a crowded machine these nine calls took over 60 ms, and the bucket's count drained from 5 to 4.
    const buckets = [bucket("fixed_window", 10, 60, u), bucket("sliding_window", 5, 60, o), bucket("token_bucket", 1000, 86_400, { type: "global", id: "" })];
    const answers: boolean[] = [];
    for (let k = 0; k < 8; k++) {
      const res = await store.consume(buckets, 1);
      const gate = res.every((r) => ok(r).report.allowed);
      answers.push(gate);
      res.forEach((r) => expect(ok(r).spent).toBe(gate));
    }
    expect(answers).toEqual([true, true, true, true, true, false, false, false]);
    const counts = (await store.consume(buckets, 0)).map((r) => ok(r).report.count);
    expect(counts).toEqual([5, 5, 5]);
  });

  it("all or nothing under concurrency: no policy over-admits, the counters equal the allowed calls", async () => {
    const { store, perOwnerAtomic } = be();
    await awayFromEdge(store, 60, 15_000);
    const buckets = [bucket("fixed_window", 100, 60, user()), bucket("fixed_window", 50, 60, org())];
    const res = await Promise.all(Array.from({ length: 1000 }, () => store.consume(buckets, 1)));
    const allowed = res.filter((r) => r.every((x) => ok(x).report.allowed)).length;
    const spent = res.filter((r) => r.every((x) => ok(x).spent)).length;
    expect(spent).toBe(allowed);
    if (perOwnerAtomic) {
      // Reserve, then refund: a reservation refunded a moment later may deny a concurrent call; never over-admits.
      expect(allowed).toBeGreaterThan(0);
      expect(allowed).toBeLessThanOrEqual(50);
    } else {
      expect(allowed).toBe(50);
    }
    const counts = (await store.consume(buckets, 0)).map((r) => ok(r).report.count);
    expect(counts).toEqual([allowed, allowed]);
  }, 60_000);

  it("calls made in one turn (one batch on a single Redis) decide in order, each all or nothing as if alone", async () => {
    const { store } = be();
    await awayFromEdge(store, 60, 5_000);
    const u = user();
    const two = bucket("fixed_window", 2, 60, u);
    const one = bucket("sliding_window", 1, 60, u);
    // No await in between: the Redis store sends these five in one command.
    const calls = [store.consume([two, one], 1), store.consume([two, one], 1), store.consume([two], 0), store.consume([two], 1), store.consume([two], 1)];
    const [first, second, peek, third, fourth] = await Promise.all(calls);
    expect(first?.map((o) => ok(o).spent)).toEqual([true, true]);
    // `one` denies, so `two` allows but is not spent.
    expect(second?.map((o) => [ok(o).report.allowed, ok(o).spent])).toEqual([
      [true, false],
      [false, false],
    ]);
    expect(ok(peek?.[0]).report).toMatchObject({ count: 1, remaining: 1 });
    expect(ok(third?.[0]).report).toMatchObject({ allowed: true, count: 2, remaining: 0 });
    expect(ok(fourth?.[0]).report).toMatchObject({ allowed: false, count: 2 });
    const counts = (await store.consume([two, one], 0)).map((r) => ok(r).report.count);
    expect(counts).toEqual([2, 1]);
  });

  it("calls of one turn that name one policy with another limit, window or gating each decide by their own", async () => {
    const { store } = be();
    await awayFromEdge(store, 60, 5_000);
    const u = user();
    // One policy id and counter, as a policy edited between two calls of one turn would give.
    const tight = bucket("fixed_window", 1, 60, u, { policyId: 41 });
    const loose = bucket("fixed_window", 3, 60, u, { policyId: 41 });
    const shadow = bucket("fixed_window", 1, 60, u, { policyId: 41, gating: false });
    const [a, b, c, d, e] = await Promise.all([
      store.consume([tight], 1),
      store.consume([loose], 1),
      store.consume([tight], 1),
      store.consume([shadow], 1),
      store.consume([loose], 1),
    ]);
    expect([a, b, c, d, e].map((r) => ok(r?.[0]).report.allowed)).toEqual([true, true, false, false, true]);
    expect([a, b, c, d, e].map((r) => ok(r?.[0]).report.count)).toEqual([1, 2, 2, 2, 3]);
  });

  it("calls of one turn with other costs, or the same counters in another order, each decide by their own", async () => {
    const { store } = be();
    await awayFromEdge(store, 60, 5_000);
    const u = user();
    const three = bucket("fixed_window", 3, 60, u);
    const five = bucket("fixed_window", 5, 60, u);
    const [a, b, c, d, e] = await Promise.all([
      store.consume([three], 2),
      store.consume([three], 1),
      store.consume([three], 1),
      store.consume([five, three], 2),
      store.consume([three, five], 0),
    ]);
    expect([a, b, c].map((r) => ok(r?.[0]).report.allowed)).toEqual([true, true, false]);
    // `three` is full: the two-counter call is denied by it and spends nothing on `five`.
    expect(d?.map((o) => [ok(o).report.allowed, ok(o).spent])).toEqual([
      [true, false],
      [false, false],
    ]);
    expect(e?.map((o) => ok(o).report.count)).toEqual([3, 0]);
  });

  it("a shadow policy never blocks the others and counts only what it would allow", async () => {
    const { store } = be();
    await awayFromEdge(store, 60, 5_000);
    const u = user();
    const enforced = policy("enforced", "fixed_window", 10, 60);
    const shadow = policy("shadow", "fixed_window", 3, 60, { shadow: true });
    const applied: AppliedPolicy[] = [
      { policy: enforced, owner: u },
      { policy: shadow, owner: u },
    ];
    const sources: string[] = [];
    for (let k = 0; k < 6; k++) {
      const d = await consume(store, applied, 1);
      expect(d.allowed).toBe(true);
      sources.push(d.source);
    }
    expect(sources).toEqual(["STORE", "STORE", "STORE", "SHADOW", "SHADOW", "SHADOW"]);
    const counters = await readCounters(store, applied);
    expect(counters.map((c) => c.count)).toEqual([6, 3]);
    const last = await consume(store, applied, 1);
    expect(last).toMatchObject({ allowed: true, source: "SHADOW", deciding: { policy: { name: "shadow" }, source: "SHADOW" } });
    expect(last.deciding?.retryAfterUs).toBeGreaterThan(0);
  });

  it("cost 0 peeks without writing; cost above the limit is denied as never, spending nothing", async () => {
    const { store } = be();
    for (const algorithm of ALGORITHMS) {
      const b = bucket(algorithm, 10, 60, user());
      const [empty] = await store.consume([b], 0);
      expect(ok(empty).report).toMatchObject({ allowed: true, remaining: 10, count: 0, windowStartUs: 0, lastUpdatedUs: 0 });
      expect(ok(empty).spent).toBe(false);
      await store.consume([b], 3);
      const [p1] = await store.consume([b], 0);
      const [p2] = await store.consume([b], 0);
      expect(ok(p1).report.count).toBe(3);
      expect(ok(p2).report.count).toBe(3);
      expect(ok(p2).report.remaining).toBeGreaterThanOrEqual(7);
      const [huge] = await store.consume([b], Number.MAX_SAFE_INTEGER);
      expect(ok(huge).report).toMatchObject({ allowed: false, retryAfterUs: NEVER });
      expect(ok(huge).spent).toBe(false);
      const [after] = await store.consume([b], 0);
      expect(ok(after).report.count, algorithm).toBe(3);
    }
  });

  it("fixed window: reset_after stays within the window and points at one stable window end", async () => {
    const { store } = be();
    await awayFromEdge(store, 10, 2_000);
    const b = bucket("fixed_window", 3, 10, user());
    const reports = [];
    for (let k = 0; k < 5; k++) {
      const [o] = await store.consume([b], 1);
      reports.push(ok(o).report);
    }
    for (const r of reports) {
      expect(r.resetAfterUs).toBeGreaterThan(0);
      expect(r.resetAfterUs).toBeLessThanOrEqual(10_000_000);
      expect(r.windowStartUs).toBe(reports[0]?.windowStartUs);
    }
    // The window end, seen from each call that spent (lastUpdated = that call's time): windowStart + window.
    for (const r of reports.filter((x) => x.allowed)) expect(r.lastUpdatedUs + r.resetAfterUs).toBe((reports[0]?.windowStartUs ?? 0) + 10_000_000);
    expect(reports.map((r) => r.allowed)).toEqual([true, true, true, false, false]);
    // Denied in a fixed window: retry exactly when the window ends.
    expect(reports[3]?.retryAfterUs).toBe(reports[3]?.resetAfterUs);
  });

  it("sliding window and token bucket: retry_after is consistent with the limit", async () => {
    const { store } = be();
    const tb = bucket("token_bucket", 10, 10, user());
    await store.consume([tb], 10);
    const [denied] = await store.consume([tb], 1);
    // One token per second: the next one is at most 1 s away.
    expect(ok(denied).report.allowed).toBe(false);
    expect(ok(denied).report.retryAfterUs).toBeGreaterThan(900_000);
    expect(ok(denied).report.retryAfterUs).toBeLessThanOrEqual(1_000_000);
    await new Promise((r) => setTimeout(r, ok(denied).report.retryAfterUs / 1000 + 20));
    const [again] = await store.consume([tb], 1);
    expect(ok(again).report.allowed).toBe(true);

    const sw = bucket("sliding_window", 10, 10, user());
    await awayFromEdge(store, 10, 2_000);
    await store.consume([sw], 10);
    const [swDenied] = await store.consume([sw], 1);
    // Fresh counter: all 10 are in the current window, so the next unit passes only in the next window.
    expect(ok(swDenied).report.allowed).toBe(false);
    expect(ok(swDenied).report.retryAfterUs).toBeGreaterThanOrEqual(ok(swDenied).report.resetAfterUs);
    expect(ok(swDenied).report.retryAfterUs).toBeLessThanOrEqual(ok(swDenied).report.resetAfterUs + 10_000_000);
  });

  it("every Redis key has a TTL, and all of one subject's keys share a hash slot", async () => {
    const { store, raw, prefix } = be();
    if (!raw) return;
    const u = user();
    const buckets = ALGORITHMS.map((a) => bucket(a, 10, 60, u));
    await store.consume(buckets, 1);
    const keys = buckets.map((b) => bucketKey(prefix, b));
    for (const [i, k] of keys.entries()) {
      const ttl = await raw.pttl(k);
      expect(ttl, k).toBeGreaterThan(0);
      expect(ttl, k).toBeLessThanOrEqual(2 * 60_000 + 1000);
      // One packed string per counter (lua.ts): the spend and when it happened, in the algorithm's layout.
      const code = ALGORITHM_CODE[(buckets[i] as Bucket).algorithm];
      const v = await raw.getBuffer(k);
      expect(v?.length, k).toBe(code === "tb" ? 16 : 40);
      const s = decodeStoredCounter(v as Buffer, code);
      expect(code === "tb" ? s.u : s.c, k).toBe(1);
      expect(s.lu, k).toBeGreaterThan(0);
      if (code !== "tb") expect(s.w, k).toBe(60_000_000);
    }
    if (raw instanceof Cluster) {
      const slots = await Promise.all(keys.map((k) => raw.cluster("KEYSLOT", k)));
      expect(new Set(slots).size).toBe(1);
    }
  });
});
