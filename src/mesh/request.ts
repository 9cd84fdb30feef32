// The HTTP request as a sidecar reports it, and the mapping applied to it:
// which route it is (context_extensions or the method + path table) and who
// makes it (header, verified JWT claim or peer principal). Pure: no protobuf,
// no engine; rpc/envoy-handlers.ts builds HttpAttributes from a CheckRequest
// and turns the results into a decision.

import type { MeshConfig, MeshRoute, SubjectSource } from "./config.js";
import { compilePath, compileValue, matchPath, type PathTemplate, splitRef, type ValueTemplate } from "./template.js";
import { printablePrefix } from "../errors.js";

/** The HTTP request Envoy asks about, as the mapping reads it. */
export interface HttpAttributes {
  readonly method: string;
  /** Path with its query string, undecoded (as Envoy sends it). */
  readonly path: string;
  /** A request header by lower-case name. */
  header(name: string): string | undefined;
  /** The downstream peer's authenticated principal (mTLS / SPIFFE id); "" when none. */
  readonly principal: string;
  readonly contextExtensions: Readonly<Record<string, string>>;
  /** Dynamic metadata of one namespace (ext_authz metadata_context). */
  metadata(namespace: string): Readonly<Record<string, unknown>> | undefined;
}

/** context_extensions keys authz reads (set per route with ExtAuthzPerRoute.check_settings). */
export const EXT = {
  route: "authz_route",
  permission: "authz_permission",
  resource: "authz_resource",
  path: "authz_path",
  public: "authz_public",
  rateLimitPolicy: "authz_rate_limit_policy",
  rateLimitSubject: "authz_rate_limit_subject",
  rateLimitOrganization: "authz_rate_limit_organization",
  rateLimitCost: "authz_rate_limit_cost",
} as const;

/** Thrown for mapping problems found at request time (bad context_extensions): a configuration fault, not the request's. */
export class MeshMappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MeshMappingError";
  }
}

export type RouteResolution =
  | { readonly kind: "route"; readonly route: MeshRoute; readonly vars: Readonly<Record<string, string>>; readonly via: "context_extensions" | "table" }
  | { readonly kind: "unknown" };

// Templates from context_extensions are compiled once per distinct string.
const MAX_CACHED = 1024;
const valueCache = new Map<string, ValueTemplate | Error>();
const pathCache = new Map<string, PathTemplate | Error>();
function cached<T>(cache: Map<string, T | Error>, source: string, compile: (s: string) => T, key: string): T {
  let t = cache.get(source);
  if (t === undefined) {
    try {
      t = compile(source);
    } catch (err) {
      t = err as Error;
    }
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(source, t);
  }
  if (t instanceof Error) throw new MeshMappingError(`context_extensions ${key}: ${t.message}`);
  return t;
}

function routeFromExtensions(ext: Readonly<Record<string, string>>): MeshRoute {
  const pathRaw = ext[EXT.path];
  const path = pathRaw !== undefined ? cached(pathCache, pathRaw, compilePath, EXT.path) : undefined;
  const value = (key: string) => {
    const raw = ext[key];
    return raw !== undefined ? cached(valueCache, raw, compileValue, key) : undefined;
  };
  const resource = value(EXT.resource);
  const isPublic = ext[EXT.public] === "true";
  const permission = ext[EXT.permission];
  if (!isPublic && (!permission || !resource)) {
    throw new MeshMappingError(`context_extensions need ${EXT.permission} and ${EXT.resource} (or ${EXT.public}: "true" or ${EXT.route})`);
  }
  if (permission !== undefined && permission.length > 128) throw new MeshMappingError(`context_extensions ${EXT.permission} is longer than 128 characters`);
  for (const t of [resource, value(EXT.rateLimitSubject), value(EXT.rateLimitOrganization)]) {
    for (const v of t?.vars ?? []) {
      if (!path?.vars.has(v)) throw new MeshMappingError(`context_extensions use {${v}}, which ${EXT.path} does not capture`);
    }
  }
  let rateLimit: MeshRoute["rateLimit"];
  const policy = ext[EXT.rateLimitPolicy];
  if (policy) {
    const costRaw = ext[EXT.rateLimitCost] ?? "1";
    if (!/^\d{1,7}$/.test(costRaw))
      throw new MeshMappingError(`context_extensions ${EXT.rateLimitCost} must be a whole number, got "${printablePrefix(costRaw)}"`);
    rateLimit = {
      policy,
      subject: value(EXT.rateLimitSubject) ?? cached(valueCache, "{subject}", compileValue, EXT.rateLimitSubject),
      organization: value(EXT.rateLimitOrganization),
      cost: Number(costRaw),
    };
  }
  return { name: undefined, methods: undefined, path, public: isPublic, permission, resource, rateLimit };
}

/**
 * The route of a request: context_extensions first (authz_route names a
 * route of the file; authz_permission / authz_resource / ... describe one
 * inline), then the first table route whose method and path match.
 * MeshMappingError when the context_extensions cannot be used.
 */
export function resolveRoute(mesh: MeshConfig, req: HttpAttributes): RouteResolution {
  const ext = req.contextExtensions;
  const named = ext[EXT.route];
  if (named !== undefined) {
    const route = mesh.routesByName.get(named);
    if (!route) throw new MeshMappingError(`context_extensions ${EXT.route} names "${printablePrefix(named)}", which ${mesh.source} does not define`);
    const vars = route.path ? matchPath(route.path, req.path) : {};
    return { kind: "route", route, vars: vars ?? {}, via: "context_extensions" };
  }
  if (ext[EXT.permission] !== undefined || ext[EXT.public] !== undefined) {
    const route = routeFromExtensions(ext);
    const vars = route.path ? matchPath(route.path, req.path) : {};
    return { kind: "route", route, vars: vars ?? {}, via: "context_extensions" };
  }
  const method = req.method.toUpperCase();
  for (const route of mesh.routes) {
    if (!route.path) continue;
    if (route.methods && !route.methods.has(method)) continue;
    const vars = matchPath(route.path, req.path);
    if (vars) return { kind: "route", route, vars, via: "table" };
  }
  return { kind: "unknown" };
}

export type SubjectResolution =
  | { readonly kind: "subject"; readonly ref: { readonly type: string; readonly id: string }; readonly from: SubjectSource["from"] }
  | { readonly kind: "none" }
  | { readonly kind: "malformed"; readonly message: string };

function claimAt(payload: unknown, path: readonly string[]): unknown {
  let v: unknown = payload;
  for (const p of path) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

function jwtPayload(s: Extract<SubjectSource, { from: "jwt" }>, req: HttpAttributes): { ok: true; payload: unknown } | { ok: false; message: string } {
  if (s.header) {
    const raw = req.header(s.header);
    if (raw === undefined || raw === "") return { ok: true, payload: undefined };
    try {
      return { ok: true, payload: JSON.parse(Buffer.from(raw.trim(), "base64url").toString("utf8")) };
    } catch {
      return { ok: false, message: `header ${s.header} is not a base64url-encoded JSON JWT payload` };
    }
  }
  return { ok: true, payload: req.metadata(s.metadataNamespace)?.[s.metadataKey] };
}

/** "type:id", or the bare id of a source with a fixed type. */
function refFrom(value: string, type: string | undefined, what: string): SubjectResolution {
  const v = value.trim();
  if (type !== undefined) return v ? { kind: "subject", ref: { type, id: v }, from: "header" } : { kind: "none" };
  const r = splitRef(v);
  if (!r) return { kind: "malformed", message: `${what} must be "type:id" (e.g. "user:<uuid>"), got "${printablePrefix(v)}"` };
  return { kind: "subject", ref: r, from: "header" };
}

/**
 * Who makes the request: the first subject source that is present. A source
 * that is present but unreadable makes the request malformed (it is not
 * skipped: a bad credential must not fall through to a weaker source).
 */
export function resolveSubject(mesh: MeshConfig, req: HttpAttributes): SubjectResolution {
  for (const s of mesh.subject) {
    switch (s.from) {
      case "header": {
        const v = req.header(s.header);
        if (v === undefined || v.trim() === "") continue;
        return refFrom(v, s.type, `header ${s.header}`);
      }
      case "jwt": {
        const p = jwtPayload(s, req);
        if (!p.ok) return { kind: "malformed", message: p.message };
        if (p.payload === undefined) continue;
        const claim = claimAt(p.payload, s.claim);
        if (claim === undefined || claim === null) continue;
        if (typeof claim !== "string") return { kind: "malformed", message: `JWT claim ${s.claim.join(".")} is not a string` };
        const r = refFrom(claim, s.type, `JWT claim ${s.claim.join(".")}`);
        return r.kind === "subject" ? { ...r, from: "jwt" } : r;
      }
      case "peer": {
        const ref = req.principal ? s.principals.get(req.principal) : undefined;
        if (ref) return { kind: "subject", ref, from: "peer" };
        continue;
      }
    }
  }
  return { kind: "none" };
}
