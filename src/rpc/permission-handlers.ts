import { createHash } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ResourceRef as ResourceRefMsg, SubjectRef as SubjectRefMsg } from "../../gen/authz/v1/common_pb.js";
import {
  type CheckBulkRequest,
  type CheckRequest,
  type CheckResponseSchema,
  DecisionReason,
  type ExplanationSchema,
  ExplanationStepKind,
  type ListPermissionsRequest,
  type ListPermissionsResponseSchema,
  type PermissionService,
} from "../../gen/authz/v1/permission_service_pb.js";
import type { Snapshot } from "../engine/snapshot.js";
import {
  type Decision,
  RESOURCE_TYPES,
  type Reason,
  type ResourceRef,
  type ResourceType,
  SUBJECT_TYPES,
  type ScopeEntry,
  type SubjectRef,
  type SubjectType,
} from "../engine/types.js";
import { AuthzError, invalidArgument, printablePrefix } from "../errors.js";
import type { LiveEngine } from "../store/live-engine.js";
import { REVISION, UUID } from "../validation.js";
import { type Freshness, MAX_FRESHNESS_WAIT_MS, stateFor, toFreshness } from "./consistency.js";
import { type CallContext, isThenable, reusable, type ServiceHandlers } from "./handler-types.js";
import type { LookupMethods } from "./lookup-handlers.js";
import { confineRead } from "./tenancy.js";

export const MAX_BULK_ITEMS = 1000;
const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

export function toSubject(m: Pick<SubjectRefMsg, "type" | "id"> | undefined, field: string): SubjectRef {
  if (!m) throw invalidArgument(`${field} is required`, field);
  if (!(SUBJECT_TYPES as readonly string[]).includes(m.type)) {
    throw invalidArgument(`${field}.type must be one of ${SUBJECT_TYPES.join(", ")}, got "${printablePrefix(m.type)}"`, `${field}.type`);
  }
  if (!UUID.test(m.id)) throw invalidArgument(`${field}.id must be a UUID, got "${printablePrefix(m.id)}"`, `${field}.id`);
  return { type: m.type as SubjectType, id: m.id.toLowerCase() };
}

export function toResource(m: Pick<ResourceRefMsg, "type" | "id"> | undefined, field: string): ResourceRef {
  if (!m) throw invalidArgument(`${field} is required`, field);
  if (!(RESOURCE_TYPES as readonly string[]).includes(m.type)) {
    throw invalidArgument(`${field}.type must be one of ${RESOURCE_TYPES.join(", ")}, got "${printablePrefix(m.type)}"`, `${field}.type`);
  }
  if (!UUID.test(m.id)) throw invalidArgument(`${field}.id must be a UUID, got "${printablePrefix(m.id)}"`, `${field}.id`);
  return { type: m.type as ResourceType, id: m.id.toLowerCase() };
}

export function toPermission(p: string, field: string): string {
  if (p.length === 0) throw invalidArgument(`${field} is required`, field);
  if (p.length > 128) throw invalidArgument(`${field} is longer than 128 characters`, field);
  return p;
}

/** The engine to answer from (see stateFor). */
export function engineFor(live: LiveEngine, f: Freshness, ctx: CallContext, maxWaitMs = MAX_FRESHNESS_WAIT_MS): Promise<Snapshot> | Snapshot {
  return stateFor(live, f, ctx, maxWaitMs);
}

const REASON: Record<Reason, DecisionReason> = {
  GRANTED: DecisionReason.GRANTED,
  NO_GRANT: DecisionReason.NO_GRANT,
  SUBJECT_NOT_FOUND: DecisionReason.SUBJECT_NOT_FOUND,
  RESOURCE_NOT_FOUND: DecisionReason.RESOURCE_NOT_FOUND,
  PERMISSION_NOT_FOUND: DecisionReason.PERMISSION_NOT_FOUND,
  SUBJECT_LOCKED: DecisionReason.SUBJECT_LOCKED,
  SUBJECT_DISABLED: DecisionReason.SUBJECT_DISABLED,
  ACCOUNT_INACTIVE: DecisionReason.ACCOUNT_INACTIVE,
  PRINCIPAL_INACTIVE: DecisionReason.PRINCIPAL_INACTIVE,
  NOT_ACCEPTED: DecisionReason.NOT_ACCEPTED,
  PRINCIPAL_EXPIRED: DecisionReason.PRINCIPAL_EXPIRED,
  RESOURCE_INACTIVE: DecisionReason.RESOURCE_INACTIVE,
};

const STEP_KIND = {
  ASSIGNMENT: ExplanationStepKind.ASSIGNMENT,
  MEMBERSHIP: ExplanationStepKind.MEMBERSHIP,
  ROLE: ExplanationStepKind.ROLE,
  INHERITED_ROLE: ExplanationStepKind.INHERITED_ROLE,
  PERMISSION: ExplanationStepKind.PERMISSION,
} as const;

function explanation(d: Decision, subject: SubjectRef, permission: string, resource: ResourceRef): MessageInitShape<typeof ExplanationSchema> {
  const steps = d.steps ?? [];
  const message = d.allowed
    ? `${subject.type} ${subject.id} may ${permission} on ${resource.type} ${resource.id}: ${steps
        .map((s) => `${s.kind.toLowerCase()} ${s.key ?? s.id}`)
        .join(" → ")}`
    : `${subject.type} ${subject.id} may not ${permission} on ${resource.type} ${resource.id}: ${d.reason}`;
  return {
    message,
    steps: steps.map((s) => ({ kind: STEP_KIND[s.kind], id: s.id, key: s.key ?? "", ...(s.scope ? { scope: s.scope } : {}) })),
  };
}

function entryMessage(e: ScopeEntry) {
  return {
    orgId: e.orgId ?? "",
    orgName: e.orgName,
    urlSafeOrgName: e.urlSafeOrgName,
    orgRoleStructure: e.orgRoleStructure,
    ...(e.scope ? { scope: e.scope } : {}),
    userRole: e.userRole,
    inheritedUserRolesPlusCurrentRole: [...e.inheritedUserRolesPlusCurrentRole],
    userPermissions: [...e.userPermissions],
    additionalRoles: [...e.additionalRoles],
  };
}

interface PageToken {
  /** Offset of the next entry. */
  o: number;
  /** Digest of the request (subject, resource, page size). */
  q: string;
  /** Digest of the whole listing when the first page was served. */
  d: string;
  /** Revision of the first page (the listing is at least this fresh). */
  r: string;
}

const digest = (v: unknown) => createHash("sha256").update(JSON.stringify(v)).digest("base64url").slice(0, 22);

function decodeToken(raw: string): PageToken {
  try {
    const t = JSON.parse(Buffer.from(raw, "base64url").toString("utf8")) as PageToken;
    if (Number.isSafeInteger(t.o) && t.o > 0 && typeof t.q === "string" && typeof t.d === "string" && REVISION.test(t.r)) return t;
  } catch {
    // fall through
  }
  throw invalidArgument("page_token is not a token returned by ListPermissions", "page_token");
}

/** One decision, as metrics and the decision log see it. */
export interface DecisionEvent {
  method: "Check" | "CheckBulk";
  ctx: CallContext;
  subject: SubjectRef;
  permission: string;
  resource: ResourceRef;
  decision: Decision;
  revision: bigint;
}

export interface PermissionHandlerOptions {
  clock?: () => number;
  /** Called once per decision (Check, and each CheckBulk item). */
  onDecision?: (e: DecisionEvent) => void;
  /** Cap on freshness waits (AUTHZ_MAX_WAIT_MS). */
  maxWaitMs?: number;
}

/** Check, CheckBulk and ListPermissions; the lookups are lookupHandlers' (src/rpc/lookup-handlers.ts). */
type Handlers = Omit<ServiceHandlers<typeof PermissionService>, LookupMethods>;

type CheckAnswer = MessageInitShape<typeof CheckResponseSchema>;

/**
 * Check's answers without an explanation: one per outcome and revision,
 * shared by every call that gets it (the listener encodes each once).
 */
function checkAnswers(): (revision: bigint, allowed: boolean, reason: Reason) => CheckAnswer {
  let at: bigint | undefined;
  let byOutcome = new Map<string, CheckAnswer>();
  return (revision, allowed, reason) => {
    if (revision !== at) {
      at = revision;
      byOutcome = new Map();
    }
    const key = allowed ? reason : `!${reason}`;
    let a = byOutcome.get(key);
    if (!a) {
      a = reusable({ allowed, revision: revision.toString(), reason: REASON[reason] });
      byOutcome.set(key, a);
    }
    return a;
  };
}

/** Check: synchronous unless the caller asked for a freshness the engine must wait for. */
function checkHandler(live: () => LiveEngine, opts: PermissionHandlerOptions): Handlers["check"] {
  const clock = opts.clock ?? Date.now;
  const onDecision = opts.onDecision;
  const shared = checkAnswers();
  const answer = (req: CheckRequest, ctx: CallContext, engine: Snapshot, subject: SubjectRef, permission: string, resource: ResourceRef) => {
    confineRead(ctx, engine, subject, resource);
    const d = engine.check(subject, permission, resource, clock(), req.explain);
    onDecision?.({ method: "Check", ctx, subject, permission, resource, decision: d, revision: engine.revision });
    if (!req.explain) return shared(engine.revision, d.allowed, d.reason);
    const out: CheckAnswer = { allowed: d.allowed, revision: engine.revision.toString(), reason: REASON[d.reason] };
    out.explanation = explanation(d, subject, permission, resource);
    return out;
  };
  return (req, ctx) => {
    const subject = toSubject(req.subject, "subject");
    const permission = toPermission(req.permission, "permission");
    const resource = toResource(req.resource, "resource");
    const engine = engineFor(live(), toFreshness(req.consistency), ctx, opts.maxWaitMs);
    if (isThenable(engine)) return engine.then((e) => answer(req, ctx, e, subject, permission, resource));
    return answer(req, ctx, engine, subject, permission, resource);
  };
}

/** CheckBulk: one engine state for every item; an item's bad input is its own error, not the call's. */
function checkBulkHandler(live: () => LiveEngine, opts: PermissionHandlerOptions): Handlers["checkBulk"] {
  const clock = opts.clock ?? Date.now;
  const onDecision = opts.onDecision;
  const answer = (req: CheckBulkRequest, ctx: CallContext, engine: Snapshot) => {
    const now = clock();
    const results = req.items.map((item, i) => {
      try {
        const subject = toSubject(item.subject, `items[${i}].subject`);
        const permission = toPermission(item.permission, `items[${i}].permission`);
        const resource = toResource(item.resource, `items[${i}].resource`);
        confineRead(ctx, engine, subject, resource);
        const d = engine.check(subject, permission, resource, now, req.explain);
        onDecision?.({ method: "CheckBulk", ctx, subject, permission, resource, decision: d, revision: engine.revision });
        return {
          correlationId: item.correlationId,
          allowed: d.allowed,
          reason: REASON[d.reason],
          ...(req.explain ? { explanation: explanation(d, subject, permission, resource) } : {}),
        };
      } catch (err) {
        if (!(err instanceof AuthzError)) throw err;
        return { correlationId: item.correlationId, allowed: false, error: { code: err.code, message: err.message } };
      }
    });
    return { revision: engine.revision.toString(), results };
  };
  return (req, ctx) => {
    if (req.items.length > MAX_BULK_ITEMS) {
      throw invalidArgument(`items holds ${req.items.length} checks; at most ${MAX_BULK_ITEMS} per call`, "items");
    }
    const engine = engineFor(live(), toFreshness(req.consistency), ctx, opts.maxWaitMs);
    return isThenable(engine) ? engine.then((e) => answer(req, ctx, e)) : answer(req, ctx, engine);
  };
}

/** ListPermissions: pages over what the subject holds, refused when it changed since the first page. */
function listPermissionsHandler(live: () => LiveEngine, opts: PermissionHandlerOptions): Handlers["listPermissions"] {
  const clock = opts.clock ?? Date.now;
  return async (req: ListPermissionsRequest, ctx): Promise<MessageInitShape<typeof ListPermissionsResponseSchema>> => {
    const subject = toSubject(req.subject, "subject");
    const within = req.resource ? toResource(req.resource, "resource") : undefined;
    if (req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) {
      throw invalidArgument(`page_size must be between 0 and ${MAX_PAGE_SIZE}, got ${req.pageSize}`, "page_size");
    }
    const pageSize = req.pageSize || DEFAULT_PAGE_SIZE;
    const query = digest([subject, within ?? null, pageSize]);
    const token = req.pageToken ? decodeToken(req.pageToken) : undefined;
    if (token && token.q !== query) {
      throw invalidArgument("page_token belongs to a different request (subject, resource and page_size must not change)", "page_token");
    }
    let freshness = toFreshness(req.consistency);
    if (token && freshness.kind === "latest") freshness = { kind: "at_least", revision: BigInt(token.r) };
    const engine = await engineFor(live(), freshness, ctx, opts.maxWaitMs);
    confineRead(ctx, engine, subject, within);
    const listing = engine.list(subject, within, clock());
    if (!listing) throw new AuthzError("NOT_FOUND", `${subject.type} ${subject.id} does not exist`, { reason: "SUBJECT_NOT_FOUND" });
    const tenant = ctx.caller?.tenantId;
    // A tenant-bound caller sees only the scopes inside its tenant.
    const all = tenant ? listing.entries.filter((e) => e.scope !== undefined && engine.resourceTenant(e.scope) === tenant) : listing.entries;
    return listingPage(all, { offset: token?.o ?? 0, pageSize, query, token, revision: engine.revision, subjectStatus: listing.subjectStatus });
  };
}

/** One page of a listing, with the token for the next; ABORTED when the listing changed since the first page. */
function listingPage(
  all: readonly ScopeEntry[],
  p: { offset: number; pageSize: number; query: string; token: PageToken | undefined; revision: bigint; subjectStatus: Reason },
): MessageInitShape<typeof ListPermissionsResponseSchema> {
  const whole = digest(all);
  if (p.token && p.token.d !== whole) {
    throw new AuthzError("ABORTED", "what the subject holds changed since the first page; restart the listing without a page_token", {
      reason: "LISTING_CHANGED",
    });
  }
  const end = p.offset + p.pageSize;
  const next: PageToken = { o: end, q: p.query, d: whole, r: p.token?.r ?? p.revision.toString() };
  return {
    scopes: all.slice(p.offset, end).map(entryMessage),
    revision: p.revision.toString(),
    subjectStatus: REASON[p.subjectStatus],
    nextPageToken: end < all.length ? Buffer.from(JSON.stringify(next)).toString("base64url") : "",
  };
}

export function permissionHandlers(live: () => LiveEngine, opts: PermissionHandlerOptions = {}): Handlers {
  return {
    check: checkHandler(live, opts),
    checkBulk: checkBulkHandler(live, opts),
    listPermissions: listPermissionsHandler(live, opts),
  };
}
