// The catalogue of domain errors: a stable string code, the gRPC status it
// maps to, and when to use it. rpc/errors.ts maps them to Connect/gRPC codes
// with a google.rpc.ErrorInfo-style reason; anything not in the catalogue
// becomes INTERNAL with no detail for the caller.

export const ERROR_CATALOGUE = {
  INVALID_ARGUMENT: { grpc: "INVALID_ARGUMENT", doc: "A field is missing, malformed or out of range; the message names it." },
  NOT_FOUND: { grpc: "NOT_FOUND", doc: "A record the call needs (avatar, membership, role, policy) does not exist." },
  ALREADY_EXISTS: { grpc: "ALREADY_EXISTS", doc: "The record exists, or an idempotency key was reused with a different request." },
  FAILED_PRECONDITION: {
    grpc: "FAILED_PRECONDITION",
    doc: "The data is not in the state the call requires (stale owner, expected_revision moved, inactive avatar).",
  },
  ABORTED: { grpc: "ABORTED", doc: "A concurrent write won; retrying the call may succeed." },
  UNAVAILABLE: { grpc: "UNAVAILABLE", doc: "A backend (database, cache, Redis) cannot be reached or is not ready yet; retry with backoff." },
  DEADLINE_EXCEEDED: { grpc: "DEADLINE_EXCEEDED", doc: "The call's deadline passed (e.g. waiting for at_least_as_fresh)." },
  RESOURCE_EXHAUSTED: { grpc: "RESOURCE_EXHAUSTED", doc: "A size or concurrency limit was hit." },
  UNIMPLEMENTED: { grpc: "UNIMPLEMENTED", doc: "The RPC is part of the contract but not served by this version yet." },
  UNAUTHENTICATED: { grpc: "UNAUTHENTICATED", doc: "No valid credential was presented." },
  PERMISSION_DENIED: { grpc: "PERMISSION_DENIED", doc: "The credential is valid but lacks the scope or tenant for this call." },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** A failure the caller can act on; its message is shown to the caller, so it never holds SQL or secrets. */
export class AuthzError extends Error {
  readonly code: ErrorCode;
  /** A stable machine-readable reason, e.g. "STALE_OWNER"; defaults to the code. */
  readonly reason: string;
  /** Extra key/values for the caller (ErrorInfo metadata). */
  readonly metadata: Readonly<Record<string, string>>;
  constructor(code: ErrorCode, message: string, opts: { reason?: string; metadata?: Record<string, string>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "AuthzError";
    this.code = code;
    this.reason = opts.reason ?? code;
    this.metadata = opts.metadata ?? {};
  }
}

export const invalidArgument = (message: string, field?: string): AuthzError =>
  new AuthzError("INVALID_ARGUMENT", message, field ? { metadata: { field } } : {});
export const unimplemented = (rpc: string, issue: string): AuthzError =>
  new AuthzError("UNIMPLEMENTED", `${rpc} is defined in the API but not served yet (${issue})`);
export const unavailable = (message: string, cause?: unknown): AuthzError => new AuthzError("UNAVAILABLE", message, { cause });
