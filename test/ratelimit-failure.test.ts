// Redis failing under a running stream of decisions: a Redis of this file's
// own (never the shared one) hangs (SIGSTOP), then dies (SIGKILL), then comes
// back on the same port. Every call answers within the command timeout, per
// its policy's failure mode; never an error, never a hang; health shows the
// state; recovery needs nobody.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppliedPolicy, RatePolicy } from "../src/engine/rate-limit-policies.js";
import { createLogger } from "../src/logger.js";
import { NEVER } from "../src/ratelimit/algorithms.js";
import { consume, type RateDecision, readCounters } from "../src/ratelimit/limiter.js";
import { createRedisStore, type RedisStore } from "../src/ratelimit/redis-store.js";
import { type RedisProcess, startRedisServer } from "./support/redis.js";

const TIMEOUT_MS = 50;
/** Scheduling slack on a shared 2-core CI machine, on top of the timeout. */
const COOLDOWN_MS = 300;

let redis: RedisProcess;
let store: RedisStore;
const logged: Array<{ msg: string; redis?: string }> = [];

const policy = (name: string, failureMode: "open" | "closed", shadow = false): RatePolicy => ({
  id: name.length,
  name,
  scope: "user",
  limit: 1_000_000,
  windowSec: 60,
  algorithm: "sliding_window",
  failureMode,
  shadow,
  description: null,
});
const subject = { type: "user", id: randomUUID() } as const;
const OPEN: AppliedPolicy[] = [{ policy: policy("open-policy", "open"), owner: subject }];
const CLOSED: AppliedPolicy[] = [{ policy: policy("closed-policy!", "closed"), owner: subject }];
const SHADOW_CLOSED: AppliedPolicy[] = [{ policy: policy("shadow-closed-policy", "closed", true), owner: subject }];

beforeAll(async () => {
  redis = await startRedisServer();
  const sink = {
    write(line: string) {
      logged.push(JSON.parse(line) as { msg: string; redis?: string });
    },
  };
  store = createRedisStore({
    url: redis.url,
    cluster: false,
    keyPrefix: "authz:test:failure",
    commandTimeoutMs: TIMEOUT_MS,
    connectTimeoutMs: 200,
    breakerFailures: 3,
    breakerCooldownMs: COOLDOWN_MS,
    logger: createLogger("info", sink),
  });
  expect(await store.ready(5000)).toBe(true);
}, 30_000);

afterAll(async () => {
  await store?.close();
  await redis?.stop();
});

async function timed(applied: AppliedPolicy[]): Promise<{ d: RateDecision; ms: number }> {
  const t0 = performance.now();
  const d = await consume(store, applied, 1);
  return { d, ms: performance.now() - t0 };
}

/** Runs decisions on both failure modes back to back, as a service would, until `stop()`. */
function stream() {
  const results: Array<{ mode: "open" | "closed"; d: RateDecision; ms: number; at: number }> = [];
  let running = true;
  const loops = (["open", "closed"] as const).flatMap((mode) =>
    Array.from({ length: 4 }, async () => {
      while (running) {
        const r = await timed(mode === "open" ? OPEN : CLOSED);
        results.push({ mode, ...r, at: performance.now() });
        await new Promise((res) => setImmediate(res));
      }
    }),
  );
  return {
    results,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const until = async (cond: () => boolean | Promise<boolean>, ms: number, what: string) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what} within ${ms} ms`);
};

describe("Redis failing mid-run", () => {
  it("answers from the store while Redis is up", async () => {
    const { d } = await timed(OPEN);
    expect(d).toMatchObject({ allowed: true, source: "STORE" });
    expect(store.state()).toBe("up");
  });

  it("Redis hangs (SIGSTOP): every call answers within the timeout, per failure mode, then the breaker skips Redis", async () => {
    const s = stream();
    await until(() => s.results.length >= 20, 5000, "20 calls while Redis is up");
    redis.pause();
    await until(() => store.state() === "breaker_open", 5000, "the breaker open");
    const openedAt = performance.now();
    const sentWhenOpened = store.commandsSent;
    await until(() => s.results.filter((r) => r.at > openedAt).length >= 40, 5000, "40 calls with the breaker open");
    const sentWhileOpen = store.commandsSent - sentWhenOpened;
    await s.stop();
    const during = s.results.filter((r) => r.at > openedAt);
    expect(during.length).toBeGreaterThan(20);
    // Answered while Redis is still stopped: progress is counted above (40 calls), not timed; each command's
    // own deadline is pinned with fake timers in src/ratelimit/redis-dispatcher.test.ts.
    for (const r of during) {
      if (r.mode === "open") expect(r.d).toMatchObject({ allowed: true, source: "FAILURE_OPEN" });
      else expect(r.d).toMatchObject({ allowed: false, source: "FAILURE_CLOSED" });
    }
    const denied = during.find((r) => r.mode === "closed");
    expect(denied?.d.deciding?.retryAfterUs).toBeGreaterThan(0);
    expect(store.state()).toBe("breaker_open");
    // While the breaker is open calls do not go to Redis at all: only the probe after each cool-down does.
    const whileOpen = s.results.filter((r) => r.at > openedAt).length;
    expect(sentWhileOpen).toBeLessThan(whileOpen / 4);
    // A shadow policy never denies, even failing closed.
    expect((await timed(SHADOW_CLOSED)).d).toMatchObject({ allowed: true, source: "SHADOW" });
    // Counters cannot be read: that RPC says UNAVAILABLE (a read has no failure mode).
    await expect(readCounters(store, OPEN)).rejects.toMatchObject({ code: "UNAVAILABLE" });
  }, 20_000);

  it("Redis resumes: the background probe closes the breaker without any traffic", async () => {
    redis.resume();
    await until(() => store.state() === "up", 5000, "state up");
    expect((await timed(OPEN)).d).toMatchObject({ allowed: true, source: "STORE" });
  });

  it("Redis dies (SIGKILL) mid-run: calls answer at once per failure mode; back on the same port, all is normal again", async () => {
    const s = stream();
    await until(() => s.results.length >= 20, 5000, "20 calls while Redis is up");
    await redis.kill();
    const killedAt = performance.now();
    await until(() => s.results.filter((r) => r.at > killedAt + 20).length > 20, 5000, "20 calls after the kill");
    const afterKill = s.results.filter((r) => r.at > killedAt + 20);
    // More than 20 answers while Redis was dead (counted, not timed): nobody waits for it to come back.
    expect(afterKill.length).toBeGreaterThan(20);
    for (const r of afterKill) {
      if (r.mode === "open") expect(r.d).toMatchObject({ allowed: true, source: "FAILURE_OPEN" });
      else expect(r.d).toMatchObject({ allowed: false, source: "FAILURE_CLOSED" });
    }
    expect(["down", "breaker_open"]).toContain(store.state());
    // A cost above the limit needs no counter: refused as "never", not let through by the fail-open mode.
    const never = await consume(store, OPEN, 1_000_001);
    expect(never).toMatchObject({ allowed: false, source: "STORE" });
    expect(never.deciding).toMatchObject({ exceedsLimit: true, retryAfterUs: NEVER });

    await redis.restart();
    const restartedAt = performance.now();
    await until(() => s.results.some((r) => r.at > restartedAt && r.d.source === "STORE" && r.mode === "closed"), 5000, "store answers again");
    const answeredAt = performance.now();
    await until(() => s.results.filter((r) => r.at > answeredAt).length >= 20, 5000, "20 more calls after the store answered");
    await s.stop();
    await until(() => store.state() === "up", 3000, "state up");
    const last = await timed(CLOSED);
    expect(last.d).toMatchObject({ allowed: true, source: "STORE" });
  }, 20_000);

  it("logs each state change once, not once per call", () => {
    const transitions = logged.filter((l) => l.redis !== undefined).map((l) => l.redis);
    expect(transitions.length).toBeGreaterThanOrEqual(4);
    expect(transitions.length).toBeLessThan(20);
    for (let k = 1; k < transitions.length; k++) expect(transitions[k]).not.toBe(transitions[k - 1]);
  });
});
