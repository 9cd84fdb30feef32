import { create, type DescMessage, type DescMethod, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import type { Caller } from "../auth/caller.js";
import type { Logger } from "../logger.js";
import type { CallLog } from "./call-log.js";
import { codeName, type PublicError, statusDetailsBin, toPublicError } from "./errors.js";
import { CHECKS_INPUT, type CallContext, isThenable, type ServiceBinding } from "./handler-types.js";
import { RequestFault, undecodable } from "./input-bounds.js";
import { scanWire } from "./wire-scan.js";

/**
 * gRPC on the fast path: a @grpc/grpc-js server whose (de)serializers are the
 * protobuf-es generated schemas, calling the same handlers as the Connect
 * listener. Measured at ~5x connect-node's throughput for a unary call on
 * this hardware (docs/benchmarks.md).
 */

type AnyHandler = (req: unknown, ctx: CallContext) => unknown;

/** The call's context; the request id and abort signal are made only if asked for. */
function contextFor(
  path: string,
  callLog: CallLog,
  call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
  peerIdentity: PeerIdentity | undefined,
): CallContext {
  let controller: AbortController | undefined;
  let rid: string | undefined;
  return {
    path,
    get peerIdentity() {
      return peerIdentity ? peerIdentity(call.getAuthContext().sslPeerCertificate) : undefined;
    },
    get requestId() {
      rid ??= callLog.requestId(call.metadata.get("x-request-id")[0] as string | undefined);
      return rid;
    },
    header(name) {
      const v = call.metadata.get(name)[0];
      return typeof v === "string" ? v : undefined;
    },
    timeRemainingMs() {
      const deadline = call.getDeadline();
      const d = deadline instanceof Date ? deadline.getTime() : deadline;
      return Number.isFinite(d) ? d - Date.now() : undefined;
    },
    get signal() {
      if (!controller) {
        const c = new AbortController();
        controller = c;
        call.on("cancelled", () => c.abort());
      }
      return controller.signal;
    },
  };
}

function toServiceError(e: PublicError): Partial<grpc.StatusObject> {
  const md = new grpc.Metadata();
  md.set("grpc-status-details-bin", Buffer.from(statusDetailsBin(e)));
  return { code: e.code as number as grpc.status, details: e.message, metadata: md };
}

function definitionFor(method: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  const input: DescMessage = method.input;
  const output: DescMessage = method.output;
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: false,
    responseStream: method.methodKind === "server_streaming",
    requestSerialize: (m) => Buffer.from(toBinary(input, m as never)),
    // Scanned before decoding: malformed or oversized-in-elements bytes never reach protobuf-es.
    requestDeserialize: (b: Buffer) => {
      const fault = scanWire(input, b);
      if (fault) return new RequestFault(undecodable(input.typeName, fault));
      try {
        return fromBinary(input, b);
      } catch (err) {
        return new RequestFault(undecodable(input.typeName, { reason: "MALFORMED_MESSAGE", message: err instanceof Error ? err.message : "malformed" }));
      }
    },
    responseSerialize: (m) => Buffer.from(toBinary(output, create(output, m as never))),
    responseDeserialize: (b: Buffer) => fromBinary(output, b),
    originalName: method.localName,
  };
}

/**
 * Resolves when a stream's buffered messages have drained, or the call ended
 * meanwhile. Backpressure: a slow reader holds the stream (a lookup, Watch)
 * instead of the server buffering all of it.
 */
function writable(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("cancelled", done);
      call.off("close", done);
      call.off("error", done);
      resolve();
    };
    call.on("drain", done);
    call.on("cancelled", done);
    call.on("close", done);
    call.on("error", done);
  });
}

export function createGrpcServer(
  bindings: readonly ServiceBinding[],
  deps: { logger: Logger; callLog: CallLog; maxMessageBytes: number; peerIdentity?: PeerIdentity },
): grpc.Server {
  const { logger, callLog } = deps;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": deps.maxMessageBytes,
    "grpc.max_send_message_length": deps.maxMessageBytes,
    "grpc.enable_channelz": 0,
  });
  for (const { service, handlers } of bindings) {
    const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const def = definitionFor(method);
      const handler = (handlers as Record<string, AnyHandler>)[method.localName] as AnyHandler;
      // A handler that does not check its input (no guard) gets no RequestFault: the listener answers it.
      const answersFaults = (handler as { [CHECKS_INPUT]?: boolean })[CHECKS_INPUT] !== true;
      definition[method.localName] = def;
      const path = def.path;
      if (method.methodKind === "unary") {
        implementation[method.localName] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const started = process.hrtime.bigint();
          const ctx = contextFor(path, callLog, call, deps.peerIdentity);
          const rid = () => ctx.requestId;
          const ok = (res: unknown) => {
            callLog.done(path, rid, "OK", started, ctx.header);
            callback(null, res);
          };
          const fail = (err: unknown) => {
            const e = toPublicError(err, logger, ctx.requestId, path);
            callLog.done(path, ctx.requestId, codeName(e.code), started, ctx.header);
            callback(toServiceError(e));
          };
          if (answersFaults && call.request instanceof RequestFault) {
            fail(call.request.error);
            return;
          }
          let res: unknown;
          try {
            res = handler(call.request, ctx);
          } catch (err) {
            fail(err);
            return;
          }
          if (isThenable(res)) res.then(ok, fail);
          else ok(res);
        }) as grpc.handleUnaryCall<unknown, unknown>;
      } else if (method.methodKind === "server_streaming") {
        implementation[method.localName] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
          const started = process.hrtime.bigint();
          const ctx = contextFor(path, callLog, call, deps.peerIdentity);
          const rid = ctx.requestId;
          const fail = (err: unknown) => {
            const e = toPublicError(err, logger, rid, path);
            callLog.done(path, rid, codeName(e.code), started, ctx.header);
            call.emit("error", toServiceError(e));
          };
          if (answersFaults && call.request instanceof RequestFault) {
            fail(call.request.error);
            return;
          }
          void (async () => {
            try {
              for await (const msg of handler(call.request, ctx) as AsyncIterable<unknown>) {
                if (call.cancelled) break;
                if (!call.write(msg)) await writable(call);
              }
              if (call.cancelled) {
                callLog.done(path, rid, "CANCELLED", started, ctx.header);
                return;
              }
              callLog.done(path, rid, "OK", started, ctx.header);
              call.end();
            } catch (err) {
              fail(err);
            }
          })();
        }) as grpc.handleServerStreamingCall<unknown, unknown>;
      } else {
        throw new Error(`${path}: ${method.methodKind} methods are not supported`);
      }
    }
    server.addService(definition as grpc.ServiceDefinition, implementation);
  }
  return server;
}

/** Maps a verified client certificate to a caller (mTLS). */
export type PeerIdentity = (cert: PeerCertificate | undefined) => Caller | undefined;

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  /** Client certificates must chain to this CA (mutual TLS) when set. */
  clientCa?: Buffer | undefined;
}

/** Binds and starts (TLS when given); resolves with the port (useful with port 0). */
export function listenGrpc(server: grpc.Server, host: string, port: number, tls?: TlsFiles): Promise<number> {
  const creds = tls
    ? grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined)
    : grpc.ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, creds, (err, bound) => {
      if (err) reject(err);
      else resolve(bound);
    });
  });
}
