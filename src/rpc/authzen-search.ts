// AuthZEN 1.0 search (§ Subject, Resource and Action Search APIs) mapped onto
// the lookups:
//   POST /access/v1/search/subject   {subject: {type}, action, resource}     → LookupSubjects
//   POST /access/v1/search/resource  {subject, action, resource: {type}}     → LookupResources
//   POST /access/v1/search/action    {subject, resource}                     → the permission keys Check grants
// Paged in AuthZEN's shape: the request's `page: {token, limit}` (the older
// drafts' `page.next_token` is accepted as the token), the answer's
// `results` and `page: {next_token, count}`. Every page of one search is
// answered at the first page's revision (src/rpc/lookup-pages.ts); the
// revision is in the x-authz-revision header. `context` and `properties` are
// accepted and ignored, as for evaluations.

import type { Snapshot } from "../engine/snapshot.js";
import type { ResourceRef, SubjectRef } from "../engine/types.js";
import type { LiveEngine } from "../store/live-engine.js";
import { BadRequest } from "./authzen-http.js";
import type { CallContext } from "./handler-types.js";
import { resourcesOf, resourcesQuery, subjectsOf, subjectsQuery } from "./lookup-handlers.js";
import { DEFAULT_LOOKUP_PAGE_SIZE, type LookupPages, lookupDigest, MAX_LOOKUP_PAGE_SIZE, type PageToken } from "./lookup-pages.js";
import { engineFor, toResource, toSubject } from "./permission-handlers.js";
import { confineRead } from "./tenancy.js";

export const SEARCH_PATHS = {
  subject: "/access/v1/search/subject",
  resource: "/access/v1/search/resource",
  action: "/access/v1/search/action",
} as const;
export type SearchKind = keyof typeof SEARCH_PATHS;

export const searchKindOf = (path: string): SearchKind | undefined => (Object.keys(SEARCH_PATHS) as SearchKind[]).find((k) => SEARCH_PATHS[k] === path);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** An entity's type and (when given) id; BadRequest when it is missing or malformed. */
function entity(body: Obj, key: "subject" | "resource", needId: boolean): { type: string; id: string } {
  const v = body[key];
  if (!isObj(v) || typeof v["type"] !== "string") throw new BadRequest(`${key} is required: an object with a string "type"`);
  if (needId && typeof v["id"] !== "string") throw new BadRequest(`${key}.id is required and must be a string`);
  if (!needId && v["id"] !== undefined && typeof v["id"] !== "string") throw new BadRequest(`${key}.id must be a string`);
  return { type: v["type"], id: typeof v["id"] === "string" ? v["id"] : "" };
}

function actionName(body: Obj): string {
  const a = body["action"];
  if (!isObj(a) || typeof a["name"] !== "string") throw new BadRequest('action is required: an object with a string "name"');
  return a["name"];
}

/** The request's page: a token ("" for the first page) and a size. */
function pageOf(body: Obj): { token: string; limit: number } {
  const p = body["page"];
  if (p === undefined) return { token: "", limit: DEFAULT_LOOKUP_PAGE_SIZE };
  if (!isObj(p)) throw new BadRequest("page must be an object");
  const token = p["token"] ?? p["next_token"] ?? "";
  if (typeof token !== "string") throw new BadRequest("page.token must be a string");
  const limit = p["limit"] ?? DEFAULT_LOOKUP_PAGE_SIZE;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > MAX_LOOKUP_PAGE_SIZE) {
    throw new BadRequest(`page.limit must be an integer from 1 to ${MAX_LOOKUP_PAGE_SIZE}`);
  }
  return { token, limit };
}

export interface SearchDeps {
  live: () => LiveEngine;
  maxWaitMs?: number | undefined;
  clock: () => number;
  pages: LookupPages;
}

/** One page of a search: what to walk, at which snapshot, with which items visible. */
interface Walk<T> {
  query: unknown[];
  items: (snapshot: Snapshot, ctx: CallContext, now: number) => { all: () => Iterator<T>; visible: (x: T) => boolean };
  result: (x: T) => Obj;
}

function walkFor(kind: SearchKind, body: Obj): Walk<unknown> {
  if (kind === "subject") {
    const s = entity(body, "subject", false);
    const q = subjectsQuery({ permission: actionName(body), resource: entity(body, "resource", true), subjectType: s.type });
    return {
      query: ["subject", q],
      items: (e, ctx, now) => subjectsOf(e, q, ctx, now),
      result: (g) => ({ ...(g as { subject: SubjectRef }).subject }),
    } as Walk<unknown>;
  }
  if (kind === "resource") {
    const q = resourcesQuery({ subject: entity(body, "subject", true), permission: actionName(body), resourceType: entity(body, "resource", false).type });
    return {
      query: ["resource", q],
      items: (e, ctx, now) => resourcesOf(e, q, ctx, now),
      result: (r) => ({ ...(r as { resource: ResourceRef }).resource }),
    } as Walk<unknown>;
  }
  const subject = toSubject(entity(body, "subject", true), "subject");
  const resource = toResource(entity(body, "resource", true), "resource");
  return {
    query: ["action", subject, resource],
    items: (e, ctx, now) => actionsOf(e, subject, resource, ctx, now),
    result: (k) => ({ name: k }),
  } as Walk<unknown>;
}

/**
 * The permission keys Check grants the subject on the resource: the keys it
 * holds anywhere (ListPermissions' entries, a superset), each decided by
 * Check on the resource. Sorted.
 */
function actionsOf(engine: Snapshot, subject: SubjectRef, resource: ResourceRef, ctx: CallContext, now: number) {
  confineRead(ctx, engine, subject, resource);
  return {
    all: () => {
      const candidates = new Set<string>();
      for (const e of engine.list(subject, undefined, now)?.entries ?? []) for (const k of e.userPermissions) candidates.add(k);
      return [...candidates]
        .filter((k) => engine.check(subject, k, resource, now).allowed)
        .sort()
        [Symbol.iterator]();
    },
    visible: () => true,
  };
}

/** Answers one search body: its page of results, in AuthZEN's shape, and the revision header. */
export async function search(kind: SearchKind, deps: SearchDeps, raw: unknown, ctx: CallContext): Promise<{ body: unknown; headers: Record<string, string> }> {
  if (!isObj(raw)) throw new BadRequest("the body must be a JSON object");
  if (raw["context"] !== undefined && !isObj(raw["context"])) throw new BadRequest("context must be an object");
  const page = pageOf(raw);
  const walk = walkFor(kind, raw);
  const query = lookupDigest(["AuthZEN search", ctx.caller?.id ?? null, walk.query, page.limit]);
  let snapshot: Snapshot;
  let token: PageToken | undefined;
  if (page.token) {
    token = deps.pages.token(page.token, query, `search/${kind}`);
    snapshot = deps.pages.snapshotFor(token, deps.live().current());
  } else {
    snapshot = await engineFor(deps.live(), { kind: "latest" }, ctx, deps.maxWaitMs);
  }
  const now = token?.n ?? deps.clock();
  const { all, visible } = walk.items(snapshot, ctx, now);
  const out = deps.pages.page(snapshot, token, query, page.limit, now, all, visible);
  return {
    body: { results: out.items.map(walk.result), page: { next_token: out.nextPageToken, count: out.items.length } },
    headers: { "x-authz-revision": snapshot.revision.toString() },
  };
}
