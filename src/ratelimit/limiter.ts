// ConsumeRateLimit in domain terms: which policies apply (scope fit, unknown
// policy), the store's answer per policy, and how failure modes and shadow
// mode turn it into one decision. No protobuf here; rpc/ translates.

import {
  type AppliedPolicy,
  type CounterOwner,
  GLOBAL_OWNER,
  type RatePolicy,
  type RatePolicyLookup,
  type RateSubject,
} from "../engine/rate-limit-policies.js";
import type { ResourceRef } from "../engine/types.js";
import { AuthzError, printablePrefix } from "../errors.js";
import { NEVER } from "./algorithms.js";
import { type Bucket, type BucketOutcome, MAX_COUNTERS_PER_CALL, type RateLimitStore } from "./store.js";

export type DecisionSource = "STORE" | "SHADOW" | "FAILURE_OPEN" | "FAILURE_CLOSED" | "NO_POLICY";

export interface PolicyResult {
  readonly policy: RatePolicy;
  readonly owner: CounterOwner;
  readonly allowed: boolean;
  readonly remaining: number;
  readonly resetAfterUs: number;
  /** 0 when the policy allows (and is not a shadow denial); NEVER when the cost exceeds the limit. */
  readonly retryAfterUs: number;
  readonly exceedsLimit: boolean;
  readonly source: DecisionSource;
}

export interface RateDecision {
  readonly allowed: boolean;
  /** The deciding policy; undefined when none applies (NO_POLICY). */
  readonly deciding: PolicyResult | undefined;
  readonly source: DecisionSource;
  readonly policies: readonly PolicyResult[];
}

export interface ConsumeInput {
  /** A policy name, or undefined for every policy assigned to the subject (and organization). */
  readonly policy: string | undefined;
  readonly subject: RateSubject;
  readonly organizationId: string | undefined;
}

/** Where an organization belongs: its tenant id, null without one, undefined when unknown. */
export interface OrganizationTenant {
  resourceTenant(resource: ResourceRef): string | null | undefined;
}

/**
 * The policies a call spends, with their counters; NOT_FOUND / INVALID_ARGUMENT as the API defines.
 * A user's counters are those of the tenant of the call's organization context (see perTenant).
 */
export function resolvePolicies(lookup: RatePolicyLookup & OrganizationTenant, input: ConsumeInput): AppliedPolicy[] {
  if (input.policy === undefined) return perTenant(lookup, input, lookup.ratePoliciesFor(input.subject, input.organizationId));
  const policy = lookup.ratePolicy(input.policy);
  if (!policy) {
    throw new AuthzError("NOT_FOUND", `rate-limit policy "${printablePrefix(input.policy)}" does not exist`, {
      reason: "POLICY_NOT_FOUND",
      metadata: { field: "policy" },
    });
  }
  return perTenant(lookup, input, [{ policy, owner: ownerFor(policy, input) }]);
}

/**
 * Users belong to no tenant, but their counters do: a user's counter is kept
 * per tenant, the tenant of the organization the call names as its context
 * (organization_id), so what one tenant spends or reads is never another's.
 * Without a context (or with an organization of no tenant) it is the user's
 * counter outside any tenant, which only an unbound credential can reach.
 */
function perTenant(lookup: OrganizationTenant, input: ConsumeInput, applied: AppliedPolicy[]): AppliedPolicy[] {
  if (input.organizationId === undefined) return applied;
  const tenantId = lookup.resourceTenant({ type: "organization", id: input.organizationId });
  if (!tenantId) return applied;
  return applied.map((a) => (a.owner.type === "user" ? { policy: a.policy, owner: { type: "user", id: a.owner.id, tenantId } } : a));
}

function ownerFor(policy: RatePolicy, input: ConsumeInput): CounterOwner {
  const s = input.subject;
  const mismatch = (needs: string) =>
    new AuthzError("INVALID_ARGUMENT", `policy "${policy.name}" has scope ${policy.scope}: ${needs}, got subject type "${s.type}"`, {
      reason: "SCOPE_MISMATCH",
      metadata: { field: "subject.type", scope: policy.scope },
    });
  switch (policy.scope) {
    case "global":
      return GLOBAL_OWNER;
    case "user":
      if (s.type !== "user") throw mismatch('the subject must be a "user"');
      return s;
    case "key":
      if (s.type !== "key") throw mismatch('the subject must be a "key"');
      return s;
    case "organization":
      if (s.type === "organization") return s;
      if (s.type === "user" && input.organizationId !== undefined) return { type: "organization", id: input.organizationId };
      throw mismatch('the subject must be an "organization", or a "user" with organization_id');
  }
}

export function bucketFor(a: AppliedPolicy): Bucket {
  return {
    policyId: a.policy.id,
    algorithm: a.policy.algorithm,
    limit: a.policy.limit,
    windowSec: a.policy.windowSec,
    owner: a.owner,
    gating: !a.policy.shadow,
    failClosed: a.policy.failureMode === "closed" && !a.policy.shadow,
  };
}

/** RESOURCE_EXHAUSTED when one call would touch more counters than one Lua call may hold. */
export function checkCounterCount(n: number): void {
  if (n <= MAX_COUNTERS_PER_CALL) return;
  throw new AuthzError("RESOURCE_EXHAUSTED", `this call would touch ${n} rate-limit counters; at most ${MAX_COUNTERS_PER_CALL} per call`, {
    reason: "TOO_MANY_COUNTERS",
    metadata: { counters: String(n), max: String(MAX_COUNTERS_PER_CALL) },
  });
}

/** Retry-after ordering: NEVER is the longest. */
const longer = (a: number, b: number) => (a === NEVER ? Number.POSITIVE_INFINITY : a) - (b === NEVER ? Number.POSITIVE_INFINITY : b);

/**
 * Spends `cost` on every applied policy, all or nothing, and combines the
 * answers. Never throws for a store failure; RESOURCE_EXHAUSTED (before the
 * store is touched) beyond MAX_COUNTERS_PER_CALL counters.
 */
export function consume(store: RateLimitStore, applied: readonly AppliedPolicy[], cost: number): Promise<RateDecision> {
  if (applied.length === 0) return Promise.resolve({ allowed: true, deciding: undefined, source: "NO_POLICY", policies: [] });
  try {
    checkCounterCount(applied.length);
  } catch (err) {
    return Promise.reject(err);
  }
  // One promise: the store's, no async wrapper around it.
  return store
    .consume(applied.map(bucketFor), cost)
    .then((outcomes) => combine(applied.map((a, i) => policyResult(a, outcomes[i] as BucketOutcome, cost, store))));
}

function policyResult(a: AppliedPolicy, o: BucketOutcome, cost: number, store: RateLimitStore): PolicyResult {
  const { policy, owner } = a;
  const exceedsLimit = cost > policy.limit;
  if (o.ok) {
    const r = o.report;
    if (r.allowed)
      return { policy, owner, allowed: true, remaining: r.remaining, resetAfterUs: r.resetAfterUs, retryAfterUs: 0, exceedsLimit, source: "STORE" };
    return {
      policy,
      owner,
      allowed: policy.shadow,
      remaining: r.remaining,
      resetAfterUs: r.resetAfterUs,
      retryAfterUs: r.retryAfterUs,
      exceedsLimit,
      source: policy.shadow ? "SHADOW" : "STORE",
    };
  }
  // A cost above the limit needs no counter to be refused: denied (a shadow policy: reported) even without the store.
  if (exceedsLimit) {
    return {
      policy,
      owner,
      allowed: policy.shadow,
      remaining: 0,
      resetAfterUs: 0,
      retryAfterUs: NEVER,
      exceedsLimit,
      source: policy.shadow ? "SHADOW" : "STORE",
    };
  }
  const closed = policy.failureMode === "closed";
  return {
    policy,
    owner,
    allowed: !closed || policy.shadow,
    remaining: 0,
    resetAfterUs: 0,
    retryAfterUs: closed ? store.failureRetryAfterUs() : 0,
    exceedsLimit,
    source: closed ? (policy.shadow ? "SHADOW" : "FAILURE_CLOSED") : "FAILURE_OPEN",
  };
}

/**
 * Denied when any policy denies; the decider is the denial with the longest
 * retry_after. Else a shadow denial (longest retry_after), else a
 * fail-open answer, else the policy with the least remaining.
 */
export function combine(results: readonly PolicyResult[]): RateDecision {
  const pick = (xs: PolicyResult[], better: (a: PolicyResult, b: PolicyResult) => boolean) =>
    xs.reduce<PolicyResult | undefined>((best, x) => (best === undefined || better(x, best) ? x : best), undefined);
  const denied = results.filter((r) => !r.allowed);
  if (denied.length > 0) {
    const d = pick(denied, (a, b) => longer(a.retryAfterUs, b.retryAfterUs) > 0) as PolicyResult;
    return { allowed: false, deciding: d, source: d.source, policies: results };
  }
  const shadow = results.filter((r) => r.source === "SHADOW");
  if (shadow.length > 0) {
    const d = pick(shadow, (a, b) => longer(a.retryAfterUs, b.retryAfterUs) > 0) as PolicyResult;
    return { allowed: true, deciding: d, source: "SHADOW", policies: results };
  }
  const open = results.find((r) => r.source === "FAILURE_OPEN");
  if (open) return { allowed: true, deciding: open, source: "FAILURE_OPEN", policies: results };
  const d = pick([...results], (a, b) => a.remaining < b.remaining) as PolicyResult;
  return { allowed: true, deciding: d, source: "STORE", policies: results };
}

/** A policy's live counter, as GetRateLimitCounters returns it. */
export interface CounterView {
  readonly policy: RatePolicy;
  readonly owner: CounterOwner;
  readonly count: number;
  readonly previousCount: number;
  readonly windowStartUs: number;
  readonly lastUpdatedUs: number;
  readonly remaining: number;
  readonly resetAfterUs: number;
}

/** What reading counters answers when the store cannot be reached. */
export const counterStoreUnavailable = (cause?: unknown): AuthzError =>
  new AuthzError("UNAVAILABLE", "the rate-limit counter store cannot be reached; retry shortly", { reason: "RATE_LIMIT_STORE_UNAVAILABLE", cause });

/** Reads the counters (a cost-0 evaluation); UNAVAILABLE when the store cannot be reached. */
export async function readCounters(store: RateLimitStore, applied: readonly AppliedPolicy[]): Promise<CounterView[]> {
  checkCounterCount(applied.length);
  const outcomes = await store.consume(applied.map(bucketFor), 0);
  return applied.map((a, i) => {
    const o = outcomes[i] as BucketOutcome;
    if (!o.ok) throw counterStoreUnavailable(o.error);
    const r = o.report;
    return {
      policy: a.policy,
      owner: a.owner,
      count: r.count,
      previousCount: r.previousCount,
      windowStartUs: r.windowStartUs,
      lastUpdatedUs: r.lastUpdatedUs,
      remaining: r.remaining,
      resetAfterUs: r.resetAfterUs,
    };
  });
}
