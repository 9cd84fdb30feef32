import { type Authenticator, authorize } from "../auth/authenticator.js";
import { scopeFor } from "../auth/caller.js";
import { AuthzError } from "../errors.js";
import { type CallContext, isThenable, type ServiceBinding } from "./handler-types.js";

type AnyHandler = (req: unknown, ctx: CallContext) => unknown;


/**
 * Wraps every handler that needs a scope: authenticate (UNAUTHENTICATED),
 * check the scope (PERMISSION_DENIED), put the caller on the context, then
 * run the handler. Same wrapper for every protocol, since both listeners call
 * these handlers. Public methods (health) pass through untouched.
 */
export function guard(bindings: readonly ServiceBinding[], auth: Authenticator, limits: { maxConcurrentCalls: number }): ServiceBinding[] {
  let inFlight = 0;
  const admit = (path: string) => {
    if (inFlight >= limits.maxConcurrentCalls) {
      throw new AuthzError("RESOURCE_EXHAUSTED", `the server is handling ${inFlight} calls, its limit; retry with backoff`, {
        reason: "TOO_MANY_CALLS",
        metadata: { path },
      });
    }
    inFlight++;
  };
  const release = () => {
    inFlight--;
  };
  return bindings.map(({ service, handlers }) => {
    const wrapped: Record<string, AnyHandler> = {};
    for (const method of service.methods) {
      const path = `/${service.typeName}/${method.name}`;
      const handler = (handlers as Record<string, AnyHandler>)[method.localName] as AnyHandler;
      if (scopeFor(path) === null) {
        wrapped[method.localName] = handler;
        continue;
      }
      if (method.methodKind === "server_streaming") {
        wrapped[method.localName] = async function* (req: unknown, ctx: CallContext) {
          const caller = await auth.authenticate(ctx);
          authorize(caller, path);
          ctx.caller = caller;
          admit(path);
          try {
            yield* handler(req, ctx) as AsyncIterable<unknown>;
          } finally {
            release();
          }
        };
        continue;
      }
      wrapped[method.localName] = (req: unknown, ctx: CallContext) => {
        const c = auth.authenticate(ctx);
        const run = (caller: Awaited<typeof c>) => {
          authorize(caller, path);
          ctx.caller = caller;
          admit(path);
          let out: unknown;
          try {
            out = handler(req, ctx);
          } catch (err) {
            release();
            throw err;
          }
          if (!isThenable(out)) {
            release();
            return out;
          }
          return Promise.resolve(out).finally(release);
        };
        return isThenable(c) ? c.then(run) : run(c);
      };
    }
    return { service, handlers: wrapped } as unknown as ServiceBinding;
  });
}
