// A stream outlives the moment its credential was checked. This keeps
// checking it for as long as the stream is open: when the API keys are
// reloaded (a revocation reaches every replica through the change feed's
// notification, docs/security.md), the stream's credential is verified
// again exactly as a new call would verify it, and when a JWT reaches its
// expiry. The first failure aborts `signal` with the error a new call with
// the same credential would get (UNAUTHENTICATED for a revoked key,
// PERMISSION_DENIED / MISSING_SCOPE for a key that lost the scope).

import { AuthzError } from "../errors.js";
import type { CallContext } from "../rpc/handler-types.js";
import { type Authenticator, requireScope } from "./authenticator.js";
import type { Caller, Scope } from "./caller.js";

/** Longest timer Node keeps (about 24.8 days); a later expiry re-arms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface CredentialWatch {
  /** Aborted, with the AuthzError as its reason, once the credential no longer admits the call. */
  readonly signal: AbortSignal;
  /** The reason the credential stopped admitting the call, or undefined while it still does. */
  readonly ended: AuthzError | undefined;
  close(): void;
}

const changed = () =>
  new AuthzError("UNAUTHENTICATED", "the credential this stream was opened with changed its tenant binding; open the stream again", {
    reason: "UNAUTHENTICATED",
  });

const expired = () =>
  new AuthzError("UNAUTHENTICATED", "the JWT this stream was opened with has expired; open the stream again with a fresh token", {
    reason: "UNAUTHENTICATED",
  });

/**
 * Watches the credential of an open call (`caller`, as authenticated from
 * `ctx` when the call began) until close(). API keys are checked again on
 * every reload of the keys; a JWT ends at its expiry; a client certificate
 * is checked by the TLS handshake only.
 */
export function watchCredential(auth: Authenticator, ctx: CallContext, caller: Caller, scope: Scope | null, path: string): CredentialWatch {
  const controller = new AbortController();
  let ended: AuthzError | undefined;
  let timer: NodeJS.Timeout | undefined;
  const end = (err: AuthzError) => {
    if (ended) return;
    ended = err;
    controller.abort(err);
  };
  const recheck = () => {
    if (ended) return;
    try {
      const now = auth.authenticate(ctx);
      // API keys verify synchronously (only they are checked again here).
      if (now instanceof Promise) return;
      requireScope(now, scope, path);
      if (now.id !== caller.id || now.tenantId !== caller.tenantId) end(changed());
    } catch (err) {
      end(err instanceof AuthzError ? err : new AuthzError("UNAUTHENTICATED", "the credential no longer verifies", { reason: "UNAUTHENTICATED" }));
    }
  };
  const isKey = caller.kind === "api_key";
  const off = isKey ? auth.onChange(recheck) : () => {};
  const expiresAtMs = caller.expiresAtMs;
  if (expiresAtMs !== undefined) {
    const arm = () => {
      const left = expiresAtMs - Date.now();
      if (left <= 0) return end(expired());
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      timer.unref();
    };
    arm();
  }
  // A reload may have run between the call's authentication and the subscription.
  if (isKey) recheck();
  return {
    signal: controller.signal,
    get ended() {
      return ended;
    },
    close() {
      off();
      clearTimeout(timer);
    },
  };
}
