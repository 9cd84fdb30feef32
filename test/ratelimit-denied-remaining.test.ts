// A call that one policy denies spends nothing on the others (all or
// nothing), so what it reports for them is what they hold: `remaining`
// (and `count`) as before the call, not as if the units had been spent.
// docs/rate-limits.md: "`remaining` (after this call)"; the proto: "Units
// left after the call". Before the fix, every policy that alone allowed
// reported its figures after a spend that did not happen (a user counter
// holding 5 of 10 answered remaining 4 on a denied call), on ConsumeRateLimit
// (policies[]) and on Envoy's ShouldRateLimit (limit_remaining).
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { AppliedPolicy, RateLimitAlgorithm, RatePolicy } from "../src/engine/rate-limit-policies.js";
import { createLogger } from "../src/logger.js";
import { consume, readCounters } from "../src/ratelimit/limiter.js";
import { createMemoryStore } from "../src/ratelimit/memory-store.js";
import { createRedisStore } from "../src/ratelimit/redis-store.js";
import type { RateLimitStore } from "../src/ratelimit/store.js";

const ALGORITHMS: RateLimitAlgorithm[] = ["fixed_window", "sliding_window", "token_bucket"];
const stores: Array<{ name: string; store: RateLimitStore }> = [];
let nextId = 1;

beforeAll(async () => {
  stores.push(
    {
      name: "single Redis",
      store: createRedisStore({
        url: inject("redisUrl"),
        cluster: false,
        keyPrefix: `authz:test:denied-remaining:${randomUUID()}`,
        commandTimeoutMs: 5000,
        connectTimeoutMs: 2000,
        breakerFailures: 1000,
        breakerCooldownMs: 500,
        logger: createLogger("silent"),
      }),
    },
    { name: "in-process store", store: createMemoryStore() },
  );
  for (const s of stores) expect(await s.store.ready(10_000), s.name).toBe(true);
});

afterAll(async () => {
  for (const s of stores) await s.store.close();
});

const policy = (name: string, algorithm: RateLimitAlgorithm, limit: number, windowSec: number, extra: Partial<RatePolicy> = {}): RatePolicy => ({
  id: nextId++,
  name,
  scope: "user",
  limit,
  windowSec,
  algorithm,
  failureMode: "open",
  shadow: false,
  description: null,
  ...extra,
});

describe.each([0, 1])("a denied call reports the other policies as they stand (store %i)", (i) => {
  it.each(ALGORITHMS)("%s: remaining of a policy that allowed but spent nothing", async (algorithm) => {
    const { store, name } = stores[i] as { name: string; store: RateLimitStore };
    const owner = { type: "user" as const, id: randomUUID() };
    // A day-long window: the token bucket refills one unit every 8640 s, nothing drains during the test.
    const roomy = policy("roomy", algorithm, 10, 86_400);
    const tight = policy("tight", "fixed_window", 2, 86_400);
    const shadow = policy("watch", algorithm, 5, 86_400, { shadow: true });
    const applied: AppliedPolicy[] = [
      { policy: roomy, owner },
      { policy: tight, owner },
      { policy: shadow, owner },
    ];
    const cost = 2;
    expect((await consume(store, applied, cost)).allowed, name).toBe(true); // roomy 2/10, tight 2/2, watch 2/5
    const denied = await consume(store, applied, cost);
    expect(denied.allowed, name).toBe(false);
    expect(denied.deciding?.policy.name).toBe("tight");
    const byName = Object.fromEntries(denied.policies.map((p) => [p.policy.name, p]));
    // Nothing was spent: the counters hold what the first call spent.
    expect(
      (await readCounters(store, applied)).map((c) => c.count),
      name,
    ).toEqual([2, 2, 2]);
    expect(byName.roomy?.allowed).toBe(true);
    expect(byName.roomy?.remaining, `${name}: roomy holds 2 of 10 after a denied call`).toBe(8);
    expect(byName.watch?.remaining, `${name}: the shadow policy holds 2 of 5`).toBe(3);
    expect(byName.tight?.remaining).toBe(0);
    // An allowed call still reports the figures after its spend.
    const peek = await consume(store, [applied[0] as AppliedPolicy], 0);
    expect(peek.policies[0]?.remaining).toBe(8);
    const spend = await consume(store, [applied[0] as AppliedPolicy], cost);
    expect(spend.policies[0]?.remaining).toBe(6);
  });
});
