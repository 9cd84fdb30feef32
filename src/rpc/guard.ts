import type { DescMethod } from "@bufbuild/protobuf";
import { type Authenticator, requireScope } from "../auth/authenticator.js";
import { type CredentialWatch, watchCredential } from "../auth/credential-watch.js";
import type { Caller } from "../auth/caller.js";
import { scopeFor } from "../auth/caller.js";
import { AuthzError } from "../errors.js";
import { CHECKS_INPUT, type CallContext, isThenable, type ServiceBinding } from "./handler-types.js";
import { inputFault, RequestFault } from "./input-bounds.js";

type AnyHandler = (req: unknown, ctx: CallContext) => unknown;

/** Calls in progress, shared by every entry point (RPCs on both listeners and AuthZEN). */
export interface Admission {
  /** Counts a call in, or throws RESOURCE_EXHAUSTED (TOO_MANY_CALLS) at the limit, UNAVAILABLE once closing. */
  admit(path: string): void;
  release(): void;
  readonly inFlight: number;
  /** Refuses every new call (shutdown); resolves once the calls in progress are done, or after boundMs. */
  drain(boundMs: number): Promise<void>;
  /** Aborted when drain() begins: streams that would never end on their own (Watch) end then. */
  readonly closing: AbortSignal;
}

export function createAdmission(maxConcurrentCalls: number): Admission {
  let inFlight = 0;
  let closing = false;
  let idle: (() => void) | undefined;
  const closingNow = new AbortController();
  return {
    closing: closingNow.signal,
    get inFlight() {
      return inFlight;
    },
    admit(path) {
      if (closing) throw new AuthzError("UNAVAILABLE", "the server is shutting down; retry on another replica");
      if (inFlight >= maxConcurrentCalls) {
        throw new AuthzError("RESOURCE_EXHAUSTED", `the server is handling ${inFlight} calls, its limit; retry with backoff`, {
          reason: "TOO_MANY_CALLS",
          metadata: { path },
        });
      }
      inFlight++;
    },
    release() {
      inFlight--;
      if (inFlight === 0) idle?.();
    },
    drain(boundMs) {
      closing = true;
      closingNow.abort();
      if (inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, boundMs);
        timer.unref();
        idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}

const marked = <T extends object>(f: T): T => Object.assign(f, { [CHECKS_INPUT]: true });

/** The request's violation of the input bounds: undecodable (RequestFault) or out of bounds (input-bounds.ts). */
function violation(method: DescMethod, req: unknown): AuthzError | undefined {
  return req instanceof RequestFault ? req.error : inputFault(method.input, req);
}

/**
 * The call's context with another abort signal: the handler of a stream
 * stops when the caller goes away or when its credential stops admitting it.
 */
function withSignal(ctx: CallContext, signal: AbortSignal): CallContext {
  return {
    path: ctx.path,
    get requestId() {
      return ctx.requestId;
    },
    header: (name) => ctx.header(name),
    timeRemainingMs: () => ctx.timeRemainingMs(),
    signal,
    get peerIdentity() {
      return ctx.peerIdentity;
    },
    get caller() {
      return ctx.caller;
    },
    set caller(c) {
      ctx.caller = c;
    },
  };
}

/**
 * The handler's messages until its credential stops admitting the call: the
 * stream then ends with that error at once (even while the handler waits,
 * e.g. Watch for the next change), and no message produced after it is sent.
 */
async function* whileAdmitted(messages: AsyncIterable<unknown>, watch: CredentialWatch): AsyncGenerator<unknown> {
  const it = messages[Symbol.asyncIterator]();
  const revoked = new Promise<never>((_, reject) => {
    const fail = () => reject(watch.signal.reason);
    if (watch.signal.aborted) fail();
    else watch.signal.addEventListener("abort", fail, { once: true });
  });
  revoked.catch(() => {});
  let done = false;
  try {
    for (;;) {
      if (watch.ended) throw watch.ended;
      const next = it.next();
      next.catch(() => {});
      const r = await Promise.race([next, revoked]);
      if (watch.ended) throw watch.ended;
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
    }
  } finally {
    // The handler sees its aborted signal; let it finish (and release what it holds) in the background.
    if (!done) void Promise.resolve(it.return?.()).catch(() => {});
  }
}

function streaming(path: string, method: DescMethod, handler: AnyHandler, auth: Authenticator | undefined, admission: Admission): AnyHandler {
  const scope = scopeFor(path);
  return async function* (req: unknown, ctx: CallContext) {
    let caller: Caller | undefined;
    if (auth) {
      caller = await auth.authenticate(ctx);
      requireScope(caller, scope, path);
      ctx.caller = caller;
    }
    const bad = violation(method, req);
    if (bad) throw bad;
    if (!auth || !caller) {
      yield* handler(req, ctx) as AsyncIterable<unknown>;
      return;
    }
    admission.admit(path);
    const watch = watchCredential(auth, ctx, caller, scope, path);
    try {
      const inner = withSignal(ctx, AbortSignal.any([ctx.signal, watch.signal]));
      yield* whileAdmitted(handler(req, inner) as AsyncIterable<unknown>, watch);
    } finally {
      watch.close();
      admission.release();
    }
  };
}

function unary(
  path: string,
  method: DescMethod,
  handler: AnyHandler,
  auth: Authenticator | undefined,
  admission: Admission,
  onInvalid?: (e: AuthzError) => unknown,
): AnyHandler {
  const run = (req: unknown, ctx: CallContext): unknown => {
    const bad = violation(method, req);
    if (bad) {
      if (onInvalid) return onInvalid(bad);
      throw bad;
    }
    if (!auth) return handler(req, ctx);
    admission.admit(path);
    let out: unknown;
    try {
      out = handler(req, ctx);
    } catch (err) {
      admission.release();
      throw err;
    }
    if (!isThenable(out)) {
      admission.release();
      return out;
    }
    return Promise.resolve(out).finally(() => admission.release());
  };
  if (!auth) return run;
  const scope = scopeFor(path);
  const authorized = (req: unknown, ctx: CallContext, caller: Caller): unknown => {
    requireScope(caller, scope, path);
    ctx.caller = caller;
    return run(req, ctx);
  };
  // A synchronous credential (API key, mTLS) runs the handler in the same tick: no promise unless something awaits.
  return (req: unknown, ctx: CallContext) => {
    const c = auth.authenticate(ctx);
    return isThenable(c) ? c.then((caller) => authorized(req, ctx, caller)) : authorized(req, ctx, c);
  };
}

/**
 * The edge every RPC passes, whatever protocol carried it: authenticate
 * (UNAUTHENTICATED), check the scope (PERMISSION_DENIED), put the caller on
 * the context, check the input bounds (INVALID_ARGUMENT, or the binding's own
 * answer), count the call in (RESOURCE_EXHAUSTED), then run the handler.
 * Public methods (health) skip the credential and the count, not the bounds.
 */
export function guard(bindings: readonly ServiceBinding[], auth: Authenticator, admission: Admission): ServiceBinding[] {
  return bindings.map(({ service, handlers, invalidInput }) => {
    const wrapped: Record<string, AnyHandler> = {};
    for (const method of service.methods) {
      const path = `/${service.typeName}/${method.name}`;
      const handler = (handlers as Record<string, AnyHandler>)[method.localName] as AnyHandler;
      const scoped = scopeFor(path) === null ? undefined : auth;
      wrapped[method.localName] = marked(
        method.methodKind === "server_streaming"
          ? streaming(path, method, handler, scoped, admission)
          : unary(path, method, handler, scoped, admission, invalidInput?.[method.localName]),
      );
    }
    return { service, handlers: wrapped } as unknown as ServiceBinding;
  });
}
