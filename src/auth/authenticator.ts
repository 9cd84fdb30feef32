import { AuthzError } from "../errors.js";
import type { CallContext } from "../rpc/handler-types.js";
import { type ApiKeyRing, looksLikeApiKey } from "./api-keys.js";
import { ANONYMOUS, type Caller, holdsScope, type Scope, scopeFor } from "./caller.js";
import type { JwtVerifier } from "./jwt.js";

export interface Authenticator {
  /** Whether calls without a credential are refused. */
  readonly required: boolean;
  /** The caller of this call; UNAUTHENTICATED when a credential is required and missing or invalid. */
  authenticate(ctx: CallContext): Caller | Promise<Caller>;
  /**
   * Calls `listener` whenever the credentials it accepts may have changed
   * (the API keys were reloaded: a revocation, on every replica through the
   * change feed). Returns the unsubscribe.
   */
  onChange(listener: () => void): () => void;
}

const unauthenticated = (why: string) =>
  new AuthzError("UNAUTHENTICATED", `${why}; send "authorization: Bearer <API key or JWT>" or "x-api-key: <API key>"`, {
    reason: "UNAUTHENTICATED",
  });

/**
 * Credentials: an API key (x-api-key, or a Bearer token starting with azk_),
 * a JWT (any other Bearer token, when a verifier is configured), or the TLS
 * client certificate identity (mTLS, when the listener verified one).
 */
export function createAuthenticator(opts: { required: boolean; keys: ApiKeyRing; jwt?: () => JwtVerifier | undefined }): Authenticator {
  const fromToken = (token: string): Caller | Promise<Caller> => {
    if (looksLikeApiKey(token)) {
      const c = opts.keys.verify(token);
      if (!c) throw unauthenticated("the API key is not valid or was revoked");
      return c;
    }
    const jwt = opts.jwt?.();
    if (!jwt) throw unauthenticated("the bearer token is not an API key and JWT verification is not configured");
    return jwt.verify(token).then((c) => {
      if (!c) throw unauthenticated("the JWT did not verify (signature, expiry, issuer or audience)");
      return c;
    });
  };
  return {
    required: opts.required,
    onChange: (listener) => opts.keys.onReplace(listener),
    authenticate(ctx) {
      const apiKey = ctx.header("x-api-key");
      if (apiKey) return fromToken(apiKey);
      const auth = ctx.header("authorization");
      if (auth) {
        const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
        if (!m) throw unauthenticated("the authorization header is not a Bearer token");
        return fromToken(m[1] as string);
      }
      if (ctx.peerIdentity) return ctx.peerIdentity;
      if (!opts.required) return ANONYMOUS;
      throw unauthenticated("this call needs a credential");
    },
  };
}

/** PERMISSION_DENIED unless the caller holds the scope the path needs. */
export function authorize(caller: Caller, path: string): void {
  requireScope(caller, scopeFor(path), path);
}

/** PERMISSION_DENIED unless the caller holds `scope` (scopeFor(path), worked out once per path); null: public. */
export function requireScope(caller: Caller, scope: Scope | null, path: string): void {
  if (scope === null || holdsScope(caller.scopes, scope)) return;
  throw new AuthzError("PERMISSION_DENIED", `${path} needs the "${scope}" scope, which this credential does not have`, {
    reason: "MISSING_SCOPE",
    metadata: { scope },
  });
}

export { confine } from "../tenancy.js";
