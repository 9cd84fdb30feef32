// The mesh mapping (AUTHZ_MESH_CONFIG): how an HTTP request seen by Envoy
// becomes a decision (subject, permission, resource, rate limit) and how
// ShouldRateLimit descriptors name policies and subjects. A JSON file, read
// once at start-up and validated as a whole: every problem is reported at
// once, as loadConfig does. docs/mesh.md documents the format.

import { readFileSync } from "node:fs";
import { ConfigError } from "../config.js";
import { RATE_SUBJECT_TYPES, type RateSubjectType } from "../engine/rate-limit-policies.js";
import { RESOURCE_TYPES, SUBJECT_TYPES } from "../engine/types.js";
import { compilePath, compileValue, type PathTemplate, splitRef, type ValueTemplate } from "./template.js";
import { UUID } from "../validation.js";

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
const METHODS = /^[A-Z]+$/;
const MAX_COST = 1_000_000;

/** Where the subject of a request comes from; the sources are tried in order and the first one present wins. */
export type SubjectSource =
  | {
      readonly from: "header";
      /** Lower-case header name, e.g. "x-authz-subject". */
      readonly header: string;
      /** Set: the header holds only the id, of this type. Unset: it holds "type:id". */
      readonly type: string | undefined;
    }
  | {
      readonly from: "jwt";
      /** Path of the claim in the payload ("sub", or "a.b" for a nested claim). */
      readonly claim: readonly string[];
      /** Set: the claim holds only the id, of this type. Unset: it holds "type:id". */
      readonly type: string | undefined;
      /** Dynamic-metadata namespace of the verified payload (jwt_authn's). */
      readonly metadataNamespace: string;
      /** Key of the payload in that namespace (jwt_authn payload_in_metadata). */
      readonly metadataKey: string;
      /** Set: read the payload from this header instead (jwt_authn forward_payload_header, base64url JSON). */
      readonly header: string | undefined;
    }
  | {
      readonly from: "peer";
      /** Exact peer principal (e.g. a SPIFFE id) → subject. */
      readonly principals: ReadonlyMap<string, { readonly type: string; readonly id: string }>;
    };

/** A rate limit spent by an allowed request of a route. */
export interface RouteRateLimit {
  readonly policy: string;
  /** The counting subject as "type:id" (user, organization or key); "{subject}" by default. */
  readonly subject: ValueTemplate;
  /** For a user subject: the organization whose organization-scoped policies also count. */
  readonly organization: ValueTemplate | undefined;
  readonly cost: number;
}

/** One route of the method + path table (or a named route that context_extensions pick). */
export interface MeshRoute {
  readonly name: string | undefined;
  /** Upper-case methods; undefined = any method. */
  readonly methods: ReadonlySet<string> | undefined;
  /** undefined: only reachable by name (context_extensions authz_route). */
  readonly path: PathTemplate | undefined;
  /** Allowed without identity or check. */
  readonly public: boolean;
  readonly permission: string | undefined;
  /** The resource as "type:id". */
  readonly resource: ValueTemplate | undefined;
  readonly rateLimit: RouteRateLimit | undefined;
}

/** How ShouldRateLimit reads descriptors. */
export interface RateLimitServiceMapping {
  /** Domains served; undefined = any. Descriptors of other domains are OK with no limit. */
  readonly domains: ReadonlySet<string> | undefined;
  /** The descriptor entry whose value names the policy. */
  readonly policyKey: string;
  /** Descriptor entry key → the rate subject type its value is. */
  readonly subjectKeys: ReadonlyMap<string, RateSubjectType>;
}

export interface MeshConfig {
  /** Where the file came from ("(built-in defaults)" without one). */
  readonly source: string;
  /** Settings that work but deserve a warning at start-up (a subject read from a request header). */
  readonly warnings: readonly string[];
  readonly unknownRoute: "deny" | "allow";
  readonly subject: readonly SubjectSource[];
  /** Value of WWW-Authenticate on a 401. */
  readonly wwwAuthenticate: string;
  /** Request header whose revision token asks for an answer at least that fresh; undefined = none. */
  readonly consistencyHeader: string | undefined;
  /** Upstream headers set on an allowed request; undefined = not set. */
  readonly okHeaders: { readonly revision: string | undefined; readonly subject: string | undefined };
  readonly routes: readonly MeshRoute[];
  readonly routesByName: ReadonlyMap<string, MeshRoute>;
  readonly rateLimitService: RateLimitServiceMapping;
}

export const DEFAULT_SUBJECT_HEADER = "x-authz-subject";
export const JWT_AUTHN_NAMESPACE = "envoy.filters.http.jwt_authn";

/**
 * The subject without a mapping file: the "sub" claim (a user id) of a JWT
 * that Envoy's jwt_authn filter verified and put in the request's dynamic
 * metadata, which a client cannot set. A request header is never a default
 * source: a client can send any header.
 */
export const DEFAULT_SUBJECT_SOURCES = [{ from: "jwt", claim: "sub", type: "user" }] as const;

/** The setting by which a mapping file vouches that Envoy sets a subject header itself and drops a client's copy. */
export const SET_BY_SIDECAR = "set_by_sidecar";

/** Reads and validates the mapping file (JSON); the built-in defaults when `path` is undefined. ConfigError lists every problem. */
export function loadMeshConfig(path: string | undefined): MeshConfig {
  if (path === undefined) return parseMeshConfig({}, "(built-in defaults)");
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError([`AUTHZ_MESH_CONFIG ${path}: ${(err as Error).message}`]);
  }
  return parseMeshConfig(doc, path);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Reads settings out of one mapping document, collecting every problem (prefixed with the source and JSON path) and warning. */
class MeshReader {
  readonly problems: string[] = [];
  readonly warnings: string[] = [];
  constructor(readonly source: string) {}

  bad(at: string, msg: string): void {
    this.problems.push(`${this.source}: ${at}: ${msg}`);
  }

  known(o: Obj, at: string, keys: readonly string[]): void {
    for (const k of Object.keys(o)) if (!keys.includes(k)) this.bad(`${at}.${k}`, `is not a known setting (known: ${keys.join(", ")})`);
  }

  /** The object under `key` ({} when absent; a problem when it is not an object). */
  section(o: Obj, key: string, at: string): Obj {
    const v = o[key];
    if (v !== undefined && !isObj(v)) this.bad(`${at}.${key}`, "must be an object");
    return isObj(v) ? v : {};
  }

  str(o: Obj, key: string, at: string): string | undefined {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") {
      this.bad(`${at}.${key}`, "must be a non-empty string");
      return undefined;
    }
    return v;
  }

  header(o: Obj, key: string, at: string): string | undefined {
    const v = this.str(o, key, at)?.toLowerCase();
    if (v !== undefined && !HEADER_NAME.test(v)) {
      this.bad(`${at}.${key}`, `"${v}" is not a header name`);
      return undefined;
    }
    return v;
  }

  /** A header name, or null to turn the header off; `fallback` when absent. */
  optionalHeader(o: Obj, key: string, at: string, fallback: string): string | undefined {
    return o[key] === null ? undefined : (this.header(o, key, at) ?? fallback);
  }

  subjectType(o: Obj, at: string): string | undefined {
    const t = this.str(o, "type", at);
    if (t !== undefined && !(SUBJECT_TYPES as readonly string[]).includes(t)) this.bad(`${at}.type`, `must be one of ${SUBJECT_TYPES.join(", ")}`);
    return t;
  }

  template(o: Obj, key: string, at: string, pathVars: ReadonlySet<string> | undefined): ValueTemplate | undefined {
    const s = this.str(o, key, at);
    if (s === undefined) return undefined;
    try {
      const t = compileValue(s);
      for (const v of t.vars) {
        if (!pathVars?.has(v)) this.bad(`${at}.${key}`, `uses {${v}}, which the route's path does not capture`);
      }
      return t;
    } catch (err) {
      this.bad(`${at}.${key}`, (err as Error).message);
      return undefined;
    }
  }

  /** A source that reads a request header: only with set_by_sidecar, and with a warning. */
  headerSource(s: Obj, at: string, h: string | undefined): void {
    if (h === undefined) return;
    if (s[SET_BY_SIDECAR] !== true) {
      this.bad(
        at,
        `reads the subject from request header ${h}, which any client can send: add "${SET_BY_SIDECAR}": true only once Envoy sets that header ` +
          "itself from a verified identity and removes any copy the client sent (docs/mesh.md), or read the verified JWT from jwt_authn's metadata instead",
      );
      return;
    }
    this.warnings.push(
      `${this.source}: ${at}: the subject comes from request header ${h} (${SET_BY_SIDECAR}): authz trusts that Envoy sets it and strips any client copy; ` +
        "a client that can reach the service around Envoy, or a route where Envoy does not strip it, can act as anyone",
    );
  }
}

/** Validates a parsed mapping document; ConfigError lists every problem, each prefixed with `source` and the JSON path. */
export function parseMeshConfig(doc: unknown, source: string): MeshConfig {
  const r = new MeshReader(source);
  if (!isObj(doc)) r.bad("$", "must be a JSON object");
  const root: Obj = isObj(doc) ? doc : {};
  r.known(root, "$", ["$comment", "unknown_route", "subject", "www_authenticate", "consistency_header", "ok_headers", "routes", "rate_limit_service"]);

  const unknownRaw = root["unknown_route"] ?? "deny";
  if (unknownRaw !== "deny" && unknownRaw !== "allow") r.bad("$.unknown_route", 'must be "deny" or "allow"');
  const unknownRoute = unknownRaw === "allow" ? "allow" : "deny";
  const subject = parseSubjectSources(r, root["subject"] ?? DEFAULT_SUBJECT_SOURCES);
  const { routes, routesByName } = parseRoutes(r, root["routes"] ?? []);
  const rateLimitService = parseRateLimitService(r, r.section(root, "rate_limit_service", "$"));
  const wwwAuthenticate = r.str(root, "www_authenticate", "$") ?? 'Bearer realm="authz"';
  const consistencyHeader = r.optionalHeader(root, "consistency_header", "$", "x-authz-at-least-as-fresh");
  const okRaw = r.section(root, "ok_headers", "$");
  r.known(okRaw, "$.ok_headers", ["revision", "subject"]);
  const okHeaders = {
    revision: r.optionalHeader(okRaw, "revision", "$.ok_headers", "x-authz-revision"),
    subject: r.optionalHeader(okRaw, "subject", "$.ok_headers", "x-authz-subject"),
  };

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return Object.freeze({
    source,
    warnings: r.warnings,
    unknownRoute,
    subject,
    wwwAuthenticate,
    consistencyHeader,
    okHeaders,
    routes,
    routesByName,
    rateLimitService,
  });
}

function parseSubjectSources(r: MeshReader, raw: unknown): SubjectSource[] {
  const subject: SubjectSource[] = [];
  if (!Array.isArray(raw)) {
    r.bad("$.subject", "must be an array of subject sources");
    return subject;
  }
  raw.forEach((s: unknown, i) => {
    const at = `$.subject[${i}]`;
    if (!isObj(s)) return void r.bad(at, "must be an object");
    switch (s["from"]) {
      case "header":
        subject.push(parseHeaderSource(r, s, at));
        break;
      case "jwt":
        subject.push(parseJwtSource(r, s, at));
        break;
      case "peer":
        subject.push(parsePeerSource(r, s, at));
        break;
      default:
        r.bad(`${at}.from`, 'must be "header", "jwt" or "peer"');
    }
  });
  return subject;
}

function parseHeaderSource(r: MeshReader, s: Obj, at: string): SubjectSource {
  r.known(s, at, ["from", "header", "type", SET_BY_SIDECAR]);
  const h = r.header(s, "header", at);
  if (h === undefined && s["header"] === undefined) r.bad(`${at}.header`, "is required");
  r.headerSource(s, at, h);
  return { from: "header", header: h ?? DEFAULT_SUBJECT_HEADER, type: r.subjectType(s, at) };
}

function parseJwtSource(r: MeshReader, s: Obj, at: string): SubjectSource {
  r.known(s, at, ["from", "claim", "type", "metadata_namespace", "metadata_key", "header", SET_BY_SIDECAR]);
  const claim = r.str(s, "claim", at);
  const payloadHeader = r.header(s, "header", at);
  if (claim === undefined && s["claim"] === undefined) r.bad(`${at}.claim`, 'is required (e.g. "sub")');
  const source: SubjectSource = {
    from: "jwt",
    claim: (claim ?? "sub").split("."),
    type: r.subjectType(s, at),
    metadataNamespace: r.str(s, "metadata_namespace", at) ?? JWT_AUTHN_NAMESPACE,
    metadataKey: r.str(s, "metadata_key", at) ?? "jwt_payload",
    header: payloadHeader,
  };
  r.headerSource(s, at, payloadHeader);
  return source;
}

function parsePeerSource(r: MeshReader, s: Obj, at: string): SubjectSource {
  r.known(s, at, ["from", "principals"]);
  const table = s["principals"];
  const principals = new Map<string, { type: string; id: string }>();
  if (!isObj(table) || Object.keys(table).length === 0) {
    r.bad(`${at}.principals`, 'must map principals to subjects, e.g. {"spiffe://...": "principal:<uuid>"}');
    return { from: "peer", principals };
  }
  for (const [principal, ref] of Object.entries(table)) {
    const p = typeof ref === "string" ? splitRef(ref) : undefined;
    if (!p || !(SUBJECT_TYPES as readonly string[]).includes(p.type) || !UUID.test(p.id)) {
      r.bad(`${at}.principals["${principal}"]`, `must be "type:uuid" with type one of ${SUBJECT_TYPES.join(", ")}`);
    } else principals.set(principal, { type: p.type, id: p.id.toLowerCase() });
  }
  return { from: "peer", principals };
}

function parseRoutes(r: MeshReader, raw: unknown): { routes: MeshRoute[]; routesByName: Map<string, MeshRoute> } {
  const routes: MeshRoute[] = [];
  const routesByName = new Map<string, MeshRoute>();
  if (!Array.isArray(raw)) {
    r.bad("$.routes", "must be an array of routes");
    return { routes, routesByName };
  }
  raw.forEach((o: unknown, i) => {
    const at = `$.routes[${i}]`;
    if (!isObj(o)) return void r.bad(at, "must be an object");
    r.known(o, at, ["$comment", "name", "method", "path", "public", "permission", "resource", "rate_limit"]);
    const route = parseRoute(o, at, r);
    if (!route) return;
    if (route.name !== undefined) {
      if (routesByName.has(route.name)) r.bad(`${at}.name`, `"${route.name}" is used by an earlier route`);
      routesByName.set(route.name, route);
    }
    if (route.path === undefined && route.name === undefined) r.bad(at, "needs a path (table route) or a name (picked by context_extensions authz_route)");
    routes.push(route);
  });
  return { routes, routesByName };
}

function parseRateLimitService(r: MeshReader, rls: Obj): RateLimitServiceMapping {
  r.known(rls, "$.rate_limit_service", ["domains", "policy_key", "subject_keys"]);
  let domains: Set<string> | undefined;
  if (rls["domains"] !== undefined) {
    const d = rls["domains"];
    if (!Array.isArray(d) || d.length === 0 || !d.every((x) => typeof x === "string" && x !== ""))
      r.bad("$.rate_limit_service.domains", "must be a non-empty array of domain names");
    else domains = new Set(d as string[]);
  }
  const subjectKeys = new Map<string, RateSubjectType>();
  const keysRaw = rls["subject_keys"] ?? { user: "user", organization: "organization", key: "key" };
  if (!isObj(keysRaw)) r.bad("$.rate_limit_service.subject_keys", 'must map descriptor keys to "user", "organization" or "key"');
  else {
    for (const [k, t] of Object.entries(keysRaw)) {
      if (typeof t !== "string" || !(RATE_SUBJECT_TYPES as readonly string[]).includes(t)) {
        r.bad(`$.rate_limit_service.subject_keys.${k}`, 'must be "user", "organization" or "key"');
      } else subjectKeys.set(k, t as RateSubjectType);
    }
  }
  const policyKey = r.str(rls, "policy_key", "$.rate_limit_service") ?? "policy";
  if (subjectKeys.has(policyKey)) r.bad("$.rate_limit_service.policy_key", `"${policyKey}" is also a subject key`);
  return { domains, policyKey, subjectKeys };
}

function parseRoute(o: Obj, at: string, r: MeshReader): MeshRoute | undefined {
  let path: PathTemplate | undefined;
  const pathRaw = r.str(o, "path", at);
  if (pathRaw !== undefined) {
    try {
      path = compilePath(pathRaw);
    } catch (err) {
      r.bad(`${at}.path`, (err as Error).message);
      return undefined;
    }
  }
  let methods: Set<string> | undefined;
  const m = o["method"];
  if (m !== undefined && m !== "*") {
    const list = typeof m === "string" ? [m] : m;
    if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === "string" && METHODS.test(x.toUpperCase()))) {
      r.bad(`${at}.method`, 'must be a method ("GET"), a list of methods, or "*"');
    } else methods = new Set(list.map((x: string) => x.toUpperCase()));
  }
  const isPublic = o["public"] === true;
  if (o["public"] !== undefined && typeof o["public"] !== "boolean") r.bad(`${at}.public`, "must be true or false");
  const permission = r.str(o, "permission", at);
  if (permission !== undefined && permission.length > 128) r.bad(`${at}.permission`, "is longer than 128 characters");
  const vars = path?.vars;
  const resource = r.template(o, "resource", at, vars);
  if (resource?.usesSubject) r.bad(`${at}.resource`, "cannot use {subject}");
  if (!isPublic) {
    if (permission === undefined && o["permission"] === undefined) r.bad(`${at}.permission`, "is required unless the route is public");
    if (resource === undefined && o["resource"] === undefined) r.bad(`${at}.resource`, 'is required unless the route is public (e.g. "organization:{org}")');
  }
  if (resource) {
    // A literal resource can be checked now.
    const literal = resource.pieces.every((p) => p.kind === "text") ? splitRef(resource.source) : undefined;
    if (literal && (!(RESOURCE_TYPES as readonly string[]).includes(literal.type) || !UUID.test(literal.id))) {
      r.bad(`${at}.resource`, `must be "type:id" with type one of ${RESOURCE_TYPES.join(", ")} and a UUID id`);
    }
  }
  let rateLimit: RouteRateLimit | undefined;
  const rl = o["rate_limit"];
  if (rl !== undefined) {
    const rat = `${at}.rate_limit`;
    if (!isObj(rl)) r.bad(rat, "must be an object");
    else {
      r.known(rl, rat, ["policy", "subject", "organization", "cost"]);
      const policy = r.str(rl, "policy", rat);
      if (policy === undefined) r.bad(`${rat}.policy`, "is required");
      const subject = rl["subject"] === undefined ? compileValue("{subject}") : r.template(rl, "subject", rat, vars);
      const organization = r.template(rl, "organization", rat, vars);
      const cost = rl["cost"] ?? 1;
      if (typeof cost !== "number" || !Number.isInteger(cost) || cost < 0 || cost > MAX_COST)
        r.bad(`${rat}.cost`, `must be a whole number between 0 and ${MAX_COST}`);
      if (isPublic && (subject?.usesSubject || organization?.usesSubject))
        r.bad(rat, "a public route has no subject: count by a header or path variable instead");
      if (policy !== undefined && subject !== undefined) rateLimit = { policy, subject, organization, cost: typeof cost === "number" ? cost : 1 };
    }
  }
  const name = r.str(o, "name", at);
  return { name, methods, path, public: isPublic, permission, resource, rateLimit };
}

/** The mapping with no file: subject from the JWT jwt_authn verified, no routes (context_extensions only), unknown routes denied. */
export const DEFAULT_MESH_CONFIG: MeshConfig = parseMeshConfig({}, "(built-in defaults)");
