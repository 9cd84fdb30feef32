// Envoy's two sidecar contracts, served natively:
//   envoy.service.auth.v3.Authorization/Check            (ext_authz filter)
//   envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit (ratelimit filter)
// The mesh mapping (src/mesh/) turns the HTTP request into subject,
// permission, resource and rate limit; the decision comes from the same live
// engine as Check and the same limiter as ConsumeRateLimit.
//
// Failure rule (docs/mesh.md): whatever can be judged from the HTTP request
// is a CheckResponse (allow, 400, 401, 403, 429, 503), never a gRPC error.
// A gRPC error means authz could not decide (engine not loaded, mapping or
// policy misconfigured, internal error): Envoy's failure_mode_allow /
// status_on_error (ext_authz) or failure_mode_deny (ratelimit) then applies.

import { create, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { SubjectRefSchema } from "../../gen/authz/v1/common_pb.js";
import { HeaderValueOption_HeaderAppendAction } from "../../gen/envoy/config/core/v3/base_pb.js";
import type { RateLimitDescriptor } from "../../gen/envoy/extensions/common/ratelimit/v3/ratelimit_pb.js";
import type { AttributeContext, AttributeContext_HttpRequest } from "../../gen/envoy/service/auth/v3/attribute_context_pb.js";
import { Authorization, type CheckRequest, type CheckResponseSchema } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import {
  RateLimitService as EnvoyRateLimitService,
  type RateLimitRequest,
  RateLimitResponse_Code,
  type RateLimitResponse_DescriptorStatusSchema,
  RateLimitResponse_RateLimit_Unit,
  type RateLimitResponseSchema,
} from "../../gen/envoy/service/ratelimit/v3/rls_pb.js";
import type { StatusCode } from "../../gen/envoy/type/v3/http_status_pb.js";
import type { Snapshot } from "../engine/snapshot.js";
import { type AppliedPolicy, GLOBAL_OWNER, type RatePolicy, type RateSubject } from "../engine/rate-limit-policies.js";
import type { ResourceRef, SubjectRef } from "../engine/types.js";
import { AuthzError, invalidArgument, printablePrefix } from "../errors.js";
import type { Logger } from "../logger.js";
import type { MeshConfig, MeshRoute, RateLimitServiceMapping, RouteRateLimit } from "../mesh/config.js";
import { checkDescriptorBounds, type DescriptorPlan, planDescriptor, rateLimitHeaders, type WindowUnit, windowUnit } from "../mesh/rate-limit.js";
import { type HttpAttributes, MeshMappingError, type RouteResolution, resolveRoute, resolveSubject } from "../mesh/request.js";
import { renderValue, splitRef, type TemplateInput, type ValueTemplate } from "../mesh/template.js";
import { NEVER } from "../ratelimit/algorithms.js";
import { checkCounterCount, combine, type ConsumeInput, consume, type PolicyResult, type RateDecision, resolvePolicies } from "../ratelimit/limiter.js";
import { hashTag, type RateLimitStore } from "../ratelimit/store.js";
import { confineRateCounters, confineRateSubject } from "../tenancy.js";
import type { LiveEngine } from "../store/live-engine.js";
import type { Freshness } from "./consistency.js";
import { type CallContext, isThenable, type ServiceHandlers } from "./handler-types.js";
import { type DecisionEvent, engineFor, toResource, toSubject } from "./permission-handlers.js";
import { toRateSubject } from "./rate-limit-handlers.js";
import { confineRead } from "./tenancy.js";
import { REVISION, UUID } from "../validation.js";

export { Authorization, EnvoyRateLimitService };

/** The Envoy services, for health (SERVED_SERVICES). */
export const ENVOY_SERVICE_NAMES: readonly string[] = [Authorization.typeName, EnvoyRateLimitService.typeName];

export interface EnvoyHandlerDeps {
  /** The live engine (decisions and rate-limit policies); throws UNAVAILABLE until the store is loaded. */
  live: () => LiveEngine;
  /** The rate-limit counter store, shared with RateLimitService (createRateLimitService(...).store). */
  store: RateLimitStore;
  /** The mesh mapping (loadMeshConfig(config.meshConfigFile)). */
  mesh: MeshConfig;
  /** Per decision of Authorization/Check (metrics and the decision log), as for Check. */
  onDecision?: (e: DecisionEvent) => void;
  /** Per rate-limit answer, with its source in lower case (metrics.rateLimitSource). */
  onRateLimitDecision?: (source: string) => void;
  /** Configuration faults found at request time are logged here (at most once a minute each). */
  logger?: Logger;
  clock?: () => number;
  /** Cap on freshness waits (AUTHZ_MAX_WAIT_MS). */
  maxWaitMs?: number;
}

const UINT32_MAX = 0xffff_ffff;
const OVERWRITE = HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD;

type CheckResponseInit = MessageInitShape<typeof CheckResponseSchema>;
type Headers = Array<[string, string]>;

/** A header Envoy sets, replacing any value of that name (also on Envoys that only read the deprecated `append`). */
const headerOption = ([key, value]: [string, string]) => ({ header: { key, value }, append: false, appendAction: OVERWRITE });

function attributesOf(a: AttributeContext, http: AttributeContext_HttpRequest): HttpAttributes {
  let headers: Record<string, string> = http.headers;
  const raw = http.headerMap?.headers;
  if (Object.keys(headers).length === 0 && raw && raw.length > 0) {
    // encode_raw_headers: a list of (key, raw_value); repeated names are joined as HTTP does.
    headers = {};
    for (const h of raw) {
      const k = h.key.toLowerCase();
      const v = h.value !== "" ? h.value : Buffer.from(h.rawValue).toString("latin1");
      headers[k] = headers[k] === undefined ? v : `${headers[k]},${v}`;
    }
  }
  const filterMetadata = a.metadataContext?.filterMetadata;
  return {
    method: http.method,
    path: http.path,
    header: (name) => headers[name],
    principal: a.source?.principal ?? "",
    contextExtensions: a.contextExtensions,
    metadata: (ns) => filterMetadata?.[ns],
  };
}

/** A decision that denies: the HTTP answer Envoy sends to the client, and the non-OK status that makes it a denial. */
function denied(http: number, code: Code, error: string, message: string, headers: Headers = [], metadata: JsonObject = {}): CheckResponseInit {
  return {
    status: { code, message },
    httpResponse: {
      case: "deniedResponse",
      value: {
        status: { code: http as StatusCode },
        headers: [["content-type", "application/json"] as [string, string], ...headers].map(headerOption),
        body: JSON.stringify({ error, message }),
      },
    },
    dynamicMetadata: { decision: "deny", http_status: http, error, ...metadata },
  };
}

/** Logs each distinct configuration fault at most once a minute. */
function faultLogger(logger: Logger | undefined) {
  const last = new Map<string, number>();
  return (message: string) => {
    const now = Date.now();
    if ((last.get(message) ?? 0) > now - 60_000) return;
    if (last.size > 1000) last.clear();
    last.set(message, now);
    logger?.warn({ fault: message }, "mesh mapping fault: authz answers with an error, so Envoy's failure mode applies");
  };
}

/** A configuration fault: a gRPC error, so Envoy's failure mode decides. */
const mappingFault = (message: string, cause?: unknown) =>
  new AuthzError("FAILED_PRECONDITION", `mesh mapping: ${message}`, { reason: "MESH_MAPPING", ...(cause !== undefined ? { cause } : {}) });

/** Runs `fn`; an AuthzError with `code` it throws becomes the denial `onRefused(message)`. */
function orDenied<T>(
  fn: () => T,
  code: "INVALID_ARGUMENT" | "PERMISSION_DENIED",
  onRefused: (message: string) => CheckResponseInit,
): T | { bad: CheckResponseInit } {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AuthzError && err.code === code) return { bad: onRefused(err.message) };
    throw err;
  }
}
/** Runs `fn`; an INVALID_ARGUMENT it throws (a bad value in the HTTP request) becomes `onInvalid(message)`. */
const orBadRequest = <T>(fn: () => T, onInvalid: (message: string) => CheckResponseInit) => orDenied(fn, "INVALID_ARGUMENT", onInvalid);
const isBad = (v: unknown): v is { bad: CheckResponseInit } => typeof v === "object" && v !== null && "bad" in v;

const badRequest = (message: string) => denied(400, Code.InvalidArgument, "invalid_request", message);

/** A 403 denial with the decision's metadata and reason. */
const forbidden = (meta: JsonObject, reason: string) => denied(403, Code.PermissionDenied, "permission_denied", "forbidden", [], { ...meta, reason });

type OkHttpResponseInit = Extract<NonNullable<CheckResponseInit["httpResponse"]>, { case: "okResponse" }>["value"];

/** An answer that allows the request: what Envoy does to it (`ok`) and the decision's metadata. */
const allowResponse = (ok: OkHttpResponseInit, dynamicMetadata: JsonObject): CheckResponseInit => ({
  status: { code: 0 },
  httpResponse: { case: "okResponse", value: ok },
  dynamicMetadata,
});

/**
 * The answer to a CheckRequest that breaks the input bounds or cannot be
 * decoded (guard.ts): a 400 denial, not a gRPC error, so that Envoy's
 * failure_mode_allow can never let such a request through.
 */
export const invalidCheckRequest = (e: AuthzError): CheckResponseInit =>
  denied(400, Code.InvalidArgument, "invalid_request", e.message, [], { reason: e.reason });

/** An INVALID_ARGUMENT raised while deciding becomes its 400 denial; anything else stays an error. */
function refusedAsDenial(err: unknown): CheckResponseInit {
  if (err instanceof AuthzError && err.code === "INVALID_ARGUMENT") return invalidCheckRequest(err);
  throw err;
}

function durationOf(us: number): { seconds: bigint; nanos: number } {
  const v = Math.max(0, Math.round(us));
  return { seconds: BigInt(Math.floor(v / 1_000_000)), nanos: (v % 1_000_000) * 1000 };
}

const UNIT: Record<WindowUnit, RateLimitResponse_RateLimit_Unit> = {
  second: RateLimitResponse_RateLimit_Unit.SECOND,
  minute: RateLimitResponse_RateLimit_Unit.MINUTE,
  hour: RateLimitResponse_RateLimit_Unit.HOUR,
  day: RateLimitResponse_RateLimit_Unit.DAY,
  week: RateLimitResponse_RateLimit_Unit.WEEK,
  month: RateLimitResponse_RateLimit_Unit.MONTH,
  year: RateLimitResponse_RateLimit_Unit.YEAR,
};

const currentLimit = (p: RatePolicy) => ({ name: p.name, requestsPerUnit: Math.min(p.limit, UINT32_MAX), unit: UNIT[windowUnit(p.windowSec)] });

/** The figures of a policy result for headers: retry-after when denied, the (exact) reset otherwise. */
const figures = (r: PolicyResult) => ({ limit: r.policy.limit, remaining: r.remaining, resetAfterUs: r.resetAfterUs, retryAfterUs: r.retryAfterUs });

/** A rate subject from "type:id"; INVALID_ARGUMENT when it is not one. */
function rateSubjectFrom(value: string, field: string): RateSubject {
  const r = splitRef(value);
  if (!r) throw invalidArgument(`${field} must be "type:id" (user, organization or key), got "${printablePrefix(value)}"`, field);
  return toRateSubject(create(SubjectRefSchema, r), field);
}

/** Applied policies of a rate-limit input; a missing policy or a scope mismatch is the mapping's fault. */
function appliedFor(engine: Snapshot, input: ConsumeInput): AppliedPolicy[] {
  try {
    return resolvePolicies(engine, input);
  } catch (err) {
    if (err instanceof AuthzError) throw mappingFault(`rate limit: ${err.message}`, err);
    throw err;
  }
}

/** A tenant-bound caller spends only its tenant's counters: the rule of src/tenancy.ts, as for ConsumeRateLimit. */
function confinedPolicies(ctx: CallContext, engine: Snapshot, input: ConsumeInput): AppliedPolicy[] {
  const tenant = ctx.caller?.tenantId;
  confineRateSubject(tenant, engine, input);
  const applied = appliedFor(engine, input);
  confineRateCounters(tenant, engine, input, applied);
  return applied;
}

export function envoyAuthorizationHandlers(deps: EnvoyHandlerDeps): ServiceHandlers<typeof Authorization> {
  const authorizer = new EnvoyAuthorizer(deps);
  return {
    check: (req: CheckRequest, ctx: CallContext): CheckResponseInit | Promise<CheckResponseInit> => authorizer.check(req, ctx),
  } satisfies ServiceHandlers<typeof Authorization>;
}

/** A request matched to a route, with what every step of its decision reads. */
interface RoutedRequest {
  readonly ctx: CallContext;
  readonly attrs: HttpAttributes;
  readonly route: MeshRoute;
  readonly vars: Readonly<Record<string, string>>;
  readonly routeName: string;
  readonly fresh: Freshness;
}

type SpendOutcome = { denied: CheckResponseInit } | { headers: Headers };

/** Authorization/Check: route, identity, resource, tenant confinement, decision, then the route's rate limit. */
class EnvoyAuthorizer {
  readonly #deps: EnvoyHandlerDeps;
  readonly #mesh: MeshConfig;
  readonly #clock: () => number;
  readonly #onDecision: (e: DecisionEvent) => void;
  readonly #fault: (message: string) => void;

  constructor(deps: EnvoyHandlerDeps) {
    this.#deps = deps;
    this.#mesh = deps.mesh;
    this.#clock = deps.clock ?? Date.now;
    this.#onDecision = deps.onDecision ?? (() => {});
    this.#fault = faultLogger(deps.logger);
  }

  /** Synchronous unless the route spends a rate limit or the request asks for a freshness the engine must wait for. */
  check(req: CheckRequest, ctx: CallContext): CheckResponseInit | Promise<CheckResponseInit> {
    const a = req.attributes;
    const http = a?.request?.http;
    if (!a || !http) return badRequest("the check request carries no HTTP request (attributes.request.http)");
    if (!http.path || !http.method) return badRequest("the check request's HTTP request has no method or path");
    const attrs = attributesOf(a, http);
    const resolution = this.#resolveRoute(attrs);
    if (resolution.kind === "unknown") {
      if (this.#mesh.unknownRoute === "allow") return this.#allowAnonymous("unknown");
      return denied(
        403,
        Code.PermissionDenied,
        "unknown_route",
        `no authz route for ${attrs.method.slice(0, 16)} ${attrs.path.split("?")[0]?.slice(0, 200)}`,
        [],
        { route: "unknown" },
      );
    }
    const { route, vars } = resolution;
    const routeName = route.name ?? route.path?.source ?? resolution.via;
    const fresh = this.#freshness(attrs);
    if (fresh === undefined) return badRequest(`header ${this.#mesh.consistencyHeader} must be a revision token returned by authz`);
    const r: RoutedRequest = { ctx, attrs, route, vars, routeName, fresh };
    const answer = route.public ? this.#checkPublic(r) : this.#checkProtected(r);
    // A revision token newer than any this deployment handed out (UNKNOWN_REVISION) is judged from the
    // request, like a malformed one: a 400 denial, never a gRPC error that failure_mode_allow lets through.
    return isThenable(answer) ? answer.catch(refusedAsDenial) : answer;
  }

  #resolveRoute(attrs: HttpAttributes): RouteResolution {
    try {
      return resolveRoute(this.#mesh, attrs);
    } catch (err) {
      if (err instanceof MeshMappingError) {
        this.#fault(err.message);
        throw mappingFault(err.message, err);
      }
      throw err;
    }
  }

  /** Allowed without identity; upstream must never see a subject header authz did not set. */
  #allowAnonymous(route: string, headers: Headers = []): CheckResponseInit {
    const subjectHeader = this.#mesh.okHeaders.subject;
    const strip = subjectHeader ? [subjectHeader] : [];
    return allowResponse({ headersToRemove: strip, responseHeadersToAdd: headers.map(headerOption) }, { decision: "allow", route });
  }

  #checkPublic(r: RoutedRequest): CheckResponseInit | Promise<CheckResponseInit> {
    if (!r.route.rateLimit) return this.#allowAnonymous(r.routeName);
    return Promise.resolve(engineFor(this.#deps.live(), r.fresh, r.ctx, this.#deps.maxWaitMs)).then(async (engine) => {
      const spent = await this.#spend(r, engine, { vars: r.vars, header: r.attrs.header }, { route: r.routeName });
      if ("denied" in spent) return spent.denied;
      return this.#allowAnonymous(r.routeName, spent.headers);
    });
  }

  #checkProtected(r: RoutedRequest): CheckResponseInit | Promise<CheckResponseInit> {
    const subject = this.#subjectOf(r);
    if (isBad(subject)) return subject.bad;
    const resource = this.#resourceOf(r);
    if (isBad(resource)) return resource.bad;
    const engine = engineFor(this.#deps.live(), r.fresh, r.ctx, this.#deps.maxWaitMs);
    return isThenable(engine) ? engine.then((e) => this.#decide(r, subject, resource, e)) : this.#decide(r, subject, resource, engine);
  }

  /** The decision on one engine state; the rate limit is spent (the only wait) only when the route has one and the check allowed. */
  #decide(r: RoutedRequest, subject: SubjectRef, resource: ResourceRef, engine: Snapshot): CheckResponseInit | Promise<CheckResponseInit> {
    const permission = r.route.permission as string;
    const meta: JsonObject = {
      route: r.routeName,
      subject: `${subject.type}:${subject.id}`,
      permission,
      resource: `${resource.type}:${resource.id}`,
      revision: engine.revision.toString(),
    };
    const confined = orDenied(
      () => confineRead(r.ctx, engine, subject, resource),
      "PERMISSION_DENIED",
      () => forbidden(meta, "OTHER_TENANT"),
    );
    if (isBad(confined)) return confined.bad;
    const d = engine.check(subject, permission, resource, this.#clock());
    this.#onDecision({ method: "Check", ctx: r.ctx, subject, permission, resource, decision: d, revision: engine.revision });
    if (!d.allowed) return forbidden(meta, d.reason);
    const allow = (spent: SpendOutcome) => ("denied" in spent ? spent.denied : this.#allowed(subject, engine, meta, d.reason, spent.headers));
    if (!r.route.rateLimit) return allow({ headers: [] });
    return this.#spend(r, engine, { vars: r.vars, header: r.attrs.header, subject }, meta).then(allow);
  }

  /** The allow answer: the revision and subject headers upstream, the rate-limit headers to the client. */
  #allowed(subject: SubjectRef, engine: Snapshot, meta: JsonObject, reason: string, rateHeaders: Headers): CheckResponseInit {
    const upstream: Headers = [];
    const { revision: revisionHeader, subject: subjectHeader } = this.#mesh.okHeaders;
    if (revisionHeader) upstream.push([revisionHeader, engine.revision.toString()]);
    if (subjectHeader) upstream.push([subjectHeader, `${subject.type}:${subject.id}`]);
    return allowResponse({ headers: upstream.map(headerOption), responseHeadersToAdd: rateHeaders.map(headerOption) }, { decision: "allow", ...meta, reason });
  }

  /** The request's subject: 401 without one, 400 when it is malformed. */
  #subjectOf(r: RoutedRequest): SubjectRef | { bad: CheckResponseInit } {
    const who = resolveSubject(this.#mesh, r.attrs);
    if (who.kind === "none") {
      const challenge: Headers = [["www-authenticate", this.#mesh.wwwAuthenticate]];
      return { bad: denied(401, Code.Unauthenticated, "unauthenticated", "this request needs an identity", challenge, { route: r.routeName }) };
    }
    if (who.kind === "malformed") return { bad: badRequest(who.message) };
    return orBadRequest<SubjectRef>(() => toSubject(who.ref, "subject"), badRequest);
  }

  /** The route's resource: 400 when the request lacks what it needs, a mapping fault when the route does. */
  #resourceOf(r: RoutedRequest): ResourceRef | { bad: CheckResponseInit } {
    const { route, routeName } = r;
    const resourceValue = route.resource ? renderValue(route.resource, { vars: r.vars, header: r.attrs.header }) : undefined;
    if (!resourceValue || !resourceValue.ok) {
      if (resourceValue?.kind === "header") return { bad: badRequest(`the resource needs ${resourceValue.missing}`) };
      const why = resourceValue?.ok === false ? `"${route.resource?.source}" needs ${resourceValue.missing}` : "is not set";
      this.#fault(`route ${routeName}: the resource ${why}`);
      throw mappingFault(`route ${routeName}: the resource ${why}`);
    }
    const ref = splitRef(resourceValue.value);
    if (!ref) return { bad: badRequest(`the resource must be "type:id", got "${printablePrefix(resourceValue.value)}"`) };
    return orBadRequest<ResourceRef>(() => toResource(ref, "resource"), badRequest);
  }

  /** Spends a route's rate limit; headers for the response when allowed, else the denial. */
  async #spend(r: RoutedRequest, engine: Snapshot, input: TemplateInput, meta: JsonObject): Promise<SpendOutcome> {
    const rl = r.route.rateLimit;
    if (!rl) return { headers: [] };
    const consumeInput = rateInputFor(rl, input);
    if ("denied" in consumeInput) return consumeInput;
    const applied = orDenied(
      () => confinedPolicies(r.ctx, engine, consumeInput),
      "PERMISSION_DENIED",
      () => forbidden(meta, "OTHER_TENANT"),
    );
    if (isBad(applied)) return { denied: applied.bad };
    const d = await consume(this.#deps.store, applied, rl.cost);
    this.#deps.onRateLimitDecision?.(d.source.toLowerCase());
    return rateLimitAnswer(d, meta);
  }

  /** Freshness the request asks for with the consistency header (a revision token from authz); undefined when malformed. */
  #freshness(attrs: HttpAttributes): Freshness | undefined {
    const h = this.#mesh.consistencyHeader ? attrs.header(this.#mesh.consistencyHeader)?.trim() : undefined;
    if (h === undefined || h === "") return { kind: "latest" };
    if (!REVISION.test(h)) return undefined;
    return { kind: "at_least", revision: BigInt(h) };
  }
}

/** What a route's rate limit counts, rendered from the request; a 400 when the request lacks a value it needs. */
function rateInputFor(rl: RouteRateLimit, input: TemplateInput): ConsumeInput | { denied: CheckResponseInit } {
  const render = (t: ValueTemplate, what: string): string | CheckResponseInit => {
    const r = renderValue(t, input);
    if (r.ok) return r.value;
    if (r.kind === "header") return badRequest(`${what} needs ${r.missing}`);
    throw mappingFault(`${what} "${t.source}" needs ${r.missing}, which this route does not provide`);
  };
  const subjectValue = render(rl.subject, "the rate-limit subject");
  if (typeof subjectValue !== "string") return { denied: subjectValue };
  let organizationId: string | undefined;
  if (rl.organization) {
    const o = render(rl.organization, "the rate-limit organization");
    if (typeof o !== "string") return { denied: o };
    if (!UUID.test(o)) return { denied: badRequest(`the rate-limit organization must be a UUID, got "${printablePrefix(o)}"`) };
    organizationId = o.toLowerCase();
  }
  const subject = orBadRequest(() => rateSubjectFrom(subjectValue, "rate_limit.subject"), badRequest);
  if (isBad(subject)) return { denied: subject.bad };
  return { policy: rl.policy, subject, organizationId: subject.type === "user" ? organizationId : undefined };
}

/** A rate-limit decision as the Check answer: 429 when denied, 503 when the store failed closed, else the headers to send. */
function rateLimitAnswer(d: RateDecision, meta: JsonObject): SpendOutcome {
  const top = d.deciding;
  if (!d.allowed && top) {
    const rmeta = { ...meta, rate_limit_policy: top.policy.name, rate_limit_source: d.source };
    if (d.source === "FAILURE_CLOSED") {
      const retry = String(Math.max(1, Math.ceil(top.retryAfterUs / 1_000_000)));
      return {
        denied: denied(
          503,
          Code.Unavailable,
          "rate_limit_unavailable",
          "the rate limit cannot be checked right now; retry later",
          [["retry-after", retry]],
          rmeta,
        ),
      };
    }
    return {
      denied: denied(429, Code.ResourceExhausted, "rate_limited", `rate limit ${top.policy.name} exceeded`, rateLimitHeaders(figures(top), true), rmeta),
    };
  }
  // Allowed: tell the client where it stands (only when a counter answered).
  return { headers: top && d.source === "STORE" ? rateLimitHeaders(figures(top), false) : [] };
}

/** Per-descriptor preparation for ShouldRateLimit. */
type Prepared =
  /** No policy applies: OK, no limit. */
  | { kind: "none" }
  /** The named policy cannot be applied to this descriptor (no entry of its scope): its failure mode answers. */
  | { kind: "fail"; policy: RatePolicy }
  /**
   * A subject entry is present but malformed (an id that is not a UUID, a key out of bounds): OVER_LIMIT,
   * whatever the failure modes. Ignoring it would let a client that controls the entry (a header) escape
   * every limit its subject has.
   */
  | { kind: "invalid" }
  | { kind: "applied"; applied: AppliedPolicy[]; cost: number };

type DescriptorStatus = MessageInitShape<typeof RateLimitResponse_DescriptorStatusSchema>;
type RateLimitResponseInit = MessageInitShape<typeof RateLimitResponseSchema>;

/** One counter: a policy and its owner. */
const counterKey = (a: AppliedPolicy) => `${a.policy.id}|${hashTag(a.owner)}`;

/** How many distinct counters the prepared descriptors would touch (bounded per call, like one ConsumeRateLimit). */
function distinctCounters(prepared: readonly Prepared[]): number {
  const keys = new Set<string>();
  for (const p of prepared) if (p.kind === "applied") for (const a of p.applied) keys.add(counterKey(a));
  return keys.size;
}

export function envoyRateLimitHandlers(deps: EnvoyHandlerDeps): ServiceHandlers<typeof EnvoyRateLimitService> {
  const m = deps.mesh.rateLimitService;
  const onSource = deps.onRateLimitDecision ?? (() => {});
  return {
    async shouldRateLimit(req: RateLimitRequest, ctx: CallContext): Promise<RateLimitResponseInit> {
      checkDescriptorBounds(req.descriptors);
      if (m.domains && !m.domains.has(req.domain)) {
        const ok: DescriptorStatus = { code: RateLimitResponse_Code.OK };
        return { overallCode: RateLimitResponse_Code.OK, statuses: req.descriptors.map(() => ok) };
      }
      const engine = deps.live().current();
      const requestCost = req.hitsAddend === 0 ? 1 : req.hitsAddend;
      const prepared = req.descriptors.map((d) => prepare(m, engine, ctx, d, requestCost));
      checkCounterCount(distinctCounters(prepared));
      // A request denied anyway (a malformed entry, a fail-closed policy that could not be applied) spends nothing: the others are only read.
      const doomed = prepared.some((p) => p.kind === "invalid" || (p.kind === "fail" && p.policy.failureMode === "closed" && !p.policy.shadow));
      const results = await spendDescriptors(deps.store, prepared, doomed);
      return rateLimitResponse(prepared, results, onSource);
    },
  } satisfies ServiceHandlers<typeof EnvoyRateLimitService>;
}

/** Thrown by inputFor when the named policy's scope has no entry in the descriptor. */
const MISSING_ENTRY = Symbol("no entry of the policy's scope");

/** The counting input of a descriptor: by its policy's scope when it names one, else by the subject entries it carries. */
function inputFor(plan: DescriptorPlan, policy: RatePolicy | undefined): ConsumeInput | undefined {
  const s = plan.subjects;
  const rate = (type: "user" | "organization" | "key", id: string) => toRateSubject(create(SubjectRefSchema, { type, id }), `descriptor ${type}`);
  const org = (): string | undefined => {
    if (s.organization === undefined) return undefined;
    if (!UUID.test(s.organization)) throw invalidArgument(`descriptor organization must be a UUID, got "${printablePrefix(s.organization)}"`);
    return s.organization.toLowerCase();
  };
  const need = (type: "user" | "organization" | "key"): string => {
    const v = s[type];
    if (v === undefined) throw MISSING_ENTRY;
    return v;
  };
  if (policy) {
    switch (policy.scope) {
      case "user":
        // The organization entry, when there is one, is the context: the user's counter of its tenant.
        return { policy: policy.name, subject: rate("user", need("user")), organizationId: org() };
      case "organization":
        if (s.organization !== undefined) return { policy: policy.name, subject: rate("organization", s.organization), organizationId: undefined };
        return { policy: policy.name, subject: rate("organization", need("organization")), organizationId: undefined };
      case "key":
        return { policy: policy.name, subject: rate("key", need("key")), organizationId: undefined };
      case "global":
        return undefined;
    }
  }
  if (s.user !== undefined) return { policy: undefined, subject: rate("user", s.user), organizationId: org() };
  if (s.organization !== undefined) return { policy: undefined, subject: rate("organization", s.organization), organizationId: undefined };
  if (s.key !== undefined) return { policy: undefined, subject: rate("key", s.key), organizationId: undefined };
  return undefined;
}

/**
 * What one descriptor spends. A descriptor whose named policy has no entry
 * of its scope answers by that policy's failure mode (without a named policy
 * it is ignored); one with a malformed subject entry is over the limit
 * (docs/mesh.md, ShouldRateLimit 11); a tenant-bound caller
 * naming counters outside its tenant fails the whole call (OTHER_TENANT).
 */
function prepare(m: RateLimitServiceMapping, engine: Snapshot, ctx: CallContext, d: RateLimitDescriptor, requestCost: number): Prepared {
  const cost =
    d.hitsAddend !== undefined ? Number(d.hitsAddend > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : d.hitsAddend) : requestCost;
  const plan = planDescriptor(m, d.entries);
  const policy = plan.policy !== undefined ? engine.ratePolicy(plan.policy) : undefined;
  if (plan.policy !== undefined && !policy) return { kind: "none" };
  const tenant = ctx.caller?.tenantId;
  if (policy?.scope === "global") {
    const applied = [{ policy, owner: GLOBAL_OWNER }];
    confineRateCounters(tenant, engine, undefined, applied);
    return { kind: "applied", applied, cost };
  }
  const unusable = (err: unknown): Prepared => {
    if (!(err instanceof AuthzError)) throw err;
    return policy ? { kind: "fail", policy } : { kind: "none" };
  };
  let input: ConsumeInput | undefined;
  try {
    input = inputFor(plan, policy);
  } catch (err) {
    if (err === MISSING_ENTRY) return policy ? { kind: "fail", policy } : { kind: "none" };
    if (err instanceof AuthzError) return { kind: "invalid" };
    throw err;
  }
  if (!input) return { kind: "none" };
  confineRateSubject(tenant, engine, input);
  let applied: AppliedPolicy[];
  try {
    applied = resolvePolicies(engine, input);
  } catch (err) {
    return unusable(err);
  }
  confineRateCounters(tenant, engine, input, applied);
  return applied.length > 0 ? { kind: "applied", applied, cost } : { kind: "none" };
}

/** Descriptors with the same cost are spent together, all or nothing, each distinct counter once; a decision per applied descriptor. */
async function spendDescriptors(store: RateLimitStore, prepared: readonly Prepared[], doomed: boolean): Promise<Array<RateDecision | undefined>> {
  const results: Array<RateDecision | undefined> = new Array(prepared.length);
  const groups = new Map<number, number[]>();
  prepared.forEach((p, i) => {
    if (p.kind !== "applied") return;
    const g = groups.get(p.cost);
    if (g) g.push(i);
    else groups.set(p.cost, [i]);
  });
  await Promise.all(
    [...groups].map(async ([cost, members]) => {
      const buckets: AppliedPolicy[] = [];
      const at = new Map<string, number>();
      const index = members.map((i) =>
        (prepared[i] as Extract<Prepared, { kind: "applied" }>).applied.map((a) => {
          const key = counterKey(a);
          let k = at.get(key);
          if (k === undefined) {
            k = buckets.length;
            at.set(key, k);
            buckets.push(a);
          }
          return k;
        }),
      );
      const all = await consume(store, buckets, doomed ? 0 : cost);
      members.forEach((i, j) => {
        results[i] = combine((index[j] as number[]).map((k) => all.policies[k] as PolicyResult));
      });
    }),
  );
  return results;
}

/** The ShouldRateLimit answer: a status per descriptor, OVER_LIMIT overall when any is, with the headers of the longest wait. */
function rateLimitResponse(
  prepared: readonly Prepared[],
  results: ReadonlyArray<RateDecision | undefined>,
  onSource: (source: string) => void,
): RateLimitResponseInit {
  const ok: DescriptorStatus = { code: RateLimitResponse_Code.OK };
  let worst: PolicyResult | undefined;
  const statuses = prepared.map((p, i): DescriptorStatus => {
    if (p.kind === "none") return ok;
    if (p.kind === "invalid") {
      onSource("invalid_descriptor");
      return { code: RateLimitResponse_Code.OVER_LIMIT };
    }
    if (p.kind === "fail") {
      const closed = p.policy.failureMode === "closed" && !p.policy.shadow;
      onSource(closed ? "failure_closed" : "failure_open");
      return { code: closed ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK, currentLimit: currentLimit(p.policy) };
    }
    const d = results[i] as RateDecision;
    onSource(d.source.toLowerCase());
    const top = d.deciding as PolicyResult;
    if (!d.allowed && (worst === undefined || top.retryAfterUs === NEVER || (worst.retryAfterUs !== NEVER && top.retryAfterUs > worst.retryAfterUs)))
      worst = top;
    const counted = top.source === "STORE" || top.source === "SHADOW";
    const untilUs = !d.allowed && top.retryAfterUs > 0 ? top.retryAfterUs : top.resetAfterUs;
    return {
      code: d.allowed ? RateLimitResponse_Code.OK : RateLimitResponse_Code.OVER_LIMIT,
      currentLimit: currentLimit(top.policy),
      ...(counted ? { limitRemaining: Math.min(Math.max(0, top.remaining), UINT32_MAX), durationUntilReset: durationOf(untilUs) } : {}),
    };
  });
  const over = statuses.some((s) => s.code === RateLimitResponse_Code.OVER_LIMIT);
  return {
    overallCode: over ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK,
    statuses,
    ...(over && worst ? { responseHeadersToAdd: rateLimitHeaders(figures(worst), true).map(([key, value]) => ({ key, value })) } : {}),
  };
}
