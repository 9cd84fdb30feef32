// The in-process counter store (no REDIS_URL): the same algorithms in
// TypeScript, per replica and lost on exit. Development and tests only. A
// decision runs synchronously inside one turn of the event loop, so it is
// atomic without locks.

import { type CounterState, evaluate } from "./algorithms.js";
import { type Bucket, type BucketOutcome, type BucketReport, bucketKey, type RateLimitStore, unspent } from "./store.js";

interface Entry {
  state: CounterState;
  expiresAtMs: number;
}

export interface MemoryStoreOptions {
  /** Microseconds since the epoch; Date.now() * 1000 by default (tests inject one). */
  clockUs?: () => number;
  /** How often expired counters are dropped. */
  sweepMs?: number;
}

export interface MemoryStore extends RateLimitStore {
  /** Counters held (for tests). */
  size(): number;
}

export function createMemoryStore(opts: MemoryStoreOptions = {}): MemoryStore {
  const clockUs = opts.clockUs ?? (() => Date.now() * 1000);
  const counters = new Map<string, Entry>();
  const sweep = setInterval(() => {
    const nowMs = clockUs() / 1000;
    for (const [k, e] of counters) if (e.expiresAtMs <= nowMs) counters.delete(k);
  }, opts.sweepMs ?? 10_000);
  sweep.unref();

  const read = (key: string, nowMs: number): CounterState | undefined => {
    const e = counters.get(key);
    if (!e) return undefined;
    if (e.expiresAtMs <= nowMs) {
      counters.delete(key);
      return undefined;
    }
    return e.state;
  };

  return {
    kind: "memory",
    async consume(buckets: readonly Bucket[], cost: number): Promise<BucketOutcome[]> {
      const nowUs = clockUs();
      const nowMs = nowUs / 1000;
      const keys = buckets.map((b) => bucketKey("", b));
      const evals = buckets.map((b, i) => evaluate(b.algorithm, read(keys[i] as string, nowMs), nowUs, b.limit, b.windowSec * 1_000_000, cost));
      const gate = buckets.every((b, i) => !b.gating || (evals[i] as (typeof evals)[number]).allowed);
      return evals.map((e, i) => {
        const spent = gate && e.allowed && cost > 0;
        if (spent) counters.set(keys[i] as string, { state: e.next, expiresAtMs: nowMs + e.ttlMs });
        const report: BucketReport = {
          allowed: e.allowed,
          remaining: e.remaining,
          resetAfterUs: e.resetAfterUs,
          retryAfterUs: e.retryAfterUs,
          count: e.count,
          previousCount: e.previousCount,
          windowStartUs: e.windowStartUs,
          lastUpdatedUs: e.lastUpdatedUs,
        };
        return { ok: true, report: spent ? report : unspent(report, cost), spent };
      });
    },
    state: () => "embedded",
    ready: async () => true,
    failureRetryAfterUs: () => 1_000_000,
    size: () => counters.size,
    async close() {
      clearInterval(sweep);
      counters.clear();
    },
  };
}
