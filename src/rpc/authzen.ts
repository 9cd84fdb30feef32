// The AuthZEN Authorization API 1.0 (OpenID) over HTTP JSON, on the HTTP
// listener through its extraRoutes hook:
//   POST /access/v1/evaluation               one decision (as Check)
//   POST /access/v1/evaluations              many, with defaults and
//                                            options.evaluations_semantic (as CheckBulk)
//   GET  /.well-known/authzen-configuration  PDP metadata (public)
// AuthZEN entities map onto ours: subject {type, id} → SubjectRef, action.name →
// permission, resource {type, id} → ResourceRef; properties and context are
// accepted and ignored (decisions come from the stored grants).
// Callers authenticate as for every RPC (API key, JWT or client certificate)
// and need the "check" scope.

import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { Code } from "@connectrpc/connect";
import { type Authenticator, authorize } from "../auth/authenticator.js";
import type { Snapshot } from "../engine/snapshot.js";
import type { ResourceRef, SubjectRef } from "../engine/types.js";
import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { LiveEngine } from "../store/live-engine.js";
import type { CallLog } from "./call-log.js";
import { codeName, toPublicError } from "./errors.js";
import type { PeerIdentity } from "./grpc-server.js";
import type { Admission } from "./guard.js";
import type { CallContext } from "./handler-types.js";
import { INPUT_LIMITS, JSON_LIMITS, type JsonLimits, jsonFault } from "./input-bounds.js";
import { type DecisionEvent, engineFor, MAX_BULK_ITEMS, toResource, toSubject } from "./permission-handlers.js";
import { confineRead } from "./tenancy.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

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

/** A malformed request body: 400. */
class BadRequest extends Error {}

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

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.ResourceExhausted]: 429,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 504,
};
const STATUS_NAME: Record<number, string> = {
  200: "OK",
  400: "INVALID_ARGUMENT",
  404: "NOT_FOUND",
  405: "METHOD_NOT_ALLOWED",
  413: "PAYLOAD_TOO_LARGE",
  415: "UNSUPPORTED_MEDIA_TYPE",
};

const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;
const JSON_TYPE = /^application\/json\s*(;.*)?$/i;
/** A request id the response may echo as is (visible ASCII, bounded). */
const ECHOABLE = /^[\x21-\x7e]{1,256}$/;

function firstHeader(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The AuthZEN routes for createHttpListener's extraRoutes: returns true when
 * it takes the request (the AuthZEN paths), false otherwise.
 */
export function authzenRoutes(deps: AuthzenDeps): (req: Req, res: Res) => boolean {
  const clock = deps.clock ?? Date.now;
  const onDecision = deps.onDecision ?? (() => {});
  const baseUrl = deps.baseUrl?.replace(/\/+$/, "");

  const send = (res: Res, status: number, body: unknown, headers: Record<string, string>) => {
    // The client may be gone (a reset HTTP/2 stream): nothing to answer.
    if (res.writableEnded || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
    res.end(text);
  };
  const sendError = (res: Res, status: number, message: string, headers: Record<string, string>) => send(res, status, { error: { status, message } }, headers);

  const metadata = (req: Req, res: Res, path: string, started: bigint, rid: string, headers: Record<string, string>) => {
    let base = baseUrl;
    if (!base) {
      const host = firstHeader(req, ":authority") ?? firstHeader(req, "host");
      if (!host || !HOST.test(host)) {
        sendError(res, 400, "the request has no usable Host header; set AUTHZ_AUTHZEN_BASE_URL", headers);
        deps.callLog.done(path, rid, "INVALID_ARGUMENT", started);
        return;
      }
      const encrypted = (req.socket as Partial<TLSSocket>).encrypted === true;
      base = `${encrypted ? "https" : "http"}://${host}`;
    }
    send(
      res,
      200,
      {
        policy_decision_point: base,
        access_evaluation_endpoint: `${base}${AUTHZEN_PATHS.evaluation}`,
        access_evaluations_endpoint: `${base}${AUTHZEN_PATHS.evaluations}`,
      },
      { ...headers, "cache-control": "public, max-age=300" },
    );
    deps.callLog.done(path, rid, "OK", started);
  };

  const contextFor = (req: Req, path: string, requestId: string): CallContext => {
    const controller = new AbortController();
    req.once("close", () => controller.abort());
    let peer: CallContext["peerIdentity"];
    if (deps.peerIdentity) {
      const sock = req.socket as Partial<TLSSocket>;
      const cert = typeof sock.getPeerCertificate === "function" && sock.authorized ? sock.getPeerCertificate() : undefined;
      peer = deps.peerIdentity(cert);
    }
    return {
      path,
      requestId,
      header: (name) => firstHeader(req, name),
      timeRemainingMs: () => undefined,
      signal: controller.signal,
      peerIdentity: peer,
    };
  };

  const readBody = (req: Req): Promise<Buffer | "too_large"> =>
    new Promise((resolve, reject) => {
      const declared = Number(firstHeader(req, "content-length") ?? "0");
      if (declared > deps.maxBodyBytes) {
        req.resume();
        return resolve("too_large");
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on("data", (c: Buffer) => {
        if (over) return;
        size += c.length;
        if (size > deps.maxBodyBytes) {
          over = true;
          chunks.length = 0;
          return;
        }
        chunks.push(c);
      });
      req.once("end", () => resolve(over ? "too_large" : Buffer.concat(chunks)));
      req.once("error", reject);
    });

  const evaluate = async (req: Req, res: Res, path: string, batch: boolean, started: bigint, rid: string, headers: Record<string, string>) => {
    const ctx = contextFor(req, path, rid);
    let admitted = false;
    const finish = (status: number, code: string, body: unknown, extra: Record<string, string> = {}) => {
      if (admitted) {
        admitted = false;
        deps.admission?.release();
      }
      send(res, status, body, { ...headers, ...extra });
      deps.callLog.done(path, rid, code, started);
    };
    try {
      // Authenticate before reading the body: the same credentials and scope ("check") as Check.
      const caller = await deps.authenticator.authenticate(ctx);
      authorize(caller, path);
      ctx.caller = caller;
      const type = firstHeader(req, "content-type");
      if (!type || !JSON_TYPE.test(type)) {
        return finish(415, STATUS_NAME[415] as string, {
          error: { status: 415, message: 'the body must be JSON, sent with "Content-Type: application/json"' },
        });
      }
      const raw = await readBody(req);
      if (raw === "too_large") {
        return finish(413, STATUS_NAME[413] as string, { error: { status: 413, message: `the body is larger than ${deps.maxBodyBytes} bytes` } });
      }
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        throw new BadRequest("the body is not valid JSON");
      }
      const bad = jsonFault(body, AUTHZEN_BODY_LIMITS);
      if (bad) throw new BadRequest(bad.message);
      const parsed = parseRequest(body, batch);
      deps.admission?.admit(path);
      admitted = true;
      const engine = await engineFor(deps.live(), { kind: "latest" }, ctx, deps.maxWaitMs);
      const now = clock();
      const revision = { "x-authz-revision": engine.revision.toString() };
      if (parsed.kind === "single") {
        return finish(200, "OK", decide(engine, parsed.tuple, ctx, now, onDecision, "Check"), revision);
      }
      const evaluations = evaluateAll(parsed.tuples, parsed.semantic, (t) => {
        try {
          return decide(engine, t, ctx, now, onDecision, "CheckBulk");
        } catch (err) {
          // Per-evaluation failures are denials with context.error (AuthZEN §Errors); the request goes on.
          if (!(err instanceof AuthzError)) throw err;
          const status = HTTP_STATUS[toPublicError(err, deps.logger, rid, path).code] ?? 500;
          return { decision: false, context: { reason: err.code.toLowerCase(), error: { status, message: err.message } } };
        }
      });
      return finish(200, "OK", { evaluations }, revision);
    } catch (err) {
      if (err instanceof BadRequest) return finish(400, "INVALID_ARGUMENT", { error: { status: 400, message: err.message } });
      const e = toPublicError(err, deps.logger, rid, path);
      const status = HTTP_STATUS[e.code] ?? 500;
      const extra: Record<string, string> = status === 401 ? { "www-authenticate": 'Bearer realm="authz"' } : {};
      return finish(status, codeName(e.code), { error: { status, message: e.message } }, extra);
    }
  };

  /** Any other /access/v1/ path: a credential first, like every route; then 404, logged and counted as "unknown". */
  const unknownPath = async (req: Req, res: Res, started: bigint, rid: string, headers: Record<string, string>) => {
    const label = UNKNOWN_AUTHZEN_PATH;
    try {
      await deps.authenticator.authenticate(contextFor(req, label, rid));
    } catch (err) {
      const e = toPublicError(err, deps.logger, rid, label);
      const status = HTTP_STATUS[e.code] ?? 500;
      send(res, status, { error: { status, message: e.message } }, status === 401 ? { ...headers, "www-authenticate": 'Bearer realm="authz"' } : headers);
      deps.callLog.done(label, rid, codeName(e.code), started);
      return;
    }
    sendError(res, 404, `not an AuthZEN endpoint served here (see ${AUTHZEN_PATHS.metadata})`, headers);
    deps.callLog.done(label, rid, "NOT_FOUND", started);
  };

  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q >= 0 ? url.slice(0, q) : url;
    const isMeta = path === AUTHZEN_PATHS.metadata;
    if (!isMeta && !path.startsWith("/access/v1/")) return false;
    const started = process.hrtime.bigint();
    const incoming = firstHeader(req, "x-request-id");
    const rid = deps.callLog.requestId(incoming);
    // The spec: a request id sent by the PEP comes back unchanged.
    const headers = { "x-request-id": incoming !== undefined && ECHOABLE.test(incoming) ? incoming : rid };
    const method = req.method ?? "GET";
    if (isMeta) {
      if (method !== "GET" && method !== "HEAD") {
        sendError(res, 405, "use GET", { ...headers, allow: "GET, HEAD" });
        deps.callLog.done(path, rid, "METHOD_NOT_ALLOWED", started);
        return true;
      }
      metadata(req, res, path, started, rid, headers);
      return true;
    }
    const batch = path === AUTHZEN_PATHS.evaluations;
    if (!batch && path !== AUTHZEN_PATHS.evaluation) {
      unknownPath(req, res, started, rid, headers).catch((err: unknown) => {
        deps.logger.error({ err, rid }, "AuthZEN request failed while answering");
        if (!res.writableEnded && !res.destroyed) res.destroy();
      });
      return true;
    }
    if (method !== "POST") {
      sendError(res, 405, "use POST", { ...headers, allow: "POST" });
      deps.callLog.done(path, rid, "METHOD_NOT_ALLOWED", started);
      return true;
    }
    evaluate(req, res, path, batch, started, rid, headers).catch((err: unknown) => {
      deps.logger.error({ err, rid, path }, "AuthZEN request failed while answering");
      if (!res.writableEnded && !res.destroyed) res.destroy();
    });
    return true;
  };
}
