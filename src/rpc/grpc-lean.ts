// The lean unary path: the hot RPCs answered on node:http2 directly, beside
// @grpc/grpc-js on the same port and connections (issue 13). grpc-js keeps
// the port, the sessions, keepalive, TLS and shutdown; after it has bound,
// its one 'stream' listener on each node:http2 server is replaced by a
// router that sends a hot RPC's stream here and every other stream to
// grpc-js unchanged. Compressed requests and anything not application/grpc
// also go to grpc-js, which handles them as before. A call here is decoded,
// run and encoded by grpc-unary.ts, the same functions grpc-js's calls use;
// what this file adds is the framing, the deadline and the trailers.

import type * as http2 from "node:http2";
import { TLSSocket } from "node:tls";
import type { DescMessage } from "@bufbuild/protobuf";
import type { Caller } from "../auth/caller.js";
import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { CallLog } from "./call-log.js";
import { type PublicError, statusDetailsBin, toPublicError } from "./errors.js";
import type { CallContext } from "./handler-types.js";
import { decodeRequest, encodeResponse, type UnaryRun } from "./grpc-unary.js";
import type { PeerIdentity } from "./grpc-server.js";

/** The RPCs the lean path serves (the hot ones); every other path stays with grpc-js. */
export const LEAN_RPCS: ReadonlySet<string> = new Set([
  "/authz.v1.PermissionService/Check",
  "/authz.v1.PermissionService/CheckBulk",
  "/authz.v1.RateLimitService/ConsumeRateLimit",
  "/envoy.service.auth.v3.Authorization/Check",
  "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
]);

export interface LeanMethod {
  readonly run: UnaryRun;
  readonly input: DescMessage;
  readonly output: DescMessage;
}

export interface LeanDeps {
  logger: Logger;
  callLog: CallLog;
  maxMessageBytes: number;
  peerIdentity?: PeerIdentity | undefined;
}

type Stream = http2.ServerHttp2Stream;
type Headers = http2.IncomingHttpHeaders;
type StreamListener = (stream: Stream, headers: Headers, flags: number, rawHeaders: string[]) => void;
type Http2Server = http2.Http2Server | http2.Http2SecureServer;

/** The private parts of grpc-js's Server this relies on (1.14); checked before use. */
interface GrpcJsInternals {
  http2Servers?: unknown;
  onStreamOpened?: (stream: Stream) => void;
}

const OK_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const OK_TRAILERS = { "grpc-status": "0" };
/** What grpc-js advertises: a compressed request is routed to grpc-js, which decompresses it. */
const ACCEPT_ENCODING = "identity,deflate,gzip";
const DEADLINE_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;
/** Longest timer Node keeps; a longer deadline is kept as a time only. */
const MAX_TIMER_MS = 2_147_483_647;
/** Headers grpc-js removes from a call's metadata: a handler never sees them there either. */
const NOT_METADATA = new Set(["grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "accept-encoding", "te", "content-type"]);
const PRINTABLE = /^[ -~]*$/;
const PLAIN_MESSAGE = /^[ -$&-~]*$/;

/** grpc-message as the gRPC spec asks: bytes outside 0x20-0x7E, and "%", percent-encoded (UTF-8). */
export function encodeGrpcMessage(s: string): string {
  if (PLAIN_MESSAGE.test(s)) return s;
  let out = "";
  for (const b of Buffer.from(s, "utf8"))
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

/** The client certificate of a verified TLS connection, as grpc-js's getAuthContext() gives it. */
function peerCertificate(stream: Stream) {
  const socket = stream.session?.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  return cert.raw ? cert : undefined;
}

function sendOkTrailers(this: Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

function onDeadline(call: LeanCall): void {
  call.fail(new AuthzError("DEADLINE_EXCEEDED", "Deadline exceeded"));
}

const noop = () => {};

/** One call on the lean path: its context for the guard and handler, and its stream's state. */
class LeanCall implements CallContext {
  caller?: Caller;
  #rid: string | undefined;
  #controller: AbortController | undefined;
  /** Answered, or the stream is gone: nothing more is written. */
  #finished = false;
  #body: Buffer | Buffer[] | undefined;
  #size = 0;
  #deadline = Number.NaN;
  #timer: NodeJS.Timeout | undefined;
  #closeWatched = false;

  constructor(
    readonly path: string,
    private readonly stream: Stream,
    private readonly headers: Headers,
    private readonly method: LeanMethod,
    private readonly deps: LeanDeps,
  ) {}

  get peerIdentity(): Caller | undefined {
    return this.deps.peerIdentity?.(peerCertificate(this.stream));
  }

  get requestId(): string {
    this.#rid ??= this.deps.callLog.requestId(this.header("x-request-id"));
    return this.#rid;
  }

  /** As grpc-js's Metadata gives it: no pseudo-headers, no transport headers, no -bin values, printable values only. */
  header(name: string): string | undefined {
    if (name.charCodeAt(0) === 58 || name.endsWith("-bin") || NOT_METADATA.has(name)) return undefined;
    const v = this.headers[name];
    const first = Array.isArray(v) ? v[0] : v;
    return typeof first === "string" && PRINTABLE.test(first) ? first : undefined;
  }

  timeRemainingMs(): number | undefined {
    return Number.isNaN(this.#deadline) ? undefined : this.#deadline - Date.now();
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#finished) this.#controller.abort();
      else this.#watchClose();
    }
    return this.#controller.signal;
  }

  /** Listens to the stream; answers at once when the deadline header is malformed. */
  start(): void {
    const s = this.stream;
    s.on("error", noop);
    s.on("data", (chunk: Buffer) => this.#data(chunk));
    s.on("end", () => this.#end());
    const timeout = this.headers["grpc-timeout"];
    if (timeout !== undefined) this.#startDeadline(timeout);
  }

  /** A stream that closes before its answer cancels the call: only watched when a deadline or the signal needs it. */
  #watchClose(): void {
    if (this.#closeWatched) return;
    this.#closeWatched = true;
    this.stream.once("close", () => this.#closed());
  }

  #startDeadline(header: string | string[]): void {
    const m = GRPC_TIMEOUT.exec(Array.isArray(header) ? (header[0] ?? "") : header);
    if (!m) {
      this.fail(
        new AuthzError("INVALID_ARGUMENT", "grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u, n)", { metadata: { field: "grpc-timeout" } }),
      );
      return;
    }
    const ms = Number(m[1]) * (DEADLINE_UNIT_MS[m[2] as string] as number);
    this.#deadline = Date.now() + ms;
    if (ms > MAX_TIMER_MS) return;
    this.#timer = setTimeout(onDeadline, ms, this);
    this.#watchClose();
  }

  #data(chunk: Buffer): void {
    if (this.#finished) return;
    const body = this.#body;
    if (body === undefined) this.#body = chunk;
    else if (Array.isArray(body)) body.push(chunk);
    else this.#body = [body, chunk];
    const before = this.#size;
    this.#size += chunk.length;
    if (before < 5 && this.#size >= 5) {
      const declared = this.#bytes().readUInt32BE(1);
      if (declared > this.deps.maxMessageBytes) {
        const msg = `Received message larger than max (${declared} vs ${this.deps.maxMessageBytes})`;
        this.fail(new AuthzError("RESOURCE_EXHAUSTED", msg, { reason: "MESSAGE_TOO_LARGE" }));
        return;
      }
    }
    if (this.#size > this.deps.maxMessageBytes + 5) this.fail(new AuthzError("UNIMPLEMENTED", "a unary call carries one request message; received more"));
  }

  #bytes(): Buffer {
    const body = this.#body;
    if (body === undefined) return Buffer.alloc(0);
    if (!Array.isArray(body)) return body;
    const whole = Buffer.concat(body, this.#size);
    this.#body = whole;
    return whole;
  }

  /** The request has ended: exactly one uncompressed message, decoded and run. */
  #end(): void {
    if (this.#finished) return;
    const b = this.#bytes();
    if (b.length < 5) return this.fail(new AuthzError("UNIMPLEMENTED", "a unary call carries one request message; received none"));
    const len = b.readUInt32BE(1);
    if (b.length < 5 + len) return this.fail(new AuthzError("INVALID_ARGUMENT", "the request ends inside its message frame", { reason: "MALFORMED_MESSAGE" }));
    if (b.length > 5 + len) return this.fail(new AuthzError("UNIMPLEMENTED", "a unary call carries one request message; received more"));
    if ((b[0] as number) & 1) {
      const msg = "the request message is marked compressed but the call names no grpc-encoding; send it uncompressed or name gzip or deflate";
      return this.fail(new AuthzError("UNIMPLEMENTED", msg));
    }
    const request = decodeRequest(this.method.input, new Uint8Array(b.buffer, b.byteOffset + 5, len));
    this.method.run(request, this, this.#reply);
  }

  #closed(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#finished) return;
    this.#finished = true;
    this.#controller?.abort();
  }

  /** Takes the answer: false when the call was answered already or its stream is gone. */
  #take(): boolean {
    if (this.#finished) return false;
    this.#finished = true;
    if (this.#timer) clearTimeout(this.#timer);
    const s = this.stream;
    return !(s.destroyed || s.closed || s.headersSent);
  }

  readonly #reply = (err: PublicError | null, response?: unknown): void => {
    if (err) return this.#answerError(err);
    const bytes = encodeResponse(this.method.output, response);
    const max = this.deps.maxMessageBytes;
    if (bytes.length > max) return this.fail(new AuthzError("RESOURCE_EXHAUSTED", `Sent message larger than max (${bytes.length} vs. ${max})`));
    if (!this.#take()) return;
    const frame = Buffer.allocUnsafe(bytes.length + 5);
    frame[0] = 0;
    frame.writeUInt32BE(bytes.length, 1);
    bytes.copy(frame, 5);
    const s = this.stream;
    s.respond(OK_HEADERS, { waitForTrailers: true });
    // A stream asks for its trailers once: a plain listener, not once()'s wrapper.
    s.on("wantTrailers", sendOkTrailers);
    s.end(frame);
  };

  /** Answers a failure of the transport itself (deadline, framing, size): not a handler's, so no call-log line, as on grpc-js. */
  fail(err: AuthzError): void {
    this.#answerError(toPublicError(err, this.deps.logger, this.requestId, this.path));
    this.#controller?.abort();
  }

  /** A trailers-only answer: status, message and the google.rpc.Status details. */
  #answerError(e: PublicError): void {
    if (!this.#take()) return;
    this.stream.respond(
      {
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-accept-encoding": ACCEPT_ENCODING,
        "grpc-status": String(e.code),
        "grpc-message": encodeGrpcMessage(e.message),
        "grpc-status-details-bin": Buffer.from(statusDetailsBin(e)).toString("base64").replace(/=+$/, ""),
      },
      { endStream: true },
    );
  }
}

/** Whether the lean path takes a stream: a gRPC content type and an uncompressed request (grpc-js handles the rest). */
function leanable(headers: Headers): boolean {
  const type = headers["content-type"];
  if (typeof type !== "string" || !type.startsWith("application/grpc")) return false;
  const encoding = headers["grpc-encoding"];
  return encoding === undefined || encoding === "identity";
}

/** What the lean path has done, for tests and the log: servers it was installed on, calls it answered. */
export interface LeanStats {
  readonly servers: number;
  readonly calls: number;
}

/**
 * The router: installed on a bound grpc-js server, it serves the hot RPCs
 * and hands every other stream to grpc-js's own listener.
 */
export class LeanRouter implements LeanStats {
  servers = 0;
  calls = 0;
  readonly #done = new WeakSet<Http2Server>();

  constructor(
    private readonly methods: ReadonlyMap<string, LeanMethod>,
    private readonly deps: LeanDeps,
  ) {}

  /** Installs on every node:http2 server grpc-js holds; when its shape is not the expected one, warns and leaves grpc-js serving all. */
  install(server: object): void {
    const internals = server as GrpcJsInternals;
    const map = internals.http2Servers;
    const targets = map instanceof Map ? [...map.keys()].filter((h) => !this.#done.has(h as Http2Server)) : [];
    const fit = targets.length > 0 && targets.every((h) => typeof h?.listeners === "function" && h.listeners("stream").length === 1);
    if (!fit) {
      this.deps.logger.warn("gRPC lean path not installed: @grpc/grpc-js's server is not shaped as expected; grpc-js serves every call");
      return;
    }
    const opened = typeof internals.onStreamOpened === "function" ? internals.onStreamOpened.bind(server) : undefined;
    for (const h of targets as Http2Server[]) {
      const original = h.listeners("stream")[0] as StreamListener;
      h.removeListener("stream", original);
      h.on("stream", (stream: Stream, headers: Headers, flags: number, rawHeaders: string[]) => {
        const path = headers[":path"];
        const method = path === undefined ? undefined : this.methods.get(path);
        if (method === undefined || !leanable(headers)) return original.call(h, stream, headers, flags, rawHeaders);
        this.calls++;
        opened?.(stream);
        new LeanCall(path as string, stream, headers, method, this.deps).start();
      });
      this.#done.add(h);
      this.servers++;
    }
  }
}
