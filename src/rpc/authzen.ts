// The AuthZEN Authorization API 1.0 (OpenID) over HTTP JSON, on the HTTP
// listener through its extraRoutes hook:
//   POST /access/v1/evaluation               one decision (as Check)
//   POST /access/v1/evaluations              many, with defaults and
//                                            options.evaluations_semantic (as CheckBulk)
//   POST /access/v1/search/{subject,resource,action}  search (src/rpc/authzen-search.ts)
//   GET  /.well-known/authzen-configuration  PDP metadata (public)
// AuthZEN entities map onto ours: subject {type, id} → SubjectRef, action.name →
// permission, resource {type, id} → ResourceRef; properties and context are
// accepted and ignored (decisions come from the stored grants).
// Callers authenticate as for every RPC (API key, JWT or client certificate)
// and need the "check" scope.

import type { TLSSocket } from "node:tls";
import type { Authenticator } from "../auth/authenticator.js";
import type { Snapshot } from "../engine/snapshot.js";
import type { ResourceRef, SubjectRef } from "../engine/types.js";
import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { LiveEngine } from "../store/live-engine.js";
import { BadRequest, type Call, contextFor, firstHeader, HTTP_STATUS, jsonCall, type Req, type Res, send, sendError } from "./authzen-http.js";
import { SEARCH_PATHS, type SearchDeps, search, searchKindOf } from "./authzen-search.js";
import type { CallLog } from "./call-log.js";
import { codeName, toPublicError } from "./errors.js";
import type { PeerIdentity } from "./grpc-server.js";
import type { Admission } from "./guard.js";
import type { CallContext } from "./handler-types.js";
import { INPUT_LIMITS, JSON_LIMITS, type JsonLimits } from "./input-bounds.js";
import { LookupPages } from "./lookup-pages.js";
import { type DecisionEvent, engineFor, MAX_BULK_ITEMS, toResource, toSubject } from "./permission-handlers.js";
import { confineRead } from "./tenancy.js";

export const AUTHZEN_PATHS = {
  evaluation: "/access/v1/evaluation",
  evaluations: "/access/v1/evaluations",
  metadata: "/.well-known/authzen-configuration",
} as const;

/** The call log's (and so the metrics') name for every other /access/v1/ path: never the raw path. */
export const UNKNOWN_AUTHZEN_PATH = "unknown";

/**
 * Bounds of an evaluation(s) body: strings of 4 KiB (subject, action,
 * resource), JSON-ish ones in properties and context; the evaluations array
 * is counted by parseRequest (MAX_BULK_ITEMS).
 */
export const AUTHZEN_BODY_LIMITS: JsonLimits = {
  stringBytes: INPUT_LIMITS.stringBytes,
  items: INPUT_LIMITS.jsonItems,
  depth: INPUT_LIMITS.jsonDepth,
  within: (key) => (key === "properties" || key === "context" ? JSON_LIMITS : undefined),
  handlerCounted: new Set(["evaluations"]),
};

export const EVALUATIONS_SEMANTICS = ["execute_all", "deny_on_first_deny", "permit_on_first_permit"] as const;
export type EvaluationsSemantic = (typeof EVALUATIONS_SEMANTICS)[number];

export interface AuthzenDeps {
  /** The live engine; throws UNAVAILABLE until the store is loaded (→ 503). */
  live: () => LiveEngine;
  /** The same authenticator as the RPC guard. */
  authenticator: Authenticator;
  callLog: CallLog;
  logger: Logger;
  /** Per decision (metrics and the decision log): method "Check" for an evaluation, "CheckBulk" for each of evaluations. */
  onDecision?: (e: DecisionEvent) => void;
  /** Published base URL (AUTHZ_AUTHZEN_BASE_URL, e.g. "https://authz.example.com"); unset = the request's scheme and Host. */
  baseUrl?: string | undefined;
  /** Largest request body (AUTHZ_MAX_MESSAGE_BYTES). */
  maxBodyBytes: number;
  /** Cap on freshness waits (AUTHZ_MAX_WAIT_MS). */
  maxWaitMs?: number;
  /** Client-certificate identities on a mutual-TLS listener. */
  peerIdentity?: PeerIdentity | undefined;
  /** The count of calls in progress shared with the RPCs (AUTHZ_MAX_CONCURRENT_CALLS); none = unlimited. */
  admission?: Admission;
  clock?: () => number;
}

/** One AuthZEN decision. */
export interface AuthzenDecision {
  decision: boolean;
  context?: Record<string, unknown>;
}

interface Tuple {
  subject: { type: string; id: string };
  action: { name: string };
  resource: { type: string; id: string };
}
type PartialTuple = Partial<Tuple>;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Reads the optional subject/action/resource/context of one tuple; BadRequest when present but malformed. */
function readTuple(o: Obj, at: string): PartialTuple {
  const out: PartialTuple = {};
  const where = (k: string) => (at ? `${at}.${k}` : k);
  for (const k of ["subject", "resource"] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (!isObj(v)) throw new BadRequest(`${where(k)} must be an object with "type" and "id"`);
    if (typeof v["type"] !== "string" || typeof v["id"] !== "string") throw new BadRequest(`${where(k)}.type and ${where(k)}.id must be strings`);
    if (v["properties"] !== undefined && !isObj(v["properties"])) throw new BadRequest(`${where(k)}.properties must be an object`);
    out[k] = { type: v["type"], id: v["id"] };
  }
  const a = o["action"];
  if (a !== undefined) {
    if (!isObj(a) || typeof a["name"] !== "string") throw new BadRequest(`${where("action")} must be an object with a string "name"`);
    if (a["properties"] !== undefined && !isObj(a["properties"])) throw new BadRequest(`${where("action")}.properties must be an object`);
    out.action = { name: a["name"] };
  }
  if (o["context"] !== undefined && !isObj(o["context"])) throw new BadRequest(`${where("context")} must be an object`);
  return out;
}

function complete(t: PartialTuple, at: string): Tuple {
  for (const k of ["subject", "action", "resource"] as const) {
    if (t[k] === undefined) throw new BadRequest(`${at ? `${at}.` : ""}${k} is required${at ? " (or a top-level default)" : ""}`);
  }
  return t as Tuple;
}

/** The parsed body of an evaluation(s) request. */
export type ParsedRequest = { kind: "single"; tuple: Tuple } | { kind: "batch"; tuples: Tuple[]; semantic: EvaluationsSemantic };

/** Parses an evaluation (batch=false) or evaluations body; BadRequest explains what is wrong. */
export function parseRequest(body: unknown, batch: boolean): ParsedRequest {
  if (!isObj(body)) throw new BadRequest("the body must be a JSON object");
  const top = readTuple(body, "");
  const evals = batch ? body["evaluations"] : undefined;
  if (evals === undefined || (Array.isArray(evals) && evals.length === 0)) return { kind: "single", tuple: complete(top, "") };
  if (!Array.isArray(evals)) throw new BadRequest("evaluations must be an array");
  if (evals.length > MAX_BULK_ITEMS) throw new BadRequest(`evaluations holds ${evals.length} items; at most ${MAX_BULK_ITEMS} per request`);
  let semantic: EvaluationsSemantic = "execute_all";
  const options = body["options"];
  if (options !== undefined) {
    if (!isObj(options)) throw new BadRequest("options must be an object");
    const s = options["evaluations_semantic"];
    if (s !== undefined) {
      if (typeof s !== "string" || !(EVALUATIONS_SEMANTICS as readonly string[]).includes(s)) {
        throw new BadRequest(`options.evaluations_semantic must be one of ${EVALUATIONS_SEMANTICS.join(", ")}`);
      }
      semantic = s as EvaluationsSemantic;
    }
  }
  const tuples = evals.map((e: unknown, i) => {
    const at = `evaluations[${i}]`;
    if (!isObj(e)) throw new BadRequest(`${at} must be an object`);
    // An item's key replaces the default as a whole.
    return complete({ ...top, ...readTuple(e, at) }, at);
  });
  return { kind: "batch", tuples, semantic };
}

const REASON_NOT_FOUND = { subject: "subject_not_found", resource: "resource_not_found" } as const;

/**
 * One decision on `engine`. Entities our model cannot hold (an unknown type,
 * an id that is not a UUID) are denials with context.error, as the spec
 * treats per-evaluation errors; a tenant-bound caller naming another
 * tenant's data gets PERMISSION_DENIED (thrown).
 */
export function decide(
  engine: Snapshot,
  t: Tuple,
  ctx: CallContext,
  now: number,
  onDecision: (e: DecisionEvent) => void,
  method: DecisionEvent["method"],
): AuthzenDecision {
  const refuse = (reason: string, message: string): AuthzenDecision => ({ decision: false, context: { reason, error: { status: 400, message } } });
  let subject: SubjectRef;
  let resource: ResourceRef;
  try {
    subject = toSubject(t.subject, "subject");
  } catch (err) {
    if (err instanceof AuthzError && err.code === "INVALID_ARGUMENT") return refuse(REASON_NOT_FOUND.subject, err.message);
    throw err;
  }
  try {
    resource = toResource(t.resource, "resource");
  } catch (err) {
    if (err instanceof AuthzError && err.code === "INVALID_ARGUMENT") return refuse(REASON_NOT_FOUND.resource, err.message);
    throw err;
  }
  const permission = t.action.name;
  if (permission.length === 0 || permission.length > 128) return refuse("permission_not_found", "action.name must be 1 to 128 characters");
  confineRead(ctx, engine, subject, resource);
  const d = engine.check(subject, permission, resource, now);
  onDecision({ method, ctx, subject, permission, resource, decision: d, revision: engine.revision });
  return d.allowed ? { decision: true } : { decision: false, context: { reason: d.reason.toLowerCase() } };
}

/** Evaluates a batch in order; a short-circuit semantic stops after the deciding item (it is the last one returned). */
export function evaluateAll(tuples: readonly Tuple[], semantic: EvaluationsSemantic, one: (t: Tuple) => AuthzenDecision): AuthzenDecision[] {
  const out: AuthzenDecision[] = [];
  for (const t of tuples) {
    const d = one(t);
    out.push(d);
    if (semantic === "deny_on_first_deny" && !d.decision) break;
    if (semantic === "permit_on_first_permit" && d.decision) break;
  }
  return out;
}

const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;
/** A request id the response may echo as is (visible ASCII, bounded). */
const ECHOABLE = /^[\x21-\x7e]{1,256}$/;

/** GET /.well-known/authzen-configuration: the endpoints, as absolute URLs (public). */
function metadata(deps: AuthzenDeps, call: Call): void {
  let base = deps.baseUrl?.replace(/\/+$/, "");
  if (!base) {
    const host = firstHeader(call.req, ":authority") ?? firstHeader(call.req, "host");
    if (!host || !HOST.test(host)) return sendError(deps, call, 400, "INVALID_ARGUMENT", "the request has no usable Host header; set AUTHZ_AUTHZEN_BASE_URL");
    const encrypted = (call.req.socket as Partial<TLSSocket>).encrypted === true;
    base = `${encrypted ? "https" : "http"}://${host}`;
  }
  send(
    call.res,
    200,
    {
      policy_decision_point: base,
      access_evaluation_endpoint: `${base}${AUTHZEN_PATHS.evaluation}`,
      access_evaluations_endpoint: `${base}${AUTHZEN_PATHS.evaluations}`,
      search_subject_endpoint: `${base}${SEARCH_PATHS.subject}`,
      search_resource_endpoint: `${base}${SEARCH_PATHS.resource}`,
      search_action_endpoint: `${base}${SEARCH_PATHS.action}`,
    },
    { ...call.headers, "cache-control": "public, max-age=300" },
  );
  deps.callLog.done(call.path, call.rid, "OK", call.started);
}

/** POST /access/v1/evaluation(s): one decision, or a batch with its semantic, at one revision. */
function evaluate(deps: AuthzenDeps, call: Call, batch: boolean): Promise<void> {
  const clock = deps.clock ?? Date.now;
  const onDecision = deps.onDecision ?? (() => {});
  return jsonCall(deps, call, AUTHZEN_BODY_LIMITS, async (body, ctx) => {
    const parsed = parseRequest(body, batch);
    const engine = await engineFor(deps.live(), { kind: "latest" }, ctx, deps.maxWaitMs);
    const now = clock();
    const headers = { "x-authz-revision": engine.revision.toString() };
    if (parsed.kind === "single") return { body: decide(engine, parsed.tuple, ctx, now, onDecision, "Check"), headers };
    const evaluations = evaluateAll(parsed.tuples, parsed.semantic, (t) => {
      try {
        return decide(engine, t, ctx, now, onDecision, "CheckBulk");
      } catch (err) {
        // Per-evaluation failures are denials with context.error (AuthZEN §Errors); the request goes on.
        if (!(err instanceof AuthzError)) throw err;
        const status = HTTP_STATUS[toPublicError(err, deps.logger, call.rid, call.path).code] ?? 500;
        return { decision: false, context: { reason: err.code.toLowerCase(), error: { status, message: err.message } } };
      }
    });
    return { body: { evaluations }, headers };
  });
}

/** Any other /access/v1/ path: a credential first, like every route; then 404, logged and counted as "unknown". */
async function unknownPath(deps: AuthzenDeps, call: Call): Promise<void> {
  const c = { ...call, path: UNKNOWN_AUTHZEN_PATH };
  try {
    await deps.authenticator.authenticate(contextFor(deps, call.req, c.path, call.rid));
  } catch (err) {
    const e = toPublicError(err, deps.logger, call.rid, c.path);
    const status = HTTP_STATUS[e.code] ?? 500;
    return sendError(deps, c, status, codeName(e.code), e.message, status === 401 ? { "www-authenticate": 'Bearer realm="authz"' } : {});
  }
  sendError(deps, c, 404, "NOT_FOUND", `not an AuthZEN endpoint served here (see ${AUTHZEN_PATHS.metadata})`);
}

/** The answer for a path and method: a function that answers, or undefined for a path that is not AuthZEN's. */
function route(deps: AuthzenDeps, searches: SearchDeps, path: string, method: string): ((call: Call) => void | Promise<void>) | undefined {
  const isMeta = path === AUTHZEN_PATHS.metadata;
  if (!isMeta && !path.startsWith("/access/v1/")) return undefined;
  const wrongMethod = (allow: string) => (call: Call) => sendError(deps, call, 405, "METHOD_NOT_ALLOWED", `use ${allow.split(",")[0]}`, { allow });
  if (isMeta) return method === "GET" || method === "HEAD" ? (call) => metadata(deps, call) : wrongMethod("GET, HEAD");
  const kind = searchKindOf(path);
  const known = kind !== undefined || path === AUTHZEN_PATHS.evaluation || path === AUTHZEN_PATHS.evaluations;
  if (!known) return (call) => unknownPath(deps, call);
  if (method !== "POST") return wrongMethod("POST");
  if (kind) return (call) => jsonCall(deps, call, AUTHZEN_BODY_LIMITS, (body, ctx) => search(kind, searches, body, ctx));
  return (call) => evaluate(deps, call, path === AUTHZEN_PATHS.evaluations);
}

/**
 * The AuthZEN routes for createHttpListener's extraRoutes: returns true when
 * it takes the request (the AuthZEN paths), false otherwise.
 */
export function authzenRoutes(deps: AuthzenDeps): (req: Req, res: Res) => boolean {
  const searches: SearchDeps = { live: deps.live, maxWaitMs: deps.maxWaitMs, clock: deps.clock ?? Date.now, pages: new LookupPages(deps.clock ?? Date.now) };
  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q >= 0 ? url.slice(0, q) : url;
    const answer = route(deps, searches, path, req.method ?? "GET");
    if (!answer) return false;
    const incoming = firstHeader(req, "x-request-id");
    const rid = deps.callLog.requestId(incoming);
    // The spec: a request id sent by the PEP comes back unchanged.
    const headers = { "x-request-id": incoming !== undefined && ECHOABLE.test(incoming) ? incoming : rid };
    const call: Call = { req, res, path, started: process.hrtime.bigint(), rid, headers };
    Promise.resolve(answer(call)).catch((err: unknown) => {
      deps.logger.error({ err, rid, path }, "AuthZEN request failed while answering");
      if (!res.writableEnded && !res.destroyed) res.destroy();
    });
    return true;
  };
}
