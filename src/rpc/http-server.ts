import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Duplex } from "node:stream";
import type { DescMethod } from "@bufbuild/protobuf";
import type { TLSSocket } from "node:tls";
import { Code, ConnectError, type ConnectRouter, createConnectRouter, createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { createAsyncIterable, type UniversalHandler } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Caller } from "../auth/caller.js";
import type { AuthzError } from "../errors.js";
import type { PeerIdentity, TlsFiles } from "./grpc-server.js";
import type { Logger } from "../logger.js";
import type { CallLog } from "./call-log.js";
import { checkBody, framingOf, tooLarge } from "./connect-request.js";
import { codeName, toConnectError, toPublicError } from "./errors.js";
import { CHECKS_INPUT, type CallContext, type ServiceBinding } from "./handler-types.js";
import { RequestFault } from "./input-bounds.js";

/**
 * The HTTP listener: the Connect protocol (JSON or binary over HTTP/1.1 and
 * HTTP/2), gRPC-Web and gRPC through connect-node, plus GET /healthz
 * (liveness: the process answers) and GET /readyz (readiness: 200 only while
 * health is SERVING). HTTP/1.1 and cleartext HTTP/2 share one port: the first
 * bytes of a connection decide which server gets it.
 */

type AnyHandler = (req: unknown, ctx: CallContext) => unknown;

type NodeReq = http.IncomingMessage | http2.Http2ServerRequest;
type NodeRes = http.ServerResponse | http2.Http2ServerResponse;

const PEER = createContextKey<Caller | undefined>(undefined, { description: "verified client certificate identity" });
/** What connect-request.ts found wrong with the body (connect-node then decoded an empty message instead). */
const FAULT = createContextKey<AuthzError | undefined>(undefined, { description: "request body fault" });

function contextFrom(ctx: HandlerContext, path: string, requestId: string): CallContext {
  return {
    path,
    requestId,
    peerIdentity: ctx.values.get(PEER),
    header: (name) => ctx.requestHeader.get(name) ?? undefined,
    timeRemainingMs: () => ctx.timeoutMs(),
    signal: ctx.signal,
  };
}

/** Errors of writing to a response whose caller has gone (connection closed, stream reset). */
const CLIENT_GONE = new Set([
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_WRITE_AFTER_END",
  "ERR_HTTP2_INVALID_STREAM",
  "ERR_HTTP2_STREAM_ERROR",
  "ECONNRESET",
  "EPIPE",
]);

function clientGone(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && CLIENT_GONE.has(code);
}

function routes(bindings: readonly ServiceBinding[], logger: Logger, callLog: CallLog) {
  return (router: ConnectRouter) => {
    for (const { service, handlers } of bindings) {
      const impl: Record<string, unknown> = {};
      for (const method of service.methods as DescMethod[]) {
        const handler = (handlers as Record<string, AnyHandler>)[method.localName] as AnyHandler;
        const path = `/${service.typeName}/${method.name}`;
        // A handler that does not check its input (no guard) gets no RequestFault: it is answered here.
        const answersFaults = (handler as { [CHECKS_INPUT]?: boolean })[CHECKS_INPUT] !== true;
        const input = (req: unknown, hctx: HandlerContext) => {
          const fault = hctx.values.get(FAULT);
          if (!fault) return req;
          if (answersFaults) throw fault;
          return new RequestFault(fault);
        };
        if (method.methodKind === "unary") {
          impl[method.localName] = async (req: unknown, hctx: HandlerContext) => {
            const started = process.hrtime.bigint();
            const rid = callLog.requestId(hctx.requestHeader.get("x-request-id") ?? undefined);
            try {
              const header = (n: string) => hctx.requestHeader.get(n) ?? undefined;
              const res = await handler(input(req, hctx), contextFrom(hctx, path, rid));
              callLog.done(path, rid, "OK", started, header);
              return res;
            } catch (err) {
              const e = toPublicError(err, logger, rid, path);
              callLog.done(path, rid, codeName(e.code), started, (n) => hctx.requestHeader.get(n) ?? undefined);
              throw toConnectError(e);
            }
          };
        } else if (method.methodKind === "server_streaming") {
          impl[method.localName] = async function* (req: unknown, hctx: HandlerContext) {
            const started = process.hrtime.bigint();
            const rid = callLog.requestId(hctx.requestHeader.get("x-request-id") ?? undefined);
            try {
              yield* handler(input(req, hctx), contextFrom(hctx, path, rid)) as AsyncIterable<unknown>;
              callLog.done(path, rid, hctx.signal.aborted ? "CANCELLED" : "OK", started);
            } catch (err) {
              // The caller went away mid-stream: connect-node reports the failed write to the handler
              // (ERR_STREAM_DESTROYED, ECONNRESET); that is a cancel, not a fault of ours.
              if (hctx.signal.aborted || clientGone(err)) {
                callLog.done(path, rid, "CANCELLED", started);
                throw new ConnectError("the caller cancelled the call", Code.Canceled);
              }
              const e = toPublicError(err, logger, rid, path);
              callLog.done(path, rid, codeName(e.code), started);
              throw toConnectError(e);
            }
          };
        }
      }
      router.service(service, impl as never);
    }
  };
}

export interface HttpListener {
  server: net.Server;
  /** Closes the listener and every open connection (HTTP/2 sessions included). */
  close(): Promise<void>;
}

export interface HttpListenerDeps {
  logger: Logger;
  callLog: CallLog;
  isReady: () => boolean;
  maxMessageBytes: number;
  /** TLS for the listener (ALPN picks HTTP/2 or HTTP/1.1); cleartext when absent. */
  tls?: TlsFiles | undefined;
  peerIdentity?: PeerIdentity | undefined;
  /**
   * Plain HTTP routes served before the RPC routes (e.g. the AuthZEN API):
   * returns true when it took the request.
   */
  extraRoutes?: (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => boolean;
  /** GET /metrics in the Prometheus text format. */
  metrics?: { contentType: string; text(): Promise<string> };
}

export function createHttpListener(bindings: readonly ServiceBinding[], deps: HttpListenerDeps): HttpListener {
  const handle = requestHandler(bindings, deps);
  return deps.tls ? tlsListener(deps.tls, handle) : cleartextListener(handle);
}

/** Every request: health, the extra routes, metrics, then the RPC routes. */
function requestHandler(bindings: readonly ServiceBinding[], deps: HttpListenerDeps): (req: NodeReq, res: NodeRes) => void {
  const rpc = rpcDispatcher(bindings, deps);
  return (req, res) => {
    releaseUnreadBody(req, res, drainLimit(deps.maxMessageBytes));
    if (req.method === "GET" && (req.url === "/healthz" || req.url === "/readyz")) {
      const ok = req.url === "/healthz" || deps.isReady();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain; charset=utf-8" });
      res.end(ok ? "ok\n" : "not ready\n");
      return;
    }
    if (deps.extraRoutes?.(req, res)) return;
    if (req.method === "GET" && req.url === "/metrics" && deps.metrics) {
      serveMetrics(deps.metrics, res, deps.logger);
      return;
    }
    rpc(req, res);
  };
}

function serveMetrics(m: NonNullable<HttpListenerDeps["metrics"]>, res: NodeRes, logger: Logger): void {
  m.text().then(
    (body) => {
      res.writeHead(200, { "content-type": m.contentType });
      res.end(body);
    },
    (err: unknown) => {
      logger.error({ err }, "metrics collection failed");
      res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end("metrics unavailable\n");
    },
  );
}

/** The open HTTP/2 sessions of `server`, so that close can end them. */
function trackSessions(server: http2.Http2Server | http2.Http2SecureServer): Set<http2.ServerHttp2Session> {
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  return sessions;
}

/** TLS: one HTTP/2 server that also speaks HTTP/1.1 (ALPN). */
function tlsListener(tls: TlsFiles, handle: (req: NodeReq, res: NodeRes) => void): HttpListener {
  const secure = http2.createSecureServer(
    {
      cert: tls.cert,
      key: tls.key,
      allowHTTP1: true,
      ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
    },
    handle,
  );
  const tlsSessions = trackSessions(secure);
  return {
    server: secure,
    close: () =>
      new Promise((resolve) => {
        secure.close(() => resolve());
        for (const s of tlsSessions) s.close();
        setTimeout(() => {
          for (const s of tlsSessions) s.destroy();
        }, 1000).unref();
      }),
  };
}

/** Cleartext: HTTP/1.1 and h2c on one port; the first bytes of a connection decide which server gets it. */
function cleartextListener(handle: (req: NodeReq, res: NodeRes) => void): HttpListener {
  const h1 = http.createServer(handle);
  h1.keepAliveTimeout = 65_000;
  const h2 = http2.createServer({}, handle);
  const sockets = new Set<net.Socket>();
  const sessions = trackSessions(h2);
  const PREFACE = Buffer.from("PRI * HTTP/2.0");
  const server = net.createServer((socket) => {
    // As http.createServer does for its own connections: without it, Nagle's algorithm holds back HTTP/2
    // WINDOW_UPDATE frames and a 6 MB upload over h2c took 4-5 s instead of under one.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("data", (first: Buffer) => {
      socket.pause();
      const n = Math.min(first.length, PREFACE.length);
      const isH2 = first.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2) {
        // The HTTP/2 server reads a net.Socket through its native handle and
        // would never see bytes already read in JS: hand it a stream that
        // replays the first chunk, then relays the socket.
        h2.emit("connection", replaying(socket, first));
      } else {
        socket.unshift(first);
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });
  return {
    server,
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
        h1.closeIdleConnections();
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 1000).unref();
      });
    },
  };
}

/** A duplex over `socket` that first yields `first` (already read from it). */
function replaying(socket: net.Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end(cb);
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(first);
  socket.on("data", (chunk: Buffer) => {
    if (!d.push(chunk)) socket.pause();
  });
  socket.on("end", () => d.push(null));
  socket.on("error", (err) => d.destroy(err));
  socket.on("close", () => d.destroy());
  return d;
}

/**
 * Serves the RPC routes as connect-node's own adapter does, with one step
 * before connect-node sees a request: its body is read and checked
 * (connect-request.ts), and a fault found there reaches the handler through
 * the context values.
 */
function rpcDispatcher(
  bindings: readonly ServiceBinding[],
  deps: { logger: Logger; callLog: CallLog; maxMessageBytes: number; peerIdentity?: PeerIdentity | undefined },
): (req: NodeReq, res: NodeRes) => void {
  const router = createConnectRouter({
    readMaxBytes: deps.maxMessageBytes,
    writeMaxBytes: deps.maxMessageBytes,
    acceptCompression: [compressionGzip, compressionBrotli],
    // Honest JSON: a denied Check says "allowed": false and an exhausted limit "remaining": 0,
    // instead of leaving out the fields proto3 JSON would omit as defaults.
    // Unknown fields and enum names are refused (connect-request.ts answers them first, with a reason).
    jsonOptions: { alwaysEmitImplicit: true, ignoreUnknownFields: false },
  });
  routes(bindings, deps.logger, deps.callLog)(router);
  const byPath = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  const peerOf = (req: NodeReq): Caller | undefined => {
    const sock = req.socket as Partial<TLSSocket>;
    const cert = typeof sock.getPeerCertificate === "function" && sock.authorized ? sock.getPeerCertificate() : undefined;
    return deps.peerIdentity?.(cert);
  };
  const serve = async (h: UniversalHandler, req: NodeReq, res: NodeRes) => {
    const values = createContextValues();
    if (deps.peerIdentity) values.set(PEER, peerOf(req));
    const framing = req.method === "POST" ? framingOf(req.headers["content-type"]) : undefined;
    let body: Uint8Array | undefined;
    let dropHeader: string | undefined;
    if (framing) {
      // connect-node never reads the socket itself: a body it stopped reading would stall the connection.
      const keep = deps.maxMessageBytes + (framing.envelope ? 5 : 0);
      const read = await readBody(req, keep, drainLimit(deps.maxMessageBytes));
      const encoding = req.headers[framing.encodingHeader];
      // Too large: an empty stand-in, and the fault the guard answers (with its reason) after authentication.
      const checked = read.bytes
        ? await checkBody(h.method.input, framing, read.bytes, typeof encoding === "string" ? encoding : undefined, deps.maxMessageBytes)
        : tooLarge(framing, deps.maxMessageBytes);
      body = checked?.body ?? read.bytes;
      if (checked) {
        dropHeader = checked.dropHeader;
        if (checked.fault) values.set(FAULT, checked.fault);
      }
    }
    const u = universalRequestFromNodeRequest(req as never, res as never, undefined, values);
    if (dropHeader) u.header.delete(dropHeader);
    // connect-node holds a body to its Content-Length: it must describe the body it now gets.
    if (body && u.header.has("content-length")) u.header.set("content-length", String(body.length));
    const uRes = await h(body ? { ...u, body: createAsyncIterable([body]) } : u);
    await universalResponseToNodeResponse(uRes, res as never);
  };
  return (req, res) => {
    const h = byPath.get((req.url ?? "").split("?", 2)[0] ?? "");
    if (!h) {
      res.writeHead(404);
      res.end();
      return;
    }
    serve(h, req, res).catch((err: unknown) => {
      if (ConnectError.from(err).code !== Code.Aborted) deps.logger.warn({ err, path: h.requestPath }, "answering an RPC failed");
      if (!res.writableEnded && !res.destroyed) res.destroy();
    });
  };
}

/** Past AUTHZ_MAX_MESSAGE_BYTES, how much of a refused body is still read (and dropped) to keep the connection usable. */
const drainLimit = (maxMessageBytes: number) => Math.max(16 << 20, 4 * maxMessageBytes);

/**
 * Reads the whole body. Up to `keep` bytes it is returned; past that,
 * `bytes` is undefined and the rest is read and dropped up to `drain` bytes
 * in all, after which reading stops (releaseUnreadBody then closes the
 * connection once the answer is out).
 */
function readBody(req: NodeReq, keep: number, drain: number): Promise<{ bytes: Uint8Array | undefined }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off("data", onData);
      req.off("end", done);
      req.off("close", onClose);
      resolve({ bytes: size > keep ? undefined : Buffer.concat(chunks) });
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= keep) chunks.push(c);
      else chunks.length = 0;
      if (size > drain) {
        req.pause();
        done();
      }
    };
    const onClose = () => reject(new ConnectError("the client went away while sending", Code.Aborted));
    if (Number(req.headers["content-length"] ?? 0) > drain) {
      size = Number.POSITIVE_INFINITY;
      return done();
    }
    req.on("data", onData);
    req.once("end", done);
    req.once("close", onClose);
  });
}

/**
 * Once the answer is out, a request body nobody reads any more is let go:
 * otherwise the client, still sending, stalls on flow control (HTTP/2) or
 * TCP backpressure (HTTP/1.1) until a timeout, and with it every request
 * queued behind on the connection. HTTP/2 resets the stream with NO_ERROR
 * (RFC 9113, 8.1) once its response is written; HTTP/1.1 reads and drops up
 * to `drainBytes` more, then closes the connection.
 */
function releaseUnreadBody(req: NodeReq, res: NodeRes, drainBytes: number): void {
  if ("stream" in req) {
    // The compatibility response's own "finish" waits for the stream to close, which is what is stuck.
    const stream = req.stream;
    stream.once("finish", () => {
      if (!req.complete && !stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
    return;
  }
  const socket = req.socket;
  res.once("finish", () => {
    if (req.complete) return;
    // A request stream someone gave up on cannot be read any more: the connection cannot carry another request.
    if (req.destroyed || req.readableAborted) {
      socket.destroySoon();
      return;
    }
    req.removeAllListeners("data");
    req.removeAllListeners("readable");
    let left = drainBytes;
    req.on("data", (c: Buffer) => {
      left -= c.length;
      if (left < 0) socket.destroy();
    });
    // With a "readable" listener just removed, resume() only takes effect on the next tick.
    process.nextTick(() => req.resume());
  });
}

export function listenHttp(l: HttpListener, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    l.server.once("error", reject);
    l.server.listen(port, host, () => {
      l.server.off("error", reject);
      resolve((l.server.address() as net.AddressInfo).port);
    });
  });
}
