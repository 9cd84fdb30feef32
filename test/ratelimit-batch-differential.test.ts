// Differential test of the batch script (lua.ts CONSUME: the calls of one
// event-loop turn in one command) against the same calls issued one at a
// time (batches of one: CONSUME_ONE) and against the in-process store, all
// on the same test clock. Seeded random rounds: 1-6 counters per call, the
// three algorithms, policies edited mid-turn (one id, several limits,
// windows, algorithms or gating), shadow counters, costs 0..limit+1 and
// Number.MAX_SAFE_INTEGER, one counter several times in a call and across
// calls, and (a few rounds) one counter under two versions in a call. Every report field, the spent flag and the stored hash must agree;
// with the time frozen within a turn (the production scripts read the
// server's clock once per batch), the keys' TTLs too.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RateLimitAlgorithm } from "../src/engine/rate-limit-policies.js";
import { createLogger } from "../src/logger.js";
import { createMemoryStore } from "../src/ratelimit/memory-store.js";
import { ALGORITHM_CODE, decodeStoredCounter } from "../src/ratelimit/lua.js";
import { createRedisStore } from "../src/ratelimit/redis-store.js";
import { type Bucket, type BucketOutcome, bucketKey, type RateLimitStore } from "../src/ratelimit/store.js";

const SEED = 20261130;
const ROUNDS = 120;
const S = 1_000_000;
const T = 1_800_000_000 * S;
const ALGORITHMS: RateLimitAlgorithm[] = ["fixed_window", "sliding_window", "token_bucket"];

/** xorshift32: the same rounds on every run. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const logger = createLogger("silent");
let now = T;
const clock = () => now;
const stores: RateLimitStore[] = [];
let raw: Redis;

const redisStore = (keyPrefix: string) => {
  const s = createRedisStore({
    url: inject("redisUrl"),
    cluster: false,
    keyPrefix,
    commandTimeoutMs: 5000,
    connectTimeoutMs: 2000,
    breakerFailures: 1000,
    breakerCooldownMs: 1000,
    logger,
    testClockUs: clock,
  });
  stores.push(s);
  return s;
};

beforeAll(() => {
  raw = new Redis(inject("redisUrl"));
});
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  raw.disconnect();
});

interface Call {
  buckets: Bucket[];
  cost: number;
  at: number;
}

/** A counter's stored value, decoded as the scripts read it (null: no key). */
const stored = async (key: string, b: Pick<Bucket, "algorithm">) => {
  const v = await raw.getBuffer(key);
  return v === null ? null : decodeStoredCounter(v, ALGORITHM_CODE[b.algorithm]);
};

describe(`batch script vs one call at a time vs in-process store (seed ${SEED}, ${ROUNDS} rounds)`, () => {
  it("agree on every report, spend, stored value and (time frozen within a turn) TTL", async () => {
    const batchPrefix = `authz:test:batchdiff:${randomUUID()}`;
    const singlePrefix = `authz:test:batchdiff:${randomUUID()}`;
    const batch = redisStore(batchPrefix);
    const single = redisStore(singlePrefix);
    expect(await batch.ready(5000)).toBe(true);
    expect(await single.ready(5000)).toBe(true);
    for (let round = 0; round < ROUNDS; round++) {
      const r = random(SEED * 31 + round);
      const int = (n: number) => Math.floor(r() * n);
      const pick = <X>(a: readonly X[]) => a[int(a.length)] as X;
      // Even rounds: every version of a policy has the same algorithm, limit and window (gating may differ),
      // so the in-process store (whose counters expire on the test clock) is a reference too.
      const edits = round % 2 === 1;
      const frozen = round % 4 < 2;
      // Some rounds with edits let a call carry two versions of one policy (the store must cope, the limiter never does it).
      const twice = round % 8 === 7;
      const memory = createMemoryStore({ clockUs: clock });
      stores.push(memory);
      const owners = Array.from({ length: 1 + int(3) }, (_, i) => ({ type: "user" as const, id: `r${round}u${i}` }));
      const policies: Array<Array<Omit<Bucket, "owner">>> = [];
      for (let id = 1; id <= 1 + int(4); id++) {
        const versions: Array<Omit<Bucket, "owner">> = [];
        const algorithm = pick(ALGORITHMS);
        for (let v = 0; v < 1 + int(3); v++) {
          const gating = r() < 0.75;
          const version = {
            policyId: id,
            algorithm: v > 0 && r() < 0.2 ? pick(ALGORITHMS) : algorithm,
            limit: 1 + int(r() < 0.2 ? 1000 : 8),
            windowSec: pick([1, 2, 5, 10, 60]),
            gating,
            failClosed: false,
          };
          versions.push(v > 0 && !edits ? { ...(versions[0] as Omit<Bucket, "owner">), gating } : version);
        }
        policies.push(versions);
      }
      now = T + int(100) * S;
      for (let turn = 0, turns = 2 + int(6); turn < turns; turn++) {
        const calls: Call[] = [];
        for (let c = 0, n = 1 + int(10); c < n; c++) {
          const buckets: Bucket[] = [];
          for (let i = 0, nb = 1 + int(6); i < nb; i++) {
            const versions = pick(policies);
            const owner = pick(owners);
            // A call sees one version of a policy (the limiter reads one snapshot); the same counter may come again.
            const same = !twice && buckets.find((b) => b.policyId === (versions[0] as Omit<Bucket, "owner">).policyId && b.owner === owner);
            buckets.push(same ? { ...same } : { ...pick(versions), owner });
          }
          const top = Math.max(...buckets.map((b) => b.limit));
          const x = r();
          const cost = x < 0.05 ? Number.MAX_SAFE_INTEGER : x < 0.2 ? 0 : x < 0.3 ? top + 1 : int(Math.min(top, 10) + 2);
          if (!frozen && r() < 0.3) now += int(3 * S);
          else if (!frozen && r() < 0.1) now = Math.ceil(now / (5 * S)) * 5 * S - int(2);
          calls.push({ buckets, cost, at: now });
        }
        // The batch: every call in this turn, no await in between.
        const batched = await Promise.all(
          calls.map((c) => {
            now = c.at;
            return batch.consume(c.buckets, c.cost);
          }),
        );
        const alone: BucketOutcome[][] = [];
        const inProcess: BucketOutcome[][] = [];
        for (const c of calls) {
          now = c.at;
          alone.push(await single.consume(c.buckets, c.cost));
          inProcess.push(await memory.consume(c.buckets, c.cost));
        }
        calls.forEach((c, i) => {
          const what = `round ${round} turn ${turn} call ${i} (cost ${c.cost}, at T+${(c.at - T) / S}s): ${JSON.stringify(c.buckets)}`;
          expect(batched[i], `batch vs alone, ${what}`).toEqual(alone[i]);
          if (!edits) expect(inProcess[i], `in-process vs alone, ${what}`).toEqual(alone[i]);
        });
        const seen = new Set<string>();
        for (const b of calls.flatMap((c) => c.buckets)) {
          const k = bucketKey("", b);
          if (seen.has(k)) continue;
          seen.add(k);
          const [vb, vs] = await Promise.all([raw.getBuffer(bucketKey(batchPrefix, b)), raw.getBuffer(bucketKey(singlePrefix, b))]);
          expect(vb, `stored value, round ${round} turn ${turn} ${k}`).toEqual(vs);
          if (frozen) {
            const [tb, ts] = await Promise.all([raw.pttl(bucketKey(batchPrefix, b)), raw.pttl(bucketKey(singlePrefix, b))]);
            expect(Math.abs(tb - ts), `TTL, round ${round} turn ${turn} ${k}: ${tb} vs ${ts}`).toBeLessThan(1000);
          }
        }
        now += int(r() < 0.5 ? 2 * S : 30 * S);
      }
    }
  });
});

// A call that carries one counter under two definitions (a policy whose window changed, both versions in
// the call): the single-call script wrote the key once per definition, the second time only the counts
// (its window was already stored), so the key held one version's window with the other's counts and the
// units vanished. Each script now writes such a key once, as the batch does: the last state, in full.
describe.each(["fixed_window", "sliding_window"] as const)("one counter twice in a call, under two windows (%s)", (algorithm) => {
  it.each([false, true])("is stored as by the in-process store (batched: %s)", async (batched) => {
    const prefix = `authz:test:batchdiff:${randomUUID()}`;
    const redis = redisStore(prefix);
    const memory = createMemoryStore({ clockUs: clock });
    stores.push(memory);
    expect(await redis.ready(5000)).toBe(true);
    const owner = { type: "user" as const, id: randomUUID() };
    const w10: Bucket = { policyId: 1, algorithm, limit: 10, windowSec: 10, owner, gating: true, failClosed: false };
    const w60: Bucket = { ...w10, windowSec: 60 };
    const peek: Bucket = { ...w10, policyId: 2 };
    for (const store of [redis, memory]) {
      const run = async (b: Bucket[], cost: number) => {
        const [o] = await Promise.all([store.consume(b, cost), ...(batched ? [store.consume([peek], 0)] : [])]);
        return o as BucketOutcome[];
      };
      now = T + 15 * S;
      await run([w10], 1);
      now = T + 16 * S;
      expect((await run([w60, w10], 1)).map((o) => o.ok && o.spent)).toEqual([true, true]);
    }
    expect(await stored(bucketKey(prefix, w10), w10)).toMatchObject({ ws: T + 10 * S, c: 2, w: 10 * S });
    now = T + 17 * S;
    const [[r], [m]] = await Promise.all([redis.consume([w10], 0), memory.consume([w10], 0)]);
    expect(r).toEqual(m);
    expect(r?.ok && r.report.count).toBe(2);
  });
});

// Counters written by a version that stored hashes sit under the key without the stored form's tag:
// a replica of this version never reads them (a GET on a hash would fail the whole script), on either
// script, and leaves them to expire.
describe("a counter stored as a hash by an earlier version", () => {
  it.each([false, true])("neither fails a consume nor is read by it (batched: %s)", async (batched) => {
    const prefix = `authz:test:batchdiff:${randomUUID()}`;
    const redis = redisStore(prefix);
    expect(await redis.ready(5000)).toBe(true);
    const owner = { type: "user" as const, id: randomUUID() };
    const buckets: Bucket[] = ALGORITHMS.map((algorithm, i) => ({
      policyId: i + 1,
      algorithm,
      limit: 5,
      windowSec: 60,
      owner,
      gating: true,
      failClosed: true,
    }));
    now = T + 5 * S;
    for (const b of buckets) {
      const current = bucketKey(prefix, b);
      const legacy = current.slice(0, current.lastIndexOf(":"));
      await raw.hset(legacy, { ws: String(T), c: "5", pc: "0", u: "5", lu: String(T + S), w: String(60 * S) });
      await raw.pexpire(legacy, 60_000);
    }
    const peek: Bucket = { ...(buckets[0] as Bucket), policyId: 9 };
    const [outcomes] = await Promise.all([redis.consume(buckets, 1), ...(batched ? [redis.consume([peek], 0)] : [])]);
    expect(outcomes.map((o) => o.ok && o.spent && o.report.count)).toEqual([1, 1, 1]);
    for (const b of buckets) {
      const current = bucketKey(prefix, b);
      expect(await raw.type(current.slice(0, current.lastIndexOf(":"))), "the old hash is left as it was").toBe("hash");
      expect(await stored(current, b)).toMatchObject({ lu: now });
    }
  });
});
