import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Duplex } from "node:stream";
import type { DescMethod } from "@bufbuild/protobuf";
import type { TLSSocket } from "node:tls";
import { type ConnectRouter, createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import type { Caller } from "../auth/caller.js";
import type { PeerIdentity, TlsFiles } from "./grpc-server.js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "../logger.js";
import type { CallLog } from "./call-log.js";
import { codeName, toConnectError, toPublicError } from "./errors.js";
import type { CallContext, ServiceBinding } from "./handler-types.js";

/**
 * The HTTP listener: the Connect protocol (JSON or binary over HTTP/1.1 and
 * HTTP/2), gRPC-Web and gRPC through connect-node, plus GET /healthz
 * (liveness: the process answers) and GET /readyz (readiness: 200 only while
 * health is SERVING). HTTP/1.1 and cleartext HTTP/2 share one port: the first
 * bytes of a connection decide which server gets it.
 */

type AnyHandler = (req: unknown, ctx: CallContext) => unknown;

const PEER = createContextKey<Caller | undefined>(undefined, { description: "verified client certificate identity" });

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

function routes(bindings: readonly ServiceBinding[], logger: Logger, callLog: CallLog) {
  return (router: ConnectRouter) => {
    for (const { service, handlers } of bindings) {
      const impl: Record<string, unknown> = {};
      for (const method of service.methods as DescMethod[]) {
        const handler = (handlers as Record<string, AnyHandler>)[method.localName] as AnyHandler;
        const path = `/${service.typeName}/${method.name}`;
        if (method.methodKind === "unary") {
          impl[method.localName] = async (req: unknown, hctx: HandlerContext) => {
            const started = process.hrtime.bigint();
            const rid = callLog.requestId(hctx.requestHeader.get("x-request-id") ?? undefined);
            try {
              const header = (n: string) => hctx.requestHeader.get(n) ?? undefined;
              const res = await handler(req, contextFrom(hctx, path, rid));
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
              yield* handler(req, contextFrom(hctx, path, rid)) as AsyncIterable<unknown>;
              callLog.done(path, rid, hctx.signal.aborted ? "CANCELLED" : "OK", started);
            } catch (err) {
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

export function createHttpListener(
  bindings: readonly ServiceBinding[],
  deps: {
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
  },
): HttpListener {
  const peerIdentity = deps.peerIdentity;
  const adapter = connectNodeAdapter({
    routes: routes(bindings, deps.logger, deps.callLog),
    ...(peerIdentity
      ? {
          contextValues: (req: { socket: unknown }) => {
            const sock = req.socket as Partial<TLSSocket>;
            const cert = typeof sock.getPeerCertificate === "function" && sock.authorized ? sock.getPeerCertificate() : undefined;
            return createContextValues().set(PEER, peerIdentity(cert));
          },
        }
      : {}),
    readMaxBytes: deps.maxMessageBytes,
    writeMaxBytes: deps.maxMessageBytes,
  });
  const handle = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (req.method === "GET" && (req.url === "/healthz" || req.url === "/readyz")) {
      const ok = req.url === "/healthz" || deps.isReady();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain; charset=utf-8" });
      res.end(ok ? "ok\n" : "not ready\n");
      return;
    }
    if (deps.extraRoutes?.(req, res)) return;
    if (req.method === "GET" && req.url === "/metrics" && deps.metrics) {
      const m = deps.metrics;
      m.text().then(
        (body) => {
          res.writeHead(200, { "content-type": m.contentType });
          res.end(body);
        },
        (err: unknown) => {
          deps.logger.error({ err }, "metrics collection failed");
          res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
          res.end("metrics unavailable\n");
        },
      );
      return;
    }
    adapter(req as never, res as never);
  };
  if (deps.tls) {
    const tls = deps.tls;
    const secure = http2.createSecureServer(
      {
        cert: tls.cert,
        key: tls.key,
        allowHTTP1: true,
        ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
      },
      handle,
    );
    const tlsSessions = new Set<http2.ServerHttp2Session>();
    secure.on("session", (s) => {
      tlsSessions.add(s);
      s.once("close", () => tlsSessions.delete(s));
    });
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
  const h1 = http.createServer(handle);
  h1.keepAliveTimeout = 65_000;
  const h2 = http2.createServer({}, handle);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  const PREFACE = Buffer.from("PRI * HTTP/2.0");
  const server = net.createServer((socket) => {
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

export function listenHttp(l: HttpListener, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    l.server.once("error", reject);
    l.server.listen(port, host, () => {
      l.server.off("error", reject);
      resolve((l.server.address() as net.AddressInfo).port);
    });
  });
}
