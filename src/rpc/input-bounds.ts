// The input bound at the RPC edge: one schema-driven walk over every decoded
// request (any message type, from its protobuf-es descriptor) and over the
// AuthZEN JSON bodies, before any handler work. No string may hold U+0000
// (Postgres text cannot store it) or a lone surrogate (it is not text); every
// string has a byte limit and every list, map and JSON container a count
// limit, unless the handler bounds that count itself with its own message.
// Every google.protobuf.Timestamp lies in its spec's range (0001..9999, nanos
// 0..999,999,999) and every JSON-ish number is finite (no NaN, no Infinity).
// A violation is INVALID_ARGUMENT naming the field path; values are never
// echoed (map keys in paths are cut to a short printable prefix).

import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { AuthzError, type ReasonOf } from "../errors.js";
import { WIRE_LIMITS } from "./wire-scan.js";

/** Default limits (docs/limits.md lists them with the per-field overrides). */
export const INPUT_LIMITS = {
  /** Bytes (UTF-8) of a string field. */
  stringBytes: 4096,
  /** Items of a list or entries of a map field. */
  items: 64,
  /** Bytes of a string inside JSON-ish data (google.protobuf.Struct, AuthZEN properties and context). */
  jsonStringBytes: 65_536,
  /** Items of a JSON array or keys of a JSON object. */
  jsonItems: 1024,
  /** Nesting of JSON-ish data. */
  jsonDepth: 16,
} as const;

/** Marks a count the handler bounds itself (its message names its own limit). */
export const HANDLER_BOUNDED = "handler";

interface FieldLimit {
  bytes?: number;
  items?: number | typeof HANDLER_BOUNDED;
}

const KIB = 1024;
const HTTP_VALUE = { bytes: 64 * KIB };

/** Overrides by full field name ("package.Message.field"). */
export const FIELD_LIMITS: Readonly<Record<string, FieldLimit>> = {
  // Counted by their handlers: CheckBulk and the write batches allow 1000.
  "authz.v1.CheckBulkRequest.items": { items: HANDLER_BOUNDED },
  "authz.v1.ManageRolesRequest.mutations": { items: HANDLER_BOUNDED },
  "authz.v1.ManageRateLimitsRequest.mutations": { items: HANDLER_BOUNDED },
  "authz.v1.ManageDirectoryRequest.mutations": { items: HANDLER_BOUNDED },
  // ShouldRateLimit bounds its descriptors in src/mesh/rate-limit.ts.
  "envoy.service.ratelimit.v3.RateLimitRequest.descriptors": { items: HANDLER_BOUNDED },
  // An HTTP request as Envoy reports it: Envoy's own header limits (60 KiB, 100 headers by default) fit.
  "envoy.service.auth.v3.AttributeContext.HttpRequest.headers": { bytes: 64 * KIB, items: 1024 },
  "envoy.service.auth.v3.AttributeContext.HttpRequest.path": HTTP_VALUE,
  "envoy.service.auth.v3.AttributeContext.HttpRequest.query": HTTP_VALUE,
  "envoy.service.auth.v3.AttributeContext.HttpRequest.fragment": HTTP_VALUE,
  "envoy.service.auth.v3.AttributeContext.HttpRequest.host": HTTP_VALUE,
  "envoy.config.core.v3.HeaderMap.headers": { items: 1024 },
  "envoy.config.core.v3.HeaderValue.value": HTTP_VALUE,
  "envoy.config.core.v3.HeaderValue.raw_value": HTTP_VALUE,
  "envoy.service.auth.v3.AttributeContext.Peer.certificate": HTTP_VALUE,
  "envoy.service.auth.v3.AttributeContext.Peer.labels": { items: 256 },
  "envoy.service.auth.v3.AttributeContext.context_extensions": { items: 256 },
  "google.protobuf.Any.value": HTTP_VALUE,
};

// ---- field paths, rendered only when something is wrong ----

type Path = { readonly parent: Path | undefined; readonly seg: string } | undefined;
const at = (parent: Path, seg: string): Path => ({ parent, seg });

/** A caller-chosen key as a path segment: printable ASCII, at most 32 characters. */
function keySeg(key: string): string {
  const clean = key.slice(0, 32).replace(/[^\x20-\x7e]|["\\]/g, "?");
  return `["${clean}${key.length > 32 ? "…" : ""}"]`;
}

function render(p: Path): string {
  const segs: string[] = [];
  for (let q = p; q; q = q.parent) segs.push(q.seg);
  let out = "";
  for (const s of segs.reverse()) out += s.startsWith("[") || out === "" ? s : `.${s}`;
  return out || "(the request)";
}

function fault(reason: ReasonOf<"INVALID_ARGUMENT">, p: Path, what: string): AuthzError {
  const field = render(p);
  return new AuthzError("INVALID_ARGUMENT", `${field} ${what}`, { reason, metadata: { field } });
}

// ---- strings and counts ----

const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** A string's violation, if any: too long (UTF-8 bytes), NUL, lone surrogate. */
export function stringFault(s: string, maxBytes: number, p: Path): AuthzError | undefined {
  if (s.length === 0) return undefined;
  // Each UTF-16 unit is at least one UTF-8 byte and at most three.
  if (s.length > maxBytes || (s.length * 3 > maxBytes && Buffer.byteLength(s, "utf8") > maxBytes)) {
    return fault("FIELD_TOO_LONG", p, `is longer than ${maxBytes} bytes`);
  }
  if (s.includes("\u0000")) return fault("INVALID_STRING", p, "contains a NUL character (U+0000), which is not allowed");
  if (!isWellFormed(s)) return fault("INVALID_STRING", p, "is not valid UTF-8 text (it holds a lone surrogate)");
  return undefined;
}

const countFault = (n: number, max: number, p: Path) => fault("TOO_MANY_ITEMS", p, `holds ${n} items; at most ${max} are allowed`);

// ---- google.protobuf.Timestamp ----

/** The range of google.protobuf.Timestamp (its spec): 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z. */
export const TIMESTAMP_SECONDS = { min: -62_135_596_800n, max: 253_402_300_799n } as const;
const TIMESTAMP_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z";

/** A Timestamp outside its spec's range (which JSON already refuses, binary does not), or with nanos outside 0..999,999,999. */
function timestampFault(t: { seconds: bigint; nanos: number }, p: Path): AuthzError | undefined {
  if (!Number.isInteger(t.nanos) || t.nanos < 0 || t.nanos > 999_999_999) return fault("INVALID_ARGUMENT", at(p, "nanos"), "must be from 0 to 999999999");
  if (t.seconds < TIMESTAMP_SECONDS.min || t.seconds > TIMESTAMP_SECONDS.max) return fault("INVALID_ARGUMENT", p, `must be a time from ${TIMESTAMP_RANGE}`);
  return undefined;
}

/**
 * The Date of a Timestamp the bound admitted, its nanos cut to milliseconds.
 * Not timestampDate: it rounds the nanos up, which turns
 * 9999-12-31T23:59:59.9995Z into year 10000, a time Postgres is never sent.
 */
export const timestampToDate = (t: { seconds: bigint; nanos: number }): Date => new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000));

// ---- JSON-ish data (google.protobuf.Struct fields, AuthZEN bodies) ----

export interface JsonLimits {
  stringBytes: number;
  items: number;
  depth: number;
  /** Limits inside the value of `key` of an object, when they differ (AuthZEN: properties and context). */
  within?: (key: string) => JsonLimits | undefined;
  /** Keys of an object whose array the handler counts itself. */
  handlerCounted?: ReadonlySet<string>;
}

export const JSON_LIMITS: JsonLimits = { stringBytes: INPUT_LIMITS.jsonStringBytes, items: INPUT_LIMITS.jsonItems, depth: INPUT_LIMITS.jsonDepth };

interface JsonWalk {
  /** Containers and values still allowed in this value (a whole-request budget, like wire-scan.ts's). */
  left: number;
}

function jsonNode(v: unknown, lim: JsonLimits, p: Path, depth: number, walk: JsonWalk, uncounted: boolean): AuthzError | undefined {
  if (--walk.left < 0) return fault("TOO_MANY_ELEMENTS", undefined, `holds more than ${WIRE_LIMITS.elements} values`);
  if (typeof v === "string") return stringFault(v, lim.stringBytes, p);
  // Struct's number_value is a double: NaN and ±Infinity decode from binary (and 1e999 from JSON) but have no JSON form.
  if (typeof v === "number" && !Number.isFinite(v)) return fault("INVALID_ARGUMENT", p, "must be a finite number (not NaN or Infinity)");
  if (typeof v !== "object" || v === null) return undefined;
  if (depth >= lim.depth) return fault("TOO_DEEP", p, `is nested deeper than ${lim.depth} levels`);
  if (Array.isArray(v)) {
    if (!uncounted && v.length > lim.items) return countFault(v.length, lim.items, p);
    for (let i = 0; i < v.length; i++) {
      const e = jsonNode(v[i], lim, at(p, `[${i}]`), depth + 1, walk, false);
      if (e) return e;
    }
    return undefined;
  }
  const keys = Object.keys(v);
  if (keys.length > lim.items) return countFault(keys.length, lim.items, p);
  for (const k of keys) {
    const kp = at(p, /^[A-Za-z_][A-Za-z0-9_]{0,31}$/.test(k) ? k : keySeg(k));
    const e =
      stringFault(k, INPUT_LIMITS.stringBytes, kp) ??
      jsonNode((v as Record<string, unknown>)[k], lim.within?.(k) ?? lim, kp, depth + 1, walk, lim.handlerCounted?.has(k) === true);
    if (e) return e;
  }
  return undefined;
}

/** The first violation in a JSON value: strings, keys, array and object sizes, nesting, and the number of values. */
export function jsonFault(v: unknown, lim: JsonLimits, p: Path = undefined): AuthzError | undefined {
  return jsonNode(v, lim, p, 0, { left: WIRE_LIMITS.elements }, false);
}

// ---- protobuf messages ----

type Check = (v: unknown, p: Path) => AuthzError | undefined;
interface Member {
  readonly local: string;
  /** Plain field: its name and check. */
  readonly name?: string;
  readonly check?: Check;
  /** Oneof: each case's field name and check, by case (local name). */
  readonly cases?: ReadonlyMap<string, { name: string; check: Check }>;
}

const plans = new WeakMap<DescMessage, Member[]>();

function limitOf(f: DescField): FieldLimit {
  return FIELD_LIMITS[`${f.parent.typeName}.${f.name}`] ?? {};
}

/** The check of one value of a field's element type; undefined when that type holds nothing to bound. */
function elementCheck(f: DescField, kind: "scalar" | "enum" | "message", scalar: ScalarType | undefined, message: DescMessage | undefined): Check | undefined {
  const bytes = limitOf(f).bytes ?? INPUT_LIMITS.stringBytes;
  if (kind === "scalar") {
    if (scalar === ScalarType.STRING) return (v, p) => stringFault(v as string, bytes, p);
    if (scalar === ScalarType.BYTES)
      return (v, p) => ((v as Uint8Array).length > bytes ? fault("FIELD_TOO_LONG", p, `is longer than ${bytes} bytes`) : undefined);
    return undefined;
  }
  if (kind === "enum" || !message) return undefined;
  switch (message.typeName) {
    case "google.protobuf.Struct":
    case "google.protobuf.Value":
    case "google.protobuf.ListValue":
      return (v, p) => jsonFault(v, JSON_LIMITS, p);
    case "google.protobuf.Timestamp":
      return (v, p) => (v === undefined ? undefined : timestampFault(v as { seconds: bigint; nanos: number }, p));
    case "google.protobuf.StringValue":
      return (v, p) => stringFault(v as string, bytes, p);
    case "google.protobuf.BytesValue":
      return (v, p) => ((v as Uint8Array).length > bytes ? fault("FIELD_TOO_LONG", p, `is longer than ${bytes} bytes`) : undefined);
  }
  if (message.typeName.startsWith("google.protobuf.") && message.typeName.endsWith("Value")) return undefined;
  const members = planOf(message);
  return (v, p) => (v === undefined ? undefined : messageFault(members, v as Record<string, unknown>, p));
}

function fieldCheck(f: DescField): Check | undefined {
  const lim = limitOf(f);
  switch (f.fieldKind) {
    case "scalar":
      return elementCheck(f, "scalar", f.scalar, undefined);
    case "enum":
      return undefined;
    case "message":
      return elementCheck(f, "message", undefined, f.message);
    case "list": {
      const each = elementCheck(f, f.listKind, f.listKind === "scalar" ? f.scalar : undefined, f.listKind === "message" ? f.message : undefined);
      const max = lim.items ?? INPUT_LIMITS.items;
      return (v, p) => {
        const list = v as unknown[];
        if (max !== HANDLER_BOUNDED && list.length > max) return countFault(list.length, max, p);
        if (!each) return undefined;
        for (let i = 0; i < list.length; i++) {
          const e = each(list[i], at(p, `[${i}]`));
          if (e) return e;
        }
        return undefined;
      };
    }
    case "map": {
      const each = elementCheck(f, f.mapKind, f.mapKind === "scalar" ? f.scalar : undefined, f.mapKind === "message" ? f.message : undefined);
      const max = lim.items ?? INPUT_LIMITS.items;
      return (v, p) => {
        const keys = Object.keys(v as object);
        if (max !== HANDLER_BOUNDED && keys.length > max) return countFault(keys.length, max, p);
        for (const k of keys) {
          const kp = at(p, keySeg(k));
          const e = stringFault(k, INPUT_LIMITS.stringBytes, kp) ?? each?.((v as Record<string, unknown>)[k], kp);
          if (e) return e;
        }
        return undefined;
      };
    }
  }
}

function planOf(desc: DescMessage): Member[] {
  let plan = plans.get(desc);
  if (plan) return plan;
  plan = [];
  // Registered before its fields are compiled, so recursive types end.
  plans.set(desc, plan);
  for (const m of desc.members) {
    if (m.kind === "oneof") {
      const cases = new Map<string, { name: string; check: Check }>();
      for (const f of m.fields) {
        const check = fieldCheck(f);
        if (check) cases.set(f.localName, { name: f.name, check });
      }
      if (cases.size > 0) plan.push({ local: m.localName, cases });
    } else {
      const check = fieldCheck(m);
      if (check) plan.push({ local: m.localName, name: m.name, check });
    }
  }
  return plan;
}

function messageFault(members: readonly Member[], msg: Record<string, unknown>, p: Path): AuthzError | undefined {
  for (const m of members) {
    const v = msg[m.local];
    if (v === undefined) continue;
    if (m.cases) {
      const o = v as { case?: string; value?: unknown };
      const c = o.case !== undefined ? m.cases.get(o.case) : undefined;
      const e = c?.check(o.value, at(p, c.name));
      if (e) return e;
      continue;
    }
    const e = (m.check as Check)(v, at(p, m.name as string));
    if (e) return e;
  }
  return undefined;
}

/**
 * A request the listener could not decode (or refused to, wire-scan.ts): the
 * listeners hand it to the guard in place of the message, so that it is
 * answered after authentication, like any other bad input.
 */
export class RequestFault {
  constructor(readonly error: AuthzError) {}
}

/** The error for a request of type `typeName` that cannot be decoded: `why` comes from the decoder, never from the input. */
export function undecodable(typeName: string, why: { reason: ReasonOf<"INVALID_ARGUMENT">; message: string }): AuthzError {
  const message = why.message.length > 200 ? `${why.message.slice(0, 200)}…` : why.message;
  return new AuthzError("INVALID_ARGUMENT", `the request is not a valid ${typeName} message: ${message}`, { reason: why.reason });
}

/** The first violation of the input bounds in a decoded request of type `desc`, or undefined. */
export function inputFault(desc: DescMessage, msg: unknown): AuthzError | undefined {
  return messageFault(planOf(desc), msg as Record<string, unknown>, undefined);
}
