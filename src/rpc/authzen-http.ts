// The HTTP side of the AuthZEN routes (src/rpc/authzen.ts): one JSON POST
// call from credential to answer — authenticate, content type, body size,
// JSON, input bounds, admission — with every failure mapped to an HTTP status
// and an AuthZEN error body, and the call logged once.

import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { Code } from "@connectrpc/connect";
import { type Authenticator, authorize } from "../auth/authenticator.js";
import type { Logger } from "../logger.js";
import type { CallLog } from "./call-log.js";
import { codeName, toPublicError } from "./errors.js";
import type { PeerIdentity } from "./grpc-server.js";
import type { Admission } from "./guard.js";
import type { CallContext } from "./handler-types.js";
import { type JsonLimits, jsonFault } from "./input-bounds.js";

export type Req = http.IncomingMessage | http2.Http2ServerRequest;
export type Res = http.ServerResponse | http2.Http2ServerResponse;

/** A malformed request body: 400. */
export class BadRequest extends Error {}

/** What the HTTP side needs (a subset of AuthzenDeps). */
export interface HttpDeps {
  authenticator: Authenticator;
  callLog: CallLog;
  logger: Logger;
  maxBodyBytes: number;
  peerIdentity?: PeerIdentity | undefined;
  admission?: Admission;
}

/** One request on an AuthZEN path. */
export interface Call {
  req: Req;
  res: Res;
  path: string;
  started: bigint;
  rid: string;
  /** Headers every answer carries (x-request-id). */
  headers: Record<string, string>;
}

export const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.FailedPrecondition]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.Aborted]: 409,
  [Code.ResourceExhausted]: 429,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 504,
};

const JSON_TYPE = /^application\/json\s*(;.*)?$/i;

export function firstHeader(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function send(res: Res, status: number, body: unknown, headers: Record<string, string>): void {
  // The client may be gone (a reset HTTP/2 stream): nothing to answer.
  if (res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  res.end(text);
}

/** An answer that is an AuthZEN error body, logged with `code`. */
export function sendError(
  deps: Pick<HttpDeps, "callLog">,
  call: Call,
  status: number,
  code: string,
  message: string,
  extra: Record<string, string> = {},
): void {
  send(call.res, status, { error: { status, message } }, { ...call.headers, ...extra });
  deps.callLog.done(call.path, call.rid, code, call.started);
}

/** The call's context, as an RPC's: its caller, request id, headers, cancellation, client certificate. */
export function contextFor(deps: Pick<HttpDeps, "peerIdentity">, req: Req, path: string, requestId: string): CallContext {
  const controller = new AbortController();
  req.once("close", () => controller.abort());
  let peer: CallContext["peerIdentity"];
  if (deps.peerIdentity) {
    const sock = req.socket as Partial<TLSSocket>;
    const cert = typeof sock.getPeerCertificate === "function" && sock.authorized ? sock.getPeerCertificate() : undefined;
    peer = deps.peerIdentity(cert);
  }
  return { path, requestId, header: (name) => firstHeader(req, name), timeRemainingMs: () => undefined, signal: controller.signal, peerIdentity: peer };
}

function readBody(req: Req, maxBytes: number): Promise<Buffer | "too_large"> {
  return new Promise((resolve, reject) => {
    const declared = Number(firstHeader(req, "content-length") ?? "0");
    if (declared > maxBytes) {
      req.resume();
      return resolve("too_large");
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > maxBytes) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(c);
    });
    req.once("end", () => resolve(over ? "too_large" : Buffer.concat(chunks)));
    req.once("error", reject);
  });
}

const STATUS_NAME: Record<number, string> = { 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE" };

/** A body refused before it is parsed: 413 or 415. */
class HttpRefusal extends Error {
  constructor(
    readonly status: 413 | 415,
    message: string,
  ) {
    super(message);
  }
}

/** The parsed, bounded JSON body; HttpRefusal (413, 415) or BadRequest (400) when there is none. */
async function jsonBody(req: Req, deps: HttpDeps, limits: JsonLimits): Promise<unknown> {
  const type = firstHeader(req, "content-type");
  if (!type || !JSON_TYPE.test(type)) throw new HttpRefusal(415, 'the body must be JSON, sent with "Content-Type: application/json"');
  const raw = await readBody(req, deps.maxBodyBytes);
  if (raw === "too_large") throw new HttpRefusal(413, `the body is larger than ${deps.maxBodyBytes} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString("utf8"));
  } catch {
    throw new BadRequest("the body is not valid JSON");
  }
  const bad = jsonFault(body, limits);
  if (bad) throw new BadRequest(bad.message);
  return body;
}

/**
 * One JSON POST: authenticate (before reading the body; the "check" scope),
 * read and bound the body, count the call in, then `answer` it (200 with its
 * body and headers). Every failure becomes its HTTP status with an AuthZEN
 * error body; the call is logged once.
 */
export async function jsonCall(
  deps: HttpDeps,
  call: Call,
  limits: JsonLimits,
  answer: (body: unknown, ctx: CallContext) => Promise<{ body: unknown; headers?: Record<string, string> }>,
): Promise<void> {
  const ctx = contextFor(deps, call.req, call.path, call.rid);
  let admitted = false;
  try {
    const caller = await deps.authenticator.authenticate(ctx);
    authorize(caller, call.path);
    ctx.caller = caller;
    const body = await jsonBody(call.req, deps, limits);
    deps.admission?.admit(call.path);
    admitted = true;
    const out = await answer(body, ctx);
    send(call.res, 200, out.body, { ...call.headers, ...out.headers });
    deps.callLog.done(call.path, call.rid, "OK", call.started);
  } catch (err) {
    if (err instanceof HttpRefusal) return sendError(deps, call, err.status, STATUS_NAME[err.status] as string, err.message);
    if (err instanceof BadRequest) return sendError(deps, call, 400, "INVALID_ARGUMENT", err.message);
    const e = toPublicError(err, deps.logger, call.rid, call.path);
    const status = HTTP_STATUS[e.code] ?? 500;
    sendError(deps, call, status, codeName(e.code), e.message, status === 401 ? { "www-authenticate": 'Bearer realm="authz"' } : {});
  } finally {
    if (admitted) deps.admission?.release();
  }
}
