// The three algorithms against hand-computed expectations at window edges,
// microsecond-exact. Run on the in-process store (injected clock) and on the
// Lua script in a real Redis, through the test-only script variant that takes
// the time as an argument (production scripts use redis.call('TIME')); the
// same table passing on both shows the Lua port equals algorithms.ts.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import type { RateLimitAlgorithm } from "../src/engine/rate-limit-policies.js";
import { createLogger } from "../src/logger.js";
import { NEVER } from "../src/ratelimit/algorithms.js";
import { createMemoryStore } from "../src/ratelimit/memory-store.js";
import { createRedisStore } from "../src/ratelimit/redis-store.js";
import { type Bucket, type BucketReport, bucketKey, type RateLimitStore } from "../src/ratelimit/store.js";

const S = 1_000_000;
/** A window-aligned instant (a multiple of 10 s and of 60 s), in µs. */
const T = 1_800_000_000 * S;

interface Step {
  at: number;
  cost: number;
  want: Partial<BucketReport> & { spent?: boolean };
}

interface Case {
  name: string;
  algorithm: RateLimitAlgorithm;
  limit: number;
  windowSec: number;
  steps: Step[];
}

const CASES: Case[] = [
  {
    name: "fixed window: the last microsecond of a window, then the first of the next",
    algorithm: "fixed_window",
    limit: 5,
    windowSec: 10,
    steps: [
      { at: T + 10 * S - 1, cost: 5, want: { allowed: true, remaining: 0, resetAfterUs: 1, retryAfterUs: 0, count: 5, windowStartUs: T, spent: true } },
      { at: T + 10 * S - 1, cost: 1, want: { allowed: false, remaining: 0, resetAfterUs: 1, retryAfterUs: 1, count: 5, spent: false } },
      // Clock-aligned windows: a new window starts empty (the known fixed-window burst at the edge).
      { at: T + 10 * S, cost: 5, want: { allowed: true, remaining: 0, resetAfterUs: 10 * S, count: 5, windowStartUs: T + 10 * S, lastUpdatedUs: T + 10 * S } },
      { at: T + 12 * S, cost: 0, want: { allowed: true, remaining: 0, resetAfterUs: 8 * S, count: 5, lastUpdatedUs: T + 10 * S, spent: false } },
      { at: T + 12 * S, cost: 6, want: { allowed: false, retryAfterUs: NEVER, remaining: 0, count: 5 } },
      { at: T + 20 * S, cost: 6, want: { allowed: false, retryAfterUs: NEVER, remaining: 5, count: 0, windowStartUs: 0 } },
      { at: T + 20 * S, cost: 0, want: { allowed: true, remaining: 5, resetAfterUs: 10 * S, count: 0, windowStartUs: 0, lastUpdatedUs: 0 } },
    ],
  },
  {
    name: "sliding window: the previous window's weight, retry within the window and into the next",
    algorithm: "sliding_window",
    limit: 10,
    windowSec: 10,
    steps: [
      { at: T + 5 * S, cost: 8, want: { allowed: true, remaining: 2, resetAfterUs: 5 * S, count: 8 } },
      // 2.5 s into the next window: 8 × 0.75 = 6 weighted, plus 4 = 10: exactly at the limit.
      { at: T + 12.5 * S, cost: 4, want: { allowed: true, remaining: 0, resetAfterUs: 7.5 * S, count: 4, previousCount: 8, windowStartUs: T + 10 * S } },
      // One more needs the weight of 8 down to 5: at 3.75 s, i.e. 1.25 s from now.
      { at: T + 12.5 * S, cost: 1, want: { allowed: false, remaining: 0, retryAfterUs: 1.25 * S, count: 4, previousCount: 8 } },
      { at: T + 13.75 * S - 1, cost: 1, want: { allowed: false, retryAfterUs: 1 } },
      { at: T + 13.75 * S, cost: 1, want: { allowed: true, remaining: 0, count: 5 } },
      // 9 s in: 8 × 0.1 + 5 = 5.8; 6 more can only pass in the next window, once 5 × (1 − s/10) ≤ 4: s = 2 s, i.e. 1 s + 2 s.
      { at: T + 19 * S, cost: 6, want: { allowed: false, remaining: 4, resetAfterUs: 1 * S, retryAfterUs: 3 * S, count: 5, previousCount: 8 } },
      { at: T + 22 * S - 1, cost: 6, want: { allowed: false, retryAfterUs: 1 } },
      { at: T + 22 * S, cost: 6, want: { allowed: true, remaining: 0, count: 6, previousCount: 5 } },
      // Two windows later everything has slid out.
      { at: T + 40 * S, cost: 0, want: { allowed: true, remaining: 10, count: 0, previousCount: 0, windowStartUs: 0 } },
      { at: T + 40 * S, cost: 11, want: { allowed: false, retryAfterUs: NEVER, remaining: 10 } },
    ],
  },
  {
    name: "token bucket (GCRA): burst, exact retry_after, continuous refill",
    algorithm: "token_bucket",
    limit: 10,
    windowSec: 10,
    steps: [
      { at: T, cost: 10, want: { allowed: true, remaining: 0, resetAfterUs: 10 * S, count: 10, windowStartUs: T, lastUpdatedUs: T } },
      // One token per second.
      { at: T, cost: 1, want: { allowed: false, remaining: 0, retryAfterUs: 1 * S, resetAfterUs: 10 * S } },
      { at: T + 1 * S - 1, cost: 1, want: { allowed: false, retryAfterUs: 1 } },
      { at: T + 1 * S, cost: 1, want: { allowed: true, remaining: 0, resetAfterUs: 10 * S, count: 10 } },
      // 5 s later 5 tokens are back; spend 3.
      { at: T + 6 * S, cost: 3, want: { allowed: true, remaining: 2, resetAfterUs: 8 * S, count: 8 } },
      { at: T + 6 * S, cost: 4, want: { allowed: false, remaining: 2, retryAfterUs: 2 * S } },
      { at: T + 6.5 * S, cost: 0, want: { allowed: true, remaining: 2, resetAfterUs: 7.5 * S, count: 8, lastUpdatedUs: T + 6 * S } },
      { at: T + 14 * S, cost: 0, want: { allowed: true, remaining: 10, resetAfterUs: 0, count: 0, windowStartUs: 0 } },
      { at: T + 14 * S, cost: 11, want: { allowed: false, retryAfterUs: NEVER, remaining: 10 } },
    ],
  },
];

const logger = createLogger("silent");
const stores: RateLimitStore[] = [];
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
});

const redisWithClock = (clock: () => number, keyPrefix = `authz:test:arith:${randomUUID()}`) =>
  createRedisStore({
    url: inject("redisUrl"),
    cluster: false,
    keyPrefix,
    commandTimeoutMs: 5000,
    connectTimeoutMs: 2000,
    breakerFailures: 100,
    breakerCooldownMs: 1000,
    logger,
    testClockUs: clock,
  });

/** `batched`: each step goes with a peek at another counter in the same turn, so Redis runs the batch script, not the single-call one. */
const BACKENDS: Array<{ name: string; make: (clock: () => number) => RateLimitStore; batched?: boolean }> = [
  { name: "in-process store", make: (clock) => createMemoryStore({ clockUs: clock }) },
  { name: "Redis (single-call Lua script, time as argument)", make: redisWithClock },
  { name: "Redis (batch Lua script, time as argument)", make: redisWithClock, batched: true },
];

describe.each(BACKENDS)("$name", ({ make, batched }) => {
  it.each(CASES)("$name", async (c) => {
    let now = 0;
    const store = make(() => now);
    stores.push(store);
    expect(await store.ready(5000)).toBe(true);
    const bucket: Bucket = {
      policyId: 1,
      algorithm: c.algorithm,
      limit: c.limit,
      windowSec: c.windowSec,
      owner: { type: "key", id: randomUUID() },
      gating: true,
      failClosed: false,
    };
    for (const [i, step] of c.steps.entries()) {
      now = step.at;
      const other = { ...bucket, policyId: 2 };
      const [[o] = []] = await Promise.all([store.consume([bucket], step.cost), ...(batched ? [store.consume([other], 0)] : [])]);
      if (!o?.ok) throw new Error(`step ${i}: store failed: ${o?.error.message}`);
      const { spent, ...want } = step.want;
      expect({ ...o.report }, `step ${i} at T+${(step.at - T) / S}s cost ${step.cost}`).toMatchObject(want);
      if (spent !== undefined) expect(o.spent, `step ${i} spent`).toBe(spent);
    }
  });
});

// A call in a window the key already holds writes the counts only (no PEXPIRE): the key's expiry is a
// function of the window's start and length, both stored. Once either changes, the expiry is set anew.
describe.each([
  { algorithm: "fixed_window" as const, batched: false },
  { algorithm: "sliding_window" as const, batched: false },
  { algorithm: "fixed_window" as const, batched: true },
  { algorithm: "sliding_window" as const, batched: true },
])("Redis key expiry, $algorithm (batch script: $batched)", ({ algorithm, batched }) => {
  it("stays with the window while it lasts, and follows a new window length at once", async () => {
    let now = 0;
    const prefix = `authz:test:arith:${randomUUID()}`;
    const store = redisWithClock(() => now, prefix);
    stores.push(store);
    const raw = new Redis(inject("redisUrl"));
    try {
      expect(await store.ready(5000)).toBe(true);
      const owner = { type: "key" as const, id: randomUUID() };
      const short: Bucket = { policyId: 1, algorithm, limit: 100, windowSec: 10, owner, gating: true, failClosed: false };
      const consume = async (b: Bucket, cost: number) => {
        const other = { ...b, policyId: 2 };
        const [[o] = []] = await Promise.all([store.consume([b], cost), ...(batched ? [store.consume([other], 0)] : [])]);
        if (!o?.ok) throw new Error(`store failed: ${o?.error.message}`);
        return o.report;
      };
      const key = bucketKey(prefix, short);
      now = T + 1 * S;
      await consume(short, 1);
      const first = await raw.pexpiretime(key);
      expect(first, "an expiry is set on the window's first write").toBeGreaterThan(0);
      now = T + 2 * S;
      expect((await consume(short, 2)).count).toBe(3);
      expect(await raw.pexpiretime(key), "the same window keeps its expiry").toBe(first);
      // The policy's window becomes an hour; T is hour-aligned, so the window start is the same.
      const long: Bucket = { ...short, windowSec: 3600 };
      now = T + 3 * S;
      const r = await consume(long, 1);
      expect(r.windowStartUs).toBe(T);
      const ttl = await raw.pttl(key);
      expect(ttl, "a new window length sets the expiry anew").toBeGreaterThan(600_000);
      expect(ttl).toBeLessThanOrEqual((algorithm === "sliding_window" ? 2 : 1) * 3600_000 + 1000);
    } finally {
      raw.disconnect();
    }
  });
});
