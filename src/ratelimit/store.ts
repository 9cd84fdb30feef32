// The counter store behind ConsumeRateLimit: Redis (single or Cluster) or in
// process. Both implement RateLimitStore with the same arithmetic
// (algorithms.ts / lua.ts) and the same all-or-nothing rule.

import type { CounterOwner, RateLimitAlgorithm } from "../engine/rate-limit-policies.js";
import { ALGORITHM_CODE, STORED_FORM } from "./lua.js";

/**
 * The most counters one call may touch (ConsumeRateLimit, GetRateLimitCounters,
 * one ShouldRateLimit): bounds the size of one Lua call and the time Redis
 * spends on it.
 */
export const MAX_COUNTERS_PER_CALL = 128;

/** One policy's counter for one owner, as a call spends it. */
export interface Bucket {
  readonly policyId: number;
  readonly algorithm: RateLimitAlgorithm;
  readonly limit: number;
  readonly windowSec: number;
  readonly owner: CounterOwner;
  /** True: a denial of this counter blocks the whole call. False: shadow mode (never blocks). */
  readonly gating: boolean;
  /** True: when this counter cannot be reached, the call is denied (failure mode closed, not shadow). */
  readonly failClosed: boolean;
}

/** What the store says about one counter. */
export interface BucketReport {
  allowed: boolean;
  remaining: number;
  resetAfterUs: number;
  /** 0 when allowed, -1 (NEVER) when the cost exceeds the limit. */
  retryAfterUs: number;
  count: number;
  previousCount: number;
  /** 0 when the counter is empty. */
  windowStartUs: number;
  lastUpdatedUs: number;
}

export type BucketOutcome =
  | { readonly ok: true; readonly report: BucketReport /** the units were spent (and not refunded) */; readonly spent: boolean }
  | { readonly ok: false; readonly error: Error };

/** "up", "down", "breaker_open" for Redis; "embedded" for the in-process store. */
export type StoreState = "up" | "down" | "breaker_open" | "embedded";

export interface RateLimitStore {
  readonly kind: "redis" | "redis-cluster" | "memory";
  /**
   * Evaluates every bucket and spends `cost` on each bucket that allows,
   * only if every gating bucket allows and no fail-closed gating bucket is
   * unreachable; otherwise spends nothing. Cost 0 reads without writing.
   * Never throws for an unreachable store: those buckets come back !ok,
   * within the command timeout.
   */
  consume(buckets: readonly Bucket[], cost: number): Promise<BucketOutcome[]>;
  state(): StoreState;
  /**
   * Resolves true once the store can answer (Redis connected and, if its last
   * command failed, answering a PING), false after `timeoutMs`.
   */
  ready(timeoutMs: number): Promise<boolean>;
  /** How long a caller denied by a failure should wait (the breaker's remaining cool-down, at least 1 s). */
  failureRetryAfterUs(): number;
  close(): Promise<void>;
}

/**
 * The Redis key of a bucket. The hash tag is the owner, so every counter of
 * one subject lives in one Cluster slot and a multi-policy script over them
 * is Cluster safe. The owner id is URI-encoded: a key subject cannot forge
 * braces or separators. The last segment names the stored form (lua.ts), so a
 * version that stores counters differently never reads another's keys.
 */
export function bucketKey(prefix: string, b: Pick<Bucket, "policyId" | "algorithm" | "owner">): string {
  return `${prefix}:{${hashTag(b.owner)}}:${b.policyId}:${ALGORITHM_CODE[b.algorithm]}:${STORED_FORM}`;
}

export function hashTag(owner: CounterOwner): string {
  if (owner.type === "global") return "global";
  const tag = `${owner.type}:${encodeURIComponent(owner.id)}`;
  // A user's counter in a tenant (CounterOwner): a key of its own, never the one of another tenant.
  return owner.type === "user" && owner.tenantId ? `${tag}:tenant:${encodeURIComponent(owner.tenantId)}` : tag;
}

/**
 * A counter that allowed but spent nothing (another policy of the call denied: all or nothing) reports the
 * figures of what it holds, not of the spend that did not happen: the arithmetic reports `remaining` and
 * `count` after spending whenever the counter alone allows. Exact for every algorithm, since the cost is
 * whole: ⌊x − c⌋ + c = ⌊x⌋ and ⌈x + c⌉ − c = ⌈x⌉.
 */
export function unspent(report: BucketReport, cost: number): BucketReport {
  if (!report.allowed || cost <= 0) return report;
  return { ...report, remaining: report.remaining + cost, count: Math.max(0, report.count - cost) };
}

/** Whether the all-or-nothing rule lets the call spend, given every bucket's outcome before spending. */
export function gateOpen(buckets: readonly Bucket[], outcomes: readonly BucketOutcome[]): boolean {
  return buckets.every((b, i) => {
    const o = outcomes[i] as BucketOutcome;
    if (!b.gating) return true;
    return o.ok ? o.report.allowed : !b.failClosed;
  });
}
