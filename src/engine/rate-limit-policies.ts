// Rate-limit policies and their assignments, held in memory beside the
// decision engine and fed by the same snapshot and change log
// (rate_limit_policies, rate_limit_assignments). Pure: no I/O, no clock.
// Counting itself lives in src/ratelimit/ (Redis or in process).

import type { RateLimitAssignmentRow, RateLimitPolicyRow } from "./rows.js";

export const RATE_LIMIT_SCOPES = ["user", "organization", "key", "global"] as const;
export type RateLimitScope = (typeof RATE_LIMIT_SCOPES)[number];
export const RATE_LIMIT_ALGORITHMS = ["fixed_window", "sliding_window", "token_bucket"] as const;
export type RateLimitAlgorithm = (typeof RATE_LIMIT_ALGORITHMS)[number];
export const FAILURE_MODES = ["open", "closed"] as const;
export type FailureMode = (typeof FAILURE_MODES)[number];

/** Who a rate limit is spent by: the subject types ConsumeRateLimit accepts. */
export const RATE_SUBJECT_TYPES = ["user", "organization", "key"] as const;
export type RateSubjectType = (typeof RATE_SUBJECT_TYPES)[number];
export interface RateSubject {
  readonly type: RateSubjectType;
  readonly id: string;
}

/** Whose counter a policy uses: a subject, or the one shared counter of a global policy. */
export type CounterOwner = RateSubject | { readonly type: "global"; readonly id: "" };
export const GLOBAL_OWNER: CounterOwner = Object.freeze({ type: "global", id: "" });

/** Seed 000 RateLimitPolicy plus the algorithm, failure mode and shadow flag. */
export interface RatePolicy {
  readonly id: number;
  readonly name: string;
  readonly scope: RateLimitScope;
  readonly limit: number;
  readonly windowSec: number;
  readonly algorithm: RateLimitAlgorithm;
  readonly failureMode: FailureMode;
  readonly shadow: boolean;
  readonly description: string | null;
}

/** A policy that applies to a call, with the counter it spends. */
export interface AppliedPolicy {
  readonly policy: RatePolicy;
  readonly owner: CounterOwner;
}

/** What ConsumeRateLimit needs from the engine. */
export interface RatePolicyLookup {
  ratePolicy(name: string): RatePolicy | undefined;
  ratePoliciesFor(subject: RateSubject, organizationId?: string): AppliedPolicy[];
}

const oneOf = <T extends string>(values: readonly T[], v: string, fallback: T): T => ((values as readonly string[]).includes(v) ? (v as T) : fallback);

export function toRatePolicy(row: RateLimitPolicyRow): RatePolicy {
  return Object.freeze({
    id: row.id,
    name: row.name,
    scope: oneOf(RATE_LIMIT_SCOPES, row.scope, "global"),
    limit: row.limitCount,
    windowSec: row.windowSec,
    algorithm: oneOf(RATE_LIMIT_ALGORITHMS, row.algorithm, "fixed_window"),
    failureMode: oneOf(FAILURE_MODES, row.failureMode, "open"),
    shadow: row.shadow,
    description: row.description,
  });
}

const byName = (a: AppliedPolicy, b: AppliedPolicy) => (a.policy.name < b.policy.name ? -1 : a.policy.name > b.policy.name ? 1 : 0);

/**
 * Policies by id and name, assignments by holder. Rows may arrive in any
 * order (an assignment before its policy): lookups skip what is missing.
 */
export class PolicyIndex implements RatePolicyLookup {
  readonly #byId = new Map<number, RatePolicy>();
  readonly #byName = new Map<string, RatePolicy>();
  readonly #assignments = new Map<string, RateLimitAssignmentRow>();
  /** "user:<uuid>" / "organization:<uuid>" → assignment id → policy id. */
  readonly #byHolder = new Map<string, Map<string, number>>();

  get size(): { policies: number; assignments: number } {
    return { policies: this.#byId.size, assignments: this.#assignments.size };
  }

  upsertPolicy(row: RateLimitPolicyRow): void {
    this.removePolicy(row.id);
    const p = toRatePolicy(row);
    this.#byId.set(p.id, p);
    this.#byName.set(p.name, p);
  }

  removePolicy(id: number): void {
    const old = this.#byId.get(id);
    if (!old) return;
    this.#byId.delete(id);
    if (this.#byName.get(old.name) === old) this.#byName.delete(old.name);
  }

  upsertAssignment(row: RateLimitAssignmentRow): void {
    this.removeAssignment(row.id);
    const holder = holderKey(row);
    if (!holder) return;
    this.#assignments.set(row.id, row);
    let m = this.#byHolder.get(holder);
    if (!m) this.#byHolder.set(holder, (m = new Map()));
    m.set(row.id, row.policyId);
  }

  removeAssignment(id: string): void {
    const old = this.#assignments.get(id);
    if (!old) return;
    this.#assignments.delete(id);
    const holder = holderKey(old);
    const m = holder ? this.#byHolder.get(holder) : undefined;
    m?.delete(id);
    if (holder && m && m.size === 0) this.#byHolder.delete(holder);
  }

  ratePolicy(name: string): RatePolicy | undefined {
    return this.#byName.get(name);
  }

  ratePolicyById(id: number): RatePolicy | undefined {
    return this.#byId.get(id);
  }

  /**
   * The policies assigned to the subject and, for a user with an
   * organization context, to that organization: the subject's first, then
   * the organization's, each sorted by name. A policy reached twice (a
   * global policy assigned to both) appears once. Each uses the counter of
   * its holder, or the shared counter for a global policy.
   */
  ratePoliciesFor(subject: RateSubject, organizationId?: string): AppliedPolicy[] {
    const out: AppliedPolicy[] = [];
    const seen = new Set<number>();
    const add = (holder: RateSubject) => {
      const m = this.#byHolder.get(`${holder.type}:${holder.id}`);
      if (!m) return;
      const found: AppliedPolicy[] = [];
      for (const policyId of m.values()) {
        const policy = this.#byId.get(policyId);
        if (!policy || seen.has(policyId)) continue;
        seen.add(policyId);
        found.push({ policy, owner: policy.scope === "global" ? GLOBAL_OWNER : holder });
      }
      out.push(...found.sort(byName));
    };
    if (subject.type === "user" || subject.type === "organization") add(subject);
    if (subject.type === "user" && organizationId !== undefined) add({ type: "organization", id: organizationId });
    return out;
  }
}

function holderKey(row: RateLimitAssignmentRow): string | undefined {
  if (row.userId !== null) return `user:${row.userId}`;
  if (row.orgId !== null) return `organization:${row.orgId}`;
  return undefined;
}
