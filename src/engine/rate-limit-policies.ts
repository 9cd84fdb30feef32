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

/**
 * Whose counter a policy uses: a subject, or the one shared counter of a
 * global policy. A user's counters are kept per tenant: `tenantId` is the
 * tenant of the organization the call names as its context (none without
 * one), so two tenants never share a user's counter.
 */
export type CounterOwner = (RateSubject & { readonly tenantId?: string }) | { readonly type: "global"; readonly id: "" };
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
 * A map that forks in O(1) and copies on write: entries live in up to
 * SHARDS shards by key hash; a fork shares the shard directory until its
 * first write, then copies the directory once and each shard it touches
 * once. (Assignments can be per user: a change must not copy a
 * million-entry map.)
 */
const SHARDS = 1024;
class CowMap<K extends string | number, V> {
  #shards: Array<Map<K, V> | undefined>;
  #owned: Uint8Array | undefined;
  #size: number;

  constructor(shards: Array<Map<K, V> | undefined> = new Array(SHARDS).fill(undefined), size = 0, owned = true) {
    this.#shards = shards;
    this.#size = size;
    this.#owned = owned ? new Uint8Array(SHARDS).fill(1) : undefined;
  }

  get size(): number {
    return this.#size;
  }

  fork(): CowMap<K, V> {
    this.#owned = undefined; // from now on both sides copy before writing
    return new CowMap(this.#shards, this.#size, false);
  }

  get(k: K): V | undefined {
    return this.#shards[shardOf(k)]?.get(k);
  }

  set(k: K, v: V): void {
    const m = this.#writable(shardOf(k));
    if (!m.has(k)) this.#size++;
    m.set(k, v);
  }

  delete(k: K): void {
    const i = shardOf(k);
    if (!this.#shards[i]?.has(k)) return;
    this.#writable(i).delete(k);
    this.#size--;
  }

  #writable(i: number): Map<K, V> {
    if (!this.#owned) {
      this.#shards = this.#shards.slice();
      this.#owned = new Uint8Array(SHARDS);
    }
    let m = this.#shards[i];
    if (!m || this.#owned[i] === 0) {
      m = new Map(m);
      this.#shards[i] = m;
      this.#owned[i] = 1;
    }
    return m;
  }
}

function shardOf(k: string | number): number {
  if (typeof k === "number") return k & (SHARDS - 1);
  let h = 0;
  for (let i = Math.max(0, k.length - 12); i < k.length; i++) h = (Math.imul(h, 31) + k.charCodeAt(i)) | 0;
  return h & (SHARDS - 1);
}

/**
 * Policies by id and name, assignments by holder. Rows may arrive in any
 * order (an assignment before its policy): lookups skip what is missing.
 * fork() gives an independent copy in O(1) that shares everything until it
 * is written (each snapshot of the engine holds its own fork).
 */
export class PolicyIndex implements RatePolicyLookup {
  readonly #byId: CowMap<number, RatePolicy>;
  readonly #byName: CowMap<string, RatePolicy>;
  readonly #assignments: CowMap<string, RateLimitAssignmentRow>;
  /** "user:<uuid>" / "organization:<uuid>" → assignment id → policy id (inner maps are replaced, never mutated). */
  readonly #byHolder: CowMap<string, ReadonlyMap<string, number>>;

  constructor(from?: PolicyIndex) {
    this.#byId = from ? from.#byId.fork() : new CowMap();
    this.#byName = from ? from.#byName.fork() : new CowMap();
    this.#assignments = from ? from.#assignments.fork() : new CowMap();
    this.#byHolder = from ? from.#byHolder.fork() : new CowMap();
  }

  /** A copy that shares this index's storage until either is written. */
  fork(): PolicyIndex {
    return new PolicyIndex(this);
  }

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
    const m = new Map(this.#byHolder.get(holder));
    m.set(row.id, row.policyId);
    this.#byHolder.set(holder, m);
  }

  removeAssignment(id: string): void {
    const old = this.#assignments.get(id);
    if (!old) return;
    this.#assignments.delete(id);
    const holder = holderKey(old);
    const prev = holder ? this.#byHolder.get(holder) : undefined;
    if (!holder || !prev) return;
    const m = new Map(prev);
    m.delete(id);
    if (m.size === 0) this.#byHolder.delete(holder);
    else this.#byHolder.set(holder, m);
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
