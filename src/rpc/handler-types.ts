import type { Caller } from "../auth/caller.js";
import type { AuthzError } from "../errors.js";
import type { DescMethodServerStreaming, DescMethodUnary, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

/**
 * What a handler may know about its call, whatever protocol carried it
 * (gRPC through @grpc/grpc-js, or Connect/gRPC-Web/gRPC through connect-node).
 * Deliberately smaller than connect's HandlerContext, whose per-call
 * AbortController and three Headers objects cost more than a Check itself.
 */
export interface CallContext {
  /** "/package.Service/Method" */
  readonly path: string;
  /** The request id: the caller's x-request-id, or one generated for the call. */
  readonly requestId: string;
  /** A request header (lower-case name), first value. */
  header(name: string): string | undefined;
  /** Milliseconds left until the caller's deadline; undefined when it set none. */
  timeRemainingMs(): number | undefined;
  /** Aborted when the caller cancels or the deadline passes (streaming calls). */
  readonly signal: AbortSignal;
  /** The TLS client certificate's identity, when the listener verified one (mTLS). */
  readonly peerIdentity?: Caller | undefined;
  /** The authenticated caller; set by the auth guard before the handler runs. */
  caller?: Caller;
}

type UnaryHandler<M extends DescMethodUnary> = (
  request: MessageShape<M["input"]>,
  ctx: CallContext,
) => Promise<MessageInitShape<M["output"]>> | MessageInitShape<M["output"]>;

type ServerStreamingHandler<M extends DescMethodServerStreaming> = (
  request: MessageShape<M["input"]>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<M["output"]>>;

/**
 * One implementation per RPC, served on every protocol. Every method is
 * required, so a missing RPC breaks the build (connect's router accepts
 * partial implementations silently).
 */
export type ServiceHandlers<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends DescMethodUnary
    ? UnaryHandler<S["method"][K]>
    : S["method"][K] extends DescMethodServerStreaming
      ? ServerStreamingHandler<S["method"][K]>
      : never;
};

/** A service descriptor with its handlers, as the servers register them. */
export interface ServiceBinding<S extends DescService = DescService> {
  service: S;
  handlers: ServiceHandlers<S>;
  /**
   * Per method (local name): the answer to a request that breaks the input
   * bounds, instead of INVALID_ARGUMENT (Envoy's ext_authz answers a 400
   * denial, so that Envoy's failure mode never lets a bad request through).
   */
  invalidInput?: Readonly<Record<string, (error: AuthzError) => unknown>>;
}

export function bind<S extends DescService>(service: S, handlers: ServiceHandlers<S>, opts: Pick<ServiceBinding, "invalidInput"> = {}): ServiceBinding {
  return { service, handlers, ...opts } as unknown as ServiceBinding;
}

/** Whether a handler's result is a promise (sync results skip the microtask). */
export const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";

/**
 * Set on handlers that check their input themselves (every handler guard()
 * returns): the listeners then hand them an undecodable request as a
 * RequestFault (input-bounds.ts) instead of answering it on their own.
 */
export const CHECKS_INPUT = Symbol("checksInput");

const ENCODED = Symbol("encoded");

/**
 * Marks a response a handler hands out again and again (the same decision
 * at the same revision): the gRPC listener encodes it once and keeps the
 * bytes on it. The object must not change after it is first returned.
 */
export function reusable<T extends object>(response: T): T {
  Object.defineProperty(response, ENCODED, { value: undefined, writable: true, enumerable: false });
  return response;
}

/** The bytes of a response: kept on it when it is reusable, encoded each time otherwise. */
export function encodedOnce<B>(response: unknown, encode: () => B): B {
  if (typeof response !== "object" || response === null || !(ENCODED in response)) return encode();
  const r = response as { [ENCODED]: B | undefined };
  r[ENCODED] ??= encode();
  return r[ENCODED];
}
