// RateLimitService at the edge: generated messages in, domain types to
// src/ratelimit/, the decision back as a response message. Also the wiring
// helper createRateLimitService, which picks the counter store from the
// configuration (Redis, Redis Cluster, or in process).

import { batchInput } from "./batch-request.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Consistency, SubjectRef as SubjectRefMsg } from "../../gen/authz/v1/common_pb.js";
import {
  type ConsumeRateLimitResponseSchema,
  type GetRateLimitCountersResponseSchema,
  RateLimitAlgorithm as AlgorithmEnum,
  RateLimitDecisionSource,
  RateLimitFailureMode as FailureModeEnum,
  type RateLimitMutation as RateLimitMutationMsg,
  type RateLimitPolicyResultSchema,
  type RateLimitService,
} from "../../gen/authz/v1/rate_limit_service_pb.js";
import type { Config } from "../config.js";
import {
  type AppliedPolicy,
  type CounterOwner,
  type FailureMode,
  RATE_SUBJECT_TYPES,
  type RateLimitAlgorithm,
  type RatePolicyLookup,
  type RateSubject,
  type RateSubjectType,
} from "../engine/rate-limit-policies.js";
import { invalidArgument, printablePrefix } from "../errors.js";
import type { Logger } from "../logger.js";
import { NEVER } from "../ratelimit/algorithms.js";
import {
  type ConsumeInput,
  consume,
  type OrganizationTenant,
  type DecisionSource,
  type PolicyResult,
  type RateDecision,
  readCounters,
  resolvePolicies,
} from "../ratelimit/limiter.js";
import { manageRateLimits, type RateLimitMutation } from "../store/manage-rate-limits.js";
import { createMemoryStore } from "../ratelimit/memory-store.js";
import { createRedisStore, type RedisStore } from "../ratelimit/redis-store.js";
import type { RateLimitStore, StoreState } from "../ratelimit/store.js";
import { confineRateCounters, confineRateSubject } from "../tenancy.js";
import type { SqlClient } from "../store/sql.js";
import { UUID } from "../validation.js";
import { stateFor, toFreshness } from "./consistency.js";
import { type TenantLookup, writeCaller } from "./tenancy.js";
import { type CallContext, isThenable, type ServiceHandlers } from "./handler-types.js";

/** The policies as of some revision (a Snapshot is one). */
export type RatePolicyView = RatePolicyLookup & { readonly revision: bigint } & OrganizationTenant & Partial<TenantLookup>;

/** Where the policies come from (the LiveEngine is one). */
export interface PolicySource {
  current(): RatePolicyView;
  atLeast(revision: bigint, timeoutMs: number): Promise<RatePolicyView>;
  fullyConsistent(timeoutMs: number): Promise<RatePolicyView>;
}

const MAX_KEY_BYTES = 256;
const MAX_POLICY_NAME = 128;
/** protobuf's largest Duration: the retry_after of a cost that can never pass. */
const NEVER_SECONDS = 315_576_000_000n;

const SOURCE: Record<DecisionSource, RateLimitDecisionSource> = {
  STORE: RateLimitDecisionSource.STORE,
  SHADOW: RateLimitDecisionSource.SHADOW,
  FAILURE_OPEN: RateLimitDecisionSource.FAILURE_OPEN,
  FAILURE_CLOSED: RateLimitDecisionSource.FAILURE_CLOSED,
  NO_POLICY: RateLimitDecisionSource.NO_POLICY,
};
const ALGORITHM_OUT: Record<RateLimitAlgorithm, AlgorithmEnum> = {
  fixed_window: AlgorithmEnum.FIXED_WINDOW,
  sliding_window: AlgorithmEnum.SLIDING_WINDOW,
  token_bucket: AlgorithmEnum.TOKEN_BUCKET,
};
const ALGORITHM_IN: Partial<Record<AlgorithmEnum, RateLimitAlgorithm>> = {
  [AlgorithmEnum.FIXED_WINDOW]: "fixed_window",
  [AlgorithmEnum.SLIDING_WINDOW]: "sliding_window",
  [AlgorithmEnum.TOKEN_BUCKET]: "token_bucket",
};
const FAILURE_MODE_IN: Partial<Record<FailureModeEnum, FailureMode>> = {
  [FailureModeEnum.OPEN]: "open",
  [FailureModeEnum.CLOSED]: "closed",
};

export function toRateSubject(m: SubjectRefMsg | undefined, field: string): RateSubject {
  if (!m) throw invalidArgument(`${field} is required`, field);
  if (!(RATE_SUBJECT_TYPES as readonly string[]).includes(m.type)) {
    throw invalidArgument(`${field}.type must be "user", "organization" or "key" for rate limits, got "${printablePrefix(m.type)}"`, `${field}.type`);
  }
  const type = m.type as RateSubjectType;
  if (type === "key") {
    const bytes = Buffer.byteLength(m.id, "utf8");
    if (bytes === 0 || bytes > MAX_KEY_BYTES) throw invalidArgument(`${field}.id must be 1 to ${MAX_KEY_BYTES} bytes for a key, got ${bytes}`, `${field}.id`);
    return { type, id: m.id };
  }
  if (!UUID.test(m.id)) throw invalidArgument(`${field}.id must be a UUID, got "${printablePrefix(m.id)}"`, `${field}.id`);
  return { type, id: m.id.toLowerCase() };
}

function toInput(policy: string, subjectMsg: SubjectRefMsg | undefined, organizationId: string): ConsumeInput {
  if (policy.length > MAX_POLICY_NAME) throw invalidArgument(`policy is longer than ${MAX_POLICY_NAME} characters`, "policy");
  const subject = toRateSubject(subjectMsg, "subject");
  let org: string | undefined;
  if (organizationId !== "") {
    if (subject.type !== "user") throw invalidArgument(`organization_id is only for a "user" subject, got "${subject.type}"`, "organization_id");
    if (!UUID.test(organizationId)) throw invalidArgument(`organization_id must be a UUID, got "${printablePrefix(organizationId)}"`, "organization_id");
    org = organizationId.toLowerCase();
  }
  return { policy: policy === "" ? undefined : policy, subject, organizationId: org };
}

function toCost(cost: bigint): number {
  if (cost < 0n) throw invalidArgument(`cost must be 0 (peek) or more, got ${cost}`, "cost");
  return cost > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(cost);
}

function policiesFor(source: PolicySource, c: Consistency | undefined, ctx: CallContext): RatePolicyView | Promise<RatePolicyView> {
  return stateFor(source, toFreshness(c), ctx);
}

function duration(us: number): { seconds: bigint; nanos: number } {
  if (us === NEVER) return { seconds: NEVER_SECONDS, nanos: 0 };
  const v = Math.max(0, Math.round(us));
  return { seconds: BigInt(Math.floor(v / 1_000_000)), nanos: (v % 1_000_000) * 1000 };
}

const timestamp = (us: number) => ({ seconds: BigInt(Math.floor(us / 1_000_000)), nanos: (us % 1_000_000) * 1000 });
const ownerMsg = (o: CounterOwner) => ({ type: o.type, id: o.id });

function policyResultMsg(r: PolicyResult): MessageInitShape<typeof RateLimitPolicyResultSchema> {
  return {
    policy: r.policy.name,
    allowed: r.allowed,
    limit: BigInt(r.policy.limit),
    remaining: BigInt(r.remaining),
    resetAfter: duration(r.resetAfterUs),
    source: SOURCE[r.source],
    ...(r.retryAfterUs !== 0 ? { retryAfter: duration(r.retryAfterUs) } : {}),
    exceedsLimit: r.exceedsLimit,
    counterSubject: ownerMsg(r.owner),
  };
}

function mutationFrom(m: RateLimitMutationMsg, i: number): RateLimitMutation {
  const p = `mutations[${i}]`;
  const mu = m.mutation;
  switch (mu.case) {
    case "upsertPolicy": {
      const v = mu.value;
      const algorithm = ALGORITHM_IN[v.algorithm];
      const failureMode = FAILURE_MODE_IN[v.failureMode];
      if (v.algorithm !== AlgorithmEnum.UNSPECIFIED && !algorithm)
        throw invalidArgument(`${p}.upsert_policy.algorithm is not a known algorithm`, `${p}.upsert_policy.algorithm`);
      if (v.failureMode !== FailureModeEnum.UNSPECIFIED && !failureMode) {
        throw invalidArgument(`${p}.upsert_policy.failure_mode is not a known failure mode`, `${p}.upsert_policy.failure_mode`);
      }
      if (v.limitCount < 0) throw invalidArgument(`${p}.upsert_policy.limit_count must be between 1 and 2147483647`, `${p}.upsert_policy.limit_count`);
      if (v.windowSec < 0) throw invalidArgument(`${p}.upsert_policy.window_sec must be between 1 and 31536000`, `${p}.upsert_policy.window_sec`);
      return {
        kind: "upsertPolicy",
        name: v.name,
        ...(v.scope !== "" ? { scope: v.scope as never } : {}),
        ...(v.limitCount !== 0 ? { limitCount: v.limitCount } : {}),
        ...(v.windowSec !== 0 ? { windowSec: v.windowSec } : {}),
        ...(v.description !== undefined ? { description: v.description } : {}),
        ...(algorithm ? { algorithm } : {}),
        ...(failureMode ? { failureMode } : {}),
        ...(v.shadow !== undefined ? { shadow: v.shadow } : {}),
      };
    }
    case "deletePolicy":
      return { kind: "deletePolicy", name: mu.value };
    case "assign":
    case "unassign": {
      const s = mu.value.subject;
      if (!s) throw invalidArgument(`${p}.${mu.case}.subject is required`, `${p}.${mu.case}.subject`);
      return { kind: mu.case, policy: mu.value.policy, subject: { type: s.type, id: s.id } };
    }
    default:
      throw invalidArgument(`${p} must set exactly one change (upsert_policy, delete_policy, assign, unassign)`, p);
  }
}

export interface RateLimitHandlerDeps {
  store: RateLimitStore;
  policies: () => PolicySource;
  db: () => SqlClient;
  /** Called once per ConsumeRateLimit decision with its source, lower-case (metrics). */
  onDecision?: (source: string) => void;
}

/** The policies a call spends or reads, confined to the caller's tenant (src/tenancy.ts) before the store is touched. */
function appliedFor(ctx: CallContext, view: RatePolicyView, input: ConsumeInput): AppliedPolicy[] {
  const tenant = ctx.caller?.tenantId;
  confineRateSubject(tenant, view, input);
  const applied = resolvePolicies(view, input);
  confineRateCounters(tenant, view, input, applied);
  return applied;
}

/** ConsumeRateLimit's answer: the deciding policy's figures, and every policy's. */
function consumeAnswer(d: RateDecision, view: RatePolicyView, onDecision?: (source: string) => void): MessageInitShape<typeof ConsumeRateLimitResponseSchema> {
  onDecision?.(d.source.toLowerCase());
  const top = d.deciding;
  return {
    allowed: d.allowed,
    limit: BigInt(top?.policy.limit ?? 0),
    remaining: BigInt(top?.remaining ?? 0),
    ...(top ? { resetAfter: duration(top.resetAfterUs) } : {}),
    ...(top && top.retryAfterUs !== 0 ? { retryAfter: duration(top.retryAfterUs) } : {}),
    policy: top?.policy.name ?? "",
    source: SOURCE[d.source],
    policies: d.policies.map(policyResultMsg),
    revision: view.revision.toString(),
    exceedsLimit: top?.exceedsLimit ?? false,
  };
}

export function rateLimitHandlers(deps: RateLimitHandlerDeps): ServiceHandlers<typeof RateLimitService> {
  const { store } = deps;
  return {
    consumeRateLimit(req, ctx) {
      const input = toInput(req.policy, req.subject, req.organizationId);
      const cost = toCost(req.cost);
      // No async wrapper: the policy view is at hand unless a freshness wait is asked for; the store's promise is the only one.
      const decide = (view: RatePolicyView) => consume(store, appliedFor(ctx, view, input), cost).then((d) => consumeAnswer(d, view, deps.onDecision));
      const view = policiesFor(deps.policies(), req.consistency, ctx);
      return isThenable(view) ? view.then(decide) : decide(view);
    },

    async manageRateLimits(req, ctx) {
      const result = await manageRateLimits(deps.db(), batchInput(req, mutationFrom), writeCaller(ctx));
      return { revision: result.revision, results: result.results.map((r) => ({ policyId: r.policyId, changed: r.changed })) };
    },

    async getRateLimitCounters(req, ctx): Promise<MessageInitShape<typeof GetRateLimitCountersResponseSchema>> {
      const input = toInput(req.policy, req.subject, req.organizationId);
      const view = await policiesFor(deps.policies(), req.consistency, ctx);
      const counters = await readCounters(store, appliedFor(ctx, view, input));
      return {
        revision: view.revision.toString(),
        counters: counters.map((c) => ({
          policy: c.policy.name,
          policyId: c.policy.id,
          subject: ownerMsg(c.owner),
          ...(c.windowStartUs > 0 ? { windowStart: timestamp(c.windowStartUs) } : {}),
          count: BigInt(c.count),
          ...(c.lastUpdatedUs > 0 ? { lastUpdated: timestamp(c.lastUpdatedUs) } : {}),
          previousCount: BigInt(c.previousCount),
          limit: BigInt(c.policy.limit),
          remaining: BigInt(c.remaining),
          resetAfter: duration(c.resetAfterUs),
          algorithm: ALGORITHM_OUT[c.policy.algorithm],
        })),
      };
    },
  } satisfies ServiceHandlers<typeof RateLimitService>;
}

export interface RateLimitHealth {
  /** "redis", "redis-cluster" or "memory". */
  store: RateLimitStore["kind"];
  /** "up" | "down" | "breaker_open" | "embedded". */
  redis: StoreState;
  /** Redis only: the circuit breaker ("closed", "open", "half_open"). */
  breaker?: string;
  /** Redis only: the last failure's message. */
  lastError?: string;
}

export interface RateLimitServing {
  handlers: ServiceHandlers<typeof RateLimitService>;
  /** The store's state for health and metrics; logged on change, never per call. */
  redisState(): StoreState;
  health(): RateLimitHealth;
  readonly store: RateLimitStore;
  close(): Promise<void>;
}

/** The counter store the configuration asks for: Redis (single or Cluster) at REDIS_URL, else in process. */
export function createRateLimitStore(config: Config, logger: Logger): RateLimitStore {
  if (!config.redisUrl) return createMemoryStore();
  return createRedisStore({
    url: config.redisUrl,
    cluster: config.redisCluster,
    keyPrefix: config.redisKeyPrefix,
    commandTimeoutMs: config.redisCommandTimeoutMs,
    maxInFlight: config.redisMaxInFlight,
    queueTimeoutMs: config.redisQueueTimeoutMs,
    connectTimeoutMs: config.redisConnectTimeoutMs,
    breakerFailures: config.redisBreakerFailures,
    breakerCooldownMs: config.redisBreakerCooldownMs,
    logger,
  });
}

/**
 * RateLimitService wired to its store: `policies` is the live engine
 * (`() => live()`), `db` the database (ManageRateLimits). The store connects
 * at once and reconnects on its own; close() on shutdown.
 */
export function createRateLimitService(
  config: Config,
  logger: Logger,
  policies: () => PolicySource,
  db: () => SqlClient,
  opts: { onDecision?: (source: string) => void; store?: RateLimitStore } = {},
): RateLimitServing {
  const store = opts.store ?? createRateLimitStore(config, logger);
  return {
    handlers: rateLimitHandlers({ store, policies, db, ...(opts.onDecision ? { onDecision: opts.onDecision } : {}) }),
    redisState: () => store.state(),
    health() {
      const r = store as Partial<RedisStore>;
      return {
        store: store.kind,
        redis: store.state(),
        ...(r.breaker !== undefined ? { breaker: r.breaker } : {}),
        ...(r.lastError !== undefined ? { lastError: r.lastError } : {}),
      };
    },
    store,
    close: () => store.close(),
  };
}
