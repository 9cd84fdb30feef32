// The error catalogue: every stable reason a caller can match on, with the
// gRPC code it always travels with and what it means. AuthzError takes only
// a reason from this table (the type system refuses any other), the reason
// fixes the code, and docs/errors.md is rendered from it
// (`npm run docs:errors`; src/errors.test.ts fails when code and docs
// disagree). rpc/errors.ts puts the reason in a google.rpc.ErrorInfo (domain
// "authz"); anything not an AuthzError becomes INTERNAL with no detail.

/** The gRPC codes authz answers with, and when. */
export const ERROR_CODES = {
  INVALID_ARGUMENT: "A field is missing, malformed or out of range; the message names it.",
  NOT_FOUND: "A record the call needs does not exist.",
  ALREADY_EXISTS: "The record exists, or an idempotency key was reused with a different request.",
  FAILED_PRECONDITION: "The data is not in the state the call requires; nothing was written.",
  ABORTED: "A concurrent write won; retrying the call may succeed.",
  UNAVAILABLE: "A backend (the database, Redis) cannot be reached or is not ready yet; retry with backoff.",
  DEADLINE_EXCEEDED: "The call's deadline passed.",
  RESOURCE_EXHAUSTED: "A size, rate or concurrency limit was hit.",
  UNIMPLEMENTED: "The RPC is part of the contract but not served by this version.",
  UNAUTHENTICATED: "No valid credential was presented.",
  PERMISSION_DENIED: "The credential is valid but lacks the scope or the tenant for this call.",
  CANCELLED: "The caller cancelled the call (it never sees this answer).",
  INTERNAL: "A bug: the message carries a request id; the cause is in the server's log, never in the answer.",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
/** The codes an AuthzError may carry (INTERNAL is only ever what is not one). */
export type DomainCode = Exclude<ErrorCode, "INTERNAL" | "CANCELLED">;

interface Entry {
  readonly code: ErrorCode;
  readonly meaning: string;
}

/**
 * Every reason, grouped by code. A reason named like its code is the generic
 * one, used when nothing more specific applies.
 */
export const REASONS = {
  // INVALID_ARGUMENT
  INVALID_ARGUMENT: { code: "INVALID_ARGUMENT", meaning: "A field is missing or malformed; metadata.field names it." },
  MALFORMED_MESSAGE: {
    code: "INVALID_ARGUMENT",
    meaning:
      "The request body is not a valid message of the method's type (undecodable bytes, invalid JSON, a JSON field or enum name the type does not define, a JSON value of the wrong type).",
  },
  TOO_MANY_ELEMENTS: { code: "INVALID_ARGUMENT", meaning: "The request holds more than 50,000 elements in all; refused before it is decoded." },
  TOO_DEEP: { code: "INVALID_ARGUMENT", meaning: "The request nests messages more than 64 levels deep." },
  INVALID_STRING: {
    code: "INVALID_ARGUMENT",
    meaning:
      "A string holds a NUL character or a lone surrogate, which no stored text may contain. (A lone surrogate escape in a Connect JSON body fails its decoding first: MALFORMED_MESSAGE.)",
  },
  FIELD_TOO_LONG: { code: "INVALID_ARGUMENT", meaning: "A string is longer than its field's limit (docs/limits.md)." },
  TOO_MANY_ITEMS: { code: "INVALID_ARGUMENT", meaning: "A list or map has more items than its field's limit (docs/limits.md)." },
  TOO_MANY_DESCRIPTORS: { code: "INVALID_ARGUMENT", meaning: "ShouldRateLimit carries more than 64 descriptors." },
  TOO_MANY_DESCRIPTOR_ENTRIES: { code: "INVALID_ARGUMENT", meaning: "A ShouldRateLimit descriptor has more than 32 entries." },
  UNKNOWN_REVISION: {
    code: "INVALID_ARGUMENT",
    meaning: "A consistency token or expected_revision is newer than this deployment's newest revision: it is not one of its tokens.",
  },
  SELF_TRANSFER: { code: "INVALID_ARGUMENT", meaning: "TransferOwnership names the same membership as source and target." },
  SCOPE_MISMATCH: {
    code: "INVALID_ARGUMENT",
    meaning: "A rate-limit call names a subject that does not fit the policy's scope (e.g. a key for a per-user policy).",
  },

  // NOT_FOUND
  NOT_FOUND: { code: "NOT_FOUND", meaning: "A record the call refers to does not exist; the message names the field." },
  SUBJECT_NOT_FOUND: { code: "NOT_FOUND", meaning: "The subject of a listing does not exist." },
  AVATAR_NOT_FOUND: { code: "NOT_FOUND", meaning: "The avatar does not exist." },
  MEMBERSHIP_NOT_FOUND: { code: "NOT_FOUND", meaning: "A membership named by a transfer does not exist." },
  TRANSFER_NOT_FOUND: { code: "NOT_FOUND", meaning: "The ownership transfer does not exist." },
  POLICY_NOT_FOUND: { code: "NOT_FOUND", meaning: "The rate-limit policy does not exist." },
  API_KEY_NOT_FOUND: { code: "NOT_FOUND", meaning: "No API key has this id." },

  // ALREADY_EXISTS
  ALREADY_EXISTS: { code: "ALREADY_EXISTS", meaning: "The write conflicts with an existing record (a unique key); the message names the field." },
  IDEMPOTENCY_KEY_REUSED: {
    code: "ALREADY_EXISTS",
    meaning: "The idempotency key was already used by this caller with a different request; nothing was written.",
  },

  // FAILED_PRECONDITION
  FAILED_PRECONDITION: { code: "FAILED_PRECONDITION", meaning: "A rule of the data model refuses the write; the message says which. Nothing was written." },
  REVISION_MOVED: { code: "FAILED_PRECONDITION", meaning: "expected_revision is older than the newest revision; metadata has both. Nothing was written." },
  INHERITANCE_CYCLE: { code: "FAILED_PRECONDITION", meaning: "The role inheritance would form a cycle; the message names it." },
  CROSS_ORGANIZATION: { code: "FAILED_PRECONDITION", meaning: "A role would hold a permission, or inherit a role, of another organization." },
  POLICY_SCOPE_MISMATCH: {
    code: "FAILED_PRECONDITION",
    meaning: "A rate-limit policy cannot be assigned to that holder, or its scope cannot change while assigned to holders that would not fit.",
  },
  STALE_OWNER: { code: "FAILED_PRECONDITION", meaning: "from_membership_id is not the avatar's current owner; metadata names the current one." },
  OWNER_CHANGED: { code: "FAILED_PRECONDITION", meaning: "The owner changed after the transfer was requested; the request stays pending." },
  CROSS_AVATAR: { code: "FAILED_PRECONDITION", meaning: "A membership named by a transfer belongs to another avatar." },
  AVATAR_INACTIVE: { code: "FAILED_PRECONDITION", meaning: "The avatar is inactive: its ownership cannot change." },
  TARGET_INACTIVE: { code: "FAILED_PRECONDITION", meaning: "The target membership is inactive." },
  TARGET_NOT_ACCEPTED: { code: "FAILED_PRECONDITION", meaning: "The target membership has not been accepted." },
  TARGET_EXPIRED: { code: "FAILED_PRECONDITION", meaning: "The target membership has expired." },
  PRINCIPAL_CANNOT_ACT: {
    code: "FAILED_PRECONDITION",
    meaning: "The target membership's principal cannot act (inactive, not accepted, expired, its account or user).",
  },
  TRANSFER_PENDING: { code: "FAILED_PRECONDITION", meaning: "The avatar already has a pending transfer; accept, decline or cancel it first." },
  TRANSFER_NOT_PENDING: { code: "FAILED_PRECONDITION", meaning: "The transfer is no longer pending (completed, declined or cancelled)." },
  TRANSFER_EXPIRED: { code: "FAILED_PRECONDITION", meaning: "The transfer request expired (recorded as expired)." },
  OWNER_INVARIANT: { code: "FAILED_PRECONDITION", meaning: "The write would leave an active avatar without exactly one owner." },
  NOT_EMPTY: {
    code: "FAILED_PRECONDITION",
    meaning: "A tenant or organization still contains records; delete them first or set cascade. The message says what it holds.",
  },
  OWNS_AVATARS: {
    code: "FAILED_PRECONDITION",
    meaning: "The user, staff member, account or principal still owns avatars (the message names them); move their ownership first (TransferOwnership).",
  },
  OWNER_MEMBERSHIP: { code: "FAILED_PRECONDITION", meaning: "The owner membership cannot be revoked or declined; move the ownership first." },
  MEMBERSHIP_ACCEPTED: { code: "FAILED_PRECONDITION", meaning: "The invitation was already accepted: revoke the membership instead of declining it." },
  SINGLE_ROLE: {
    code: "FAILED_PRECONDITION",
    meaning: "In a single_role_in_hierarchy organization a user holds one organization-level role; the message names the one it holds. Ask to replace it.",
  },
  CHANGES_PRUNED: {
    code: "FAILED_PRECONDITION",
    meaning: "Watch: the change log no longer holds the changes after from_revision (pruned by retention); reload the state and watch from its revision.",
  },
  MESH_MAPPING: {
    code: "FAILED_PRECONDITION",
    meaning: "The mesh mapping cannot turn this Envoy request into a decision (a route needs a value it does not have).",
  },

  // ABORTED
  ABORTED: { code: "ABORTED", meaning: "A concurrent write won (a serialization failure or deadlock); retry the call." },
  LISTING_CHANGED: { code: "ABORTED", meaning: "What a listing covers changed between its pages; restart without a page_token." },
  LOOKUP_EXPIRED: {
    code: "ABORTED",
    meaning: "A lookup's page_token names a revision this replica no longer holds (unused for a minute, or served elsewhere); restart without a page_token.",
  },

  // UNAVAILABLE
  UNAVAILABLE: { code: "UNAVAILABLE", meaning: "The service is starting, stopping, or a backend cannot be reached; retry with backoff." },
  DATABASE_UNAVAILABLE: { code: "UNAVAILABLE", meaning: "The database cannot be reached (refused, reset, terminated, timed out); writes fail at once." },
  NOT_FRESH_ENOUGH: { code: "UNAVAILABLE", meaning: "The replica could not reach the requested revision within the call's wait budget." },
  RATE_LIMIT_STORE_UNAVAILABLE: { code: "UNAVAILABLE", meaning: "The rate-limit counter store (Redis) cannot be reached for a read of the counters." },
  API_KEYS_NOT_LOADED: { code: "UNAVAILABLE", meaning: "The replica has not loaded its API keys yet, so it cannot tell a valid key from an unknown one." },

  // RESOURCE_EXHAUSTED
  RESOURCE_EXHAUSTED: { code: "RESOURCE_EXHAUSTED", meaning: "A size limit was hit; the message names it." },
  TOO_MANY_CALLS: { code: "RESOURCE_EXHAUSTED", meaning: "The server is at AUTHZ_MAX_CONCURRENT_CALLS; retry with backoff." },
  TOO_MANY_COUNTERS: { code: "RESOURCE_EXHAUSTED", meaning: "One rate-limit call would touch more than 128 counters." },
  MESSAGE_TOO_LARGE: { code: "RESOURCE_EXHAUSTED", meaning: "The request (after decompression) is larger than AUTHZ_MAX_MESSAGE_BYTES." },

  // UNIMPLEMENTED, DEADLINE_EXCEEDED
  UNIMPLEMENTED: { code: "UNIMPLEMENTED", meaning: "The RPC or method is not served." },
  DEADLINE_EXCEEDED: { code: "DEADLINE_EXCEEDED", meaning: "The call's deadline passed before it was answered." },

  // UNAUTHENTICATED, PERMISSION_DENIED
  UNAUTHENTICATED: { code: "UNAUTHENTICATED", meaning: "No credential, or one that is invalid, expired or revoked." },
  PERMISSION_DENIED: { code: "PERMISSION_DENIED", meaning: "The credential may not make this call." },
  MISSING_SCOPE: { code: "PERMISSION_DENIED", meaning: "The credential lacks the scope the method needs; metadata.scope names it." },
  SCOPE_NOT_HELD: { code: "PERMISSION_DENIED", meaning: "A new API key may carry only scopes its creator holds; metadata.scope names the first other one." },
  OTHER_TENANT: {
    code: "PERMISSION_DENIED",
    meaning: "The credential is bound to a tenant and the call names a row outside it (docs/security.md); the message names only what the caller sent.",
  },

  // CANCELLED, INTERNAL
  CANCELLED: { code: "CANCELLED", meaning: "The caller cancelled the call." },
  INTERNAL: { code: "INTERNAL", meaning: "A bug; metadata.request_id finds the cause in the server's log." },
} as const satisfies Record<string, Entry>;

export type Reason = keyof typeof REASONS;
/** The reasons that travel with code C. */
export type ReasonOf<C extends ErrorCode> = { [R in Reason]: (typeof REASONS)[R]["code"] extends C ? R : never }[Reason];

/** Whether a string is a catalogued reason. */
export const isReason = (s: string): s is Reason => Object.hasOwn(REASONS, s);

/**
 * A failure the caller can act on; its message is shown to the caller, so it
 * never holds SQL or secrets. The type parameter ties the reason to the code:
 * `new AuthzError("PERMISSION_DENIED", m, { reason: "OTHER_TENANT" })`
 * compiles, a reason of another code does not.
 */
export class AuthzError<C extends DomainCode = DomainCode> extends Error {
  readonly code: C;
  /** A stable machine-readable reason from REASONS; defaults to the code's generic reason. */
  readonly reason: Reason;
  /** Extra key/values for the caller (ErrorInfo metadata). */
  readonly metadata: Readonly<Record<string, string>>;
  constructor(code: C, message: string, opts: { reason?: ReasonOf<C>; metadata?: Record<string, string>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    const reason: Reason = opts.reason ?? code;
    this.name = "AuthzError";
    this.code = code;
    this.reason = reason;
    this.metadata = opts.metadata ?? {};
  }
}

/**
 * A caller's string as a message may quote it: at most 64 characters, each
 * outside printable ASCII (controls, bidi overrides, any non-ASCII) shown as
 * "?", and "…" when cut. A message never carries a caller's whole value.
 */
export const printablePrefix = (s: string): string => `${s.slice(0, 64).replace(/[^\x20-\x7e]/g, "?")}${s.length > 64 ? "…" : ""}`;

export const invalidArgument = (message: string, field?: string): AuthzError =>
  new AuthzError("INVALID_ARGUMENT", message, field ? { metadata: { field } } : {});
export const unimplemented = (rpc: string, issue: string): AuthzError =>
  new AuthzError("UNIMPLEMENTED", `${rpc} is defined in the API but not served yet (${issue})`);
export const unavailable = (message: string, cause?: unknown): AuthzError => new AuthzError("UNAVAILABLE", message, { cause });

/** docs/errors.md, rendered from the catalogue. */
export function renderErrorsDoc(): string {
  const lines = [
    "# Errors",
    "",
    "<!-- Rendered from src/errors.ts by `npm run docs:errors`; edit the catalogue there, not this file. -->",
    "",
    "Every error authz returns carries a gRPC code and a `google.rpc.ErrorInfo` with domain `authz` and a",
    "stable `reason` (in `grpc-status-details-bin` on gRPC, in `details` on Connect and gRPC-Web; the",
    "AuthZEN and Envoy HTTP answers carry the reason in their JSON or headers). Match on the reason, not",
    "on the message. A reason always travels with the same code.",
    "",
    "## Codes",
    "",
    "| code | when |",
    "|---|---|",
    ...Object.entries(ERROR_CODES).map(([code, when]) => `| \`${code}\` | ${when} |`),
    "",
    "## Reasons",
    "",
    "| reason | code | meaning |",
    "|---|---|---|",
    ...Object.entries(REASONS).map(([reason, e]) => `| \`${reason}\` | \`${e.code}\` | ${e.meaning} |`),
    "",
  ];
  return lines.join("\n");
}
