// LookupSubjects and LookupResources (issue 15), unary and paged or as a
// server stream. Both answer from one snapshot: the reverse walks of
// src/engine/lookups.ts, which decide every candidate with Check's own grant
// rule. Nothing is truncated: a page or a stream message holds at most 1000
// items and the caller takes as many as the answer has.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Consistency } from "../../gen/authz/v1/common_pb.js";
import {
  type LookedUpResourceSchema,
  type LookedUpSubjectSchema,
  LookupGrantKind,
  type PermissionService,
  type StreamLookupResourcesRequest,
  type StreamLookupSubjectsRequest,
} from "../../gen/authz/v1/permission_service_pb.js";
import type { ResourceGrant, SubjectGrant } from "../engine/lookups.js";
import type { Snapshot } from "../engine/snapshot.js";
import { RESOURCE_TYPES, type ResourceRef, type ResourceType, SUBJECT_TYPES, type SubjectType } from "../engine/types.js";
import { invalidArgument, printablePrefix } from "../errors.js";
import type { LiveEngine } from "../store/live-engine.js";
import { visibleResource, visibleSubject } from "../tenancy.js";
import { toFreshness } from "./consistency.js";
import type { CallContext, ServiceHandlers } from "./handler-types.js";
import { LookupPages, lookupDigest, pageSizeOf } from "./lookup-pages.js";
import { engineFor, toPermission, toResource, toSubject } from "./permission-handlers.js";
import { confineRead } from "./tenancy.js";

/** Items per message of a streamed lookup. */
export const LOOKUP_STREAM_BATCH = 1000;

export type LookupMethods = "lookupSubjects" | "streamLookupSubjects" | "lookupResources" | "streamLookupResources";

export interface LookupOptions {
  clock?: () => number;
  maxWaitMs?: number;
}

/** The subject types a lookup may be limited to ("" = every type). */
export function toSubjectFilter(t: string, field: string): SubjectType | undefined {
  if (t === "") return undefined;
  if (!(SUBJECT_TYPES as readonly string[]).includes(t)) {
    throw invalidArgument(`${field} must be empty or one of ${SUBJECT_TYPES.join(", ")}, got "${printablePrefix(t)}"`, field);
  }
  return t as SubjectType;
}

export function toResourceType(t: string, field: string): ResourceType {
  if (!(RESOURCE_TYPES as readonly string[]).includes(t)) {
    throw invalidArgument(`${field} must be one of ${RESOURCE_TYPES.join(", ")}, got "${printablePrefix(t)}"`, field);
  }
  return t as ResourceType;
}

/** A LookupSubjects question, checked. */
export interface SubjectsQuery {
  permission: string;
  resource: ResourceRef;
  subjectType: SubjectType | undefined;
}

/** A LookupResources question, checked. */
export interface ResourcesQuery {
  subject: ReturnType<typeof toSubject>;
  permission: string;
  resourceType: ResourceType;
}

type Ref = { type: string; id: string } | undefined;

export function subjectsQuery(req: { permission: string; resource?: Ref; subjectType: string }): SubjectsQuery {
  return {
    permission: toPermission(req.permission, "permission"),
    resource: toResource(req.resource, "resource"),
    subjectType: toSubjectFilter(req.subjectType, "subject_type"),
  };
}

export function resourcesQuery(req: { subject?: Ref; permission: string; resourceType: string }): ResourcesQuery {
  return {
    subject: toSubject(req.subject, "subject"),
    permission: toPermission(req.permission, "permission"),
    resourceType: toResourceType(req.resourceType, "resource_type"),
  };
}

/** The subjects of a lookup the caller may see, in the engine's order (tenancy: src/tenancy.ts). */
export function subjectsOf(
  engine: Snapshot,
  q: SubjectsQuery,
  ctx: CallContext,
  now: number,
): { all: () => Iterator<SubjectGrant>; visible: (g: SubjectGrant) => boolean } {
  confineRead(ctx, engine, undefined, q.resource);
  return {
    all: () => engine.lookupSubjects(q.permission, q.resource, now)[Symbol.iterator](),
    visible: (g) => (q.subjectType === undefined || g.subject.type === q.subjectType) && visibleSubject(ctx.caller, engine, g.subject),
  };
}

/** The resources of a lookup the caller may see, each with a grant, in the engine's order. */
export function resourcesOf(
  engine: Snapshot,
  q: ResourcesQuery,
  ctx: CallContext,
  now: number,
): { all: () => Iterator<ResourceGrant>; visible: (r: ResourceGrant) => boolean } {
  confineRead(ctx, engine, q.subject, undefined);
  return {
    all: () => engine.lookupResourceGrants(q.subject, q.permission, q.resourceType, now)[Symbol.iterator](),
    visible: (r) => visibleResource(ctx.caller, engine, r.resource),
  };
}

const GRANT_KIND = { ASSIGNMENT: LookupGrantKind.ASSIGNMENT, MEMBERSHIP: LookupGrantKind.MEMBERSHIP } as const;

const grantMessage = (g: SubjectGrant["grant"]) => ({ kind: GRANT_KIND[g.kind], id: g.id, roleId: g.roleId });

function subjectMessage(g: SubjectGrant, withGrants: boolean): MessageInitShape<typeof LookedUpSubjectSchema> {
  return { subject: { type: g.subject.type, id: g.subject.id }, ...(withGrants ? { grant: grantMessage(g.grant) } : {}) };
}

function resourceMessage(r: ResourceGrant, withGrants: boolean): MessageInitShape<typeof LookedUpResourceSchema> {
  return { resource: { type: r.resource.type, id: r.resource.id }, ...(withGrants ? { grant: grantMessage(r.grant) } : {}) };
}

/** Batches of at most LOOKUP_STREAM_BATCH visible items; stops when the caller goes away. */
function* batches<T>(it: Iterator<T>, visible: (x: T) => boolean, signal: AbortSignal): Generator<T[]> {
  let batch: T[] = [];
  for (let n = it.next(); !n.done && !signal.aborted; n = it.next()) {
    if (!visible(n.value)) continue;
    batch.push(n.value);
    if (batch.length === LOOKUP_STREAM_BATCH) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0 && !signal.aborted) yield batch;
}

export function lookupHandlers(live: () => LiveEngine, opts: LookupOptions = {}): Pick<ServiceHandlers<typeof PermissionService>, LookupMethods> {
  const clock = opts.clock ?? Date.now;
  const pages = new LookupPages(clock);
  const engine = (c: Consistency | undefined, ctx: CallContext) => engineFor(live(), toFreshness(c), ctx, opts.maxWaitMs);

  /** The snapshot of a page: the first page's freshness, or the token's pinned revision. */
  const pageSnapshot = async (req: { consistency?: Consistency | undefined; pageToken: string }, query: string, rpc: string, ctx: CallContext) => {
    if (!req.pageToken) return { snapshot: await engine(req.consistency, ctx), token: undefined };
    const token = pages.token(req.pageToken, query, rpc);
    return { snapshot: pages.snapshotFor(token, live().current()), token };
  };

  return {
    async lookupSubjects(req, ctx) {
      const q = subjectsQuery(req);
      const size = pageSizeOf(req.pageSize);
      const query = lookupDigest(["LookupSubjects", ctx.caller?.id ?? null, q, req.withGrants, size]);
      const { snapshot, token } = await pageSnapshot(req, query, "LookupSubjects", ctx);
      const now = token?.n ?? clock();
      const { all, visible } = subjectsOf(snapshot, q, ctx, now);
      const page = pages.page(snapshot, token, query, size, now, all, visible);
      return {
        subjects: page.items.map((g) => subjectMessage(g, req.withGrants)),
        revision: snapshot.revision.toString(),
        nextPageToken: page.nextPageToken,
      };
    },

    async *streamLookupSubjects(req: StreamLookupSubjectsRequest, ctx) {
      const q = subjectsQuery(req);
      const snapshot = await engine(req.consistency, ctx);
      const { all, visible } = subjectsOf(snapshot, q, ctx, clock());
      const revision = snapshot.revision.toString();
      let sent = false;
      for (const batch of batches(all(), visible, ctx.signal)) {
        sent = true;
        yield { subjects: batch.map((g) => subjectMessage(g, req.withGrants)), revision };
      }
      // An empty answer is still one message, so the caller learns the revision.
      if (!sent) yield { subjects: [], revision };
    },

    async lookupResources(req, ctx) {
      const q = resourcesQuery(req);
      const size = pageSizeOf(req.pageSize);
      const query = lookupDigest(["LookupResources", ctx.caller?.id ?? null, q, req.withGrants, size]);
      const { snapshot, token } = await pageSnapshot(req, query, "LookupResources", ctx);
      const now = token?.n ?? clock();
      const { all, visible } = resourcesOf(snapshot, q, ctx, now);
      const page = pages.page(snapshot, token, query, size, now, all, visible);
      return {
        resources: page.items.map((r) => resourceMessage(r, req.withGrants)),
        revision: snapshot.revision.toString(),
        nextPageToken: page.nextPageToken,
      };
    },

    async *streamLookupResources(req: StreamLookupResourcesRequest, ctx) {
      const q = resourcesQuery(req);
      const snapshot = await engine(req.consistency, ctx);
      const { all, visible } = resourcesOf(snapshot, q, ctx, clock());
      const revision = snapshot.revision.toString();
      let sent = false;
      for (const batch of batches(all(), visible, ctx.signal)) {
        sent = true;
        yield { resources: batch.map((r) => resourceMessage(r, req.withGrants)), revision };
      }
      if (!sent) yield { resources: [], revision };
    },
  };
}
