import { type DescMessage, type DescMethod, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import type { Caller } from "../auth/caller.js";
import type { Logger } from "../logger.js";
import type { CallLog } from "./call-log.js";
import { codeName, type PublicError, statusDetailsBin, toPublicError } from "./errors.js";
import { LEAN_RPCS, type LeanMethod, LeanRouter, type LeanStats } from "./grpc-lean.js";
import { asBuffer, decodeRequest, encodeResponse, type UnaryRun, unaryRunner } from "./grpc-unary.js";
import { CHECKS_INPUT, type CallContext, type ServiceBinding } from "./handler-types.js";
import { RequestFault } from "./input-bounds.js";

/**
 * gRPC on the fast path: a @grpc/grpc-js server whose (de)serializers are the
 * protobuf-es generated schemas, calling the same handlers as the Connect
 * listener. Measured at ~5x connect-node's throughput for a unary call on
 * this hardware (docs/benchmarks.md).
 */

type AnyHandler = (req: unknown, ctx: CallContext) => unknown;

type GrpcCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

interface ServerDeps {
  logger: Logger;
  callLog: CallLog;
  maxMessageBytes: number;
  peerIdentity?: PeerIdentity;
  /** Serve the hot unary RPCs on the lean node:http2 path (grpc-lean.ts) once bound; default off. */
  lean?: boolean;
}

/** The call's context: one object per call; the request id and abort signal are made only if asked for. */
class GrpcCallContext implements CallContext {
  caller?: Caller;
  #rid: string | undefined;
  #controller: AbortController | undefined;

  constructor(
    readonly path: string,
    private readonly call: GrpcCall,
    private readonly deps: ServerDeps,
  ) {}

  get peerIdentity(): Caller | undefined {
    return this.deps.peerIdentity?.(this.call.getAuthContext().sslPeerCertificate);
  }

  get requestId(): string {
    this.#rid ??= this.deps.callLog.requestId(this.call.metadata.get("x-request-id")[0] as string | undefined);
    return this.#rid;
  }

  header(name: string): string | undefined {
    const v = this.call.metadata.get(name)[0];
    return typeof v === "string" ? v : undefined;
  }

  timeRemainingMs(): number | undefined {
    const deadline = this.call.getDeadline();
    const d = deadline instanceof Date ? deadline.getTime() : deadline;
    return Number.isFinite(d) ? d - Date.now() : undefined;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      const c = new AbortController();
      this.#controller = c;
      this.call.on("cancelled", () => c.abort());
    }
    return this.#controller.signal;
  }
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
    requestSerialize: (m) => asBuffer(toBinary(input, m as never)),
    // A plain Uint8Array over the same bytes: slicing it (each string field) is cheaper than slicing a Buffer.
    requestDeserialize: (buf: Buffer) => decodeRequest(input, new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)),
    responseSerialize: (m) => encodeResponse(output, m),
    responseDeserialize: (b: Buffer) => fromBinary(output, b),
    originalName: method.localName,
  };
}

/** A unary method on grpc-js: the shared runner, answering through grpc-js's callback. */
function unaryImplementation(run: UnaryRun, path: string, deps: ServerDeps): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) =>
    run(call.request, new GrpcCallContext(path, call, deps), (err, res) => (err ? callback(toServiceError(err)) : callback(null, res)));
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

/** A server-streaming method: writes what the handler yields (waiting for drain) until it ends or the caller cancels. */
function streamingImplementation(
  path: string,
  handler: AnyHandler,
  answersFaults: boolean,
  deps: ServerDeps,
): grpc.handleServerStreamingCall<unknown, unknown> {
  const { logger, callLog } = deps;
  return (call) => {
    const started = performance.now();
    const ctx = new GrpcCallContext(path, call, deps);
    const fail = (err: unknown) => {
      const e = toPublicError(err, logger, ctx.requestId, path);
      callLog.done(path, ctx.requestId, codeName(e.code), started, ctx);
      call.emit("error", toServiceError(e));
    };
    if (answersFaults && call.request instanceof RequestFault) return fail(call.request.error);
    void (async () => {
      try {
        for await (const msg of handler(call.request, ctx) as AsyncIterable<unknown>) {
          if (call.cancelled) break;
          if (!call.write(msg)) await writable(call);
        }
        callLog.done(path, ctx.requestId, call.cancelled ? "CANCELLED" : "OK", started, ctx);
        if (!call.cancelled) call.end();
      } catch (err) {
        fail(err);
      }
    })();
  };
}

/** The lean router of each server built with it, installed by listenGrpc once grpc-js has bound. */
const leanRouters = new WeakMap<grpc.Server, LeanRouter>();

/** What the lean path of a server has done (tests); undefined when the server was built without it. */
export const leanStats = (server: grpc.Server): LeanStats | undefined => leanRouters.get(server);

export function createGrpcServer(bindings: readonly ServiceBinding[], deps: ServerDeps): grpc.Server {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": deps.maxMessageBytes,
    "grpc.max_send_message_length": deps.maxMessageBytes,
    "grpc.enable_channelz": 0,
  });
  const lean = new Map<string, LeanMethod>();
  for (const { service, handlers } of bindings) {
    const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const def = definitionFor(method);
      const handler = (handlers as Record<string, AnyHandler>)[method.localName] as AnyHandler;
      // A handler that does not check its input (no guard) gets no RequestFault: the listener answers it.
      const answersFaults = (handler as { [CHECKS_INPUT]?: boolean })[CHECKS_INPUT] !== true;
      definition[method.localName] = def;
      if (method.methodKind === "unary") {
        const run = unaryRunner(def.path, handler, answersFaults, deps);
        implementation[method.localName] = unaryImplementation(run, def.path, deps);
        if (deps.lean && LEAN_RPCS.has(def.path)) lean.set(def.path, { run, input: method.input, output: method.output });
      } else if (method.methodKind === "server_streaming") implementation[method.localName] = streamingImplementation(def.path, handler, answersFaults, deps);
      else throw new Error(`${def.path}: ${method.methodKind} methods are not supported`);
    }
    server.addService(definition as grpc.ServiceDefinition, implementation);
  }
  if (lean.size > 0) leanRouters.set(server, new LeanRouter(lean, deps));
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
      if (err) return reject(err);
      leanRouters.get(server)?.install(server);
      resolve(bound);
    });
  });
}
