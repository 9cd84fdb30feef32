// Schema-driven random requests for the fuzz test: any protobuf-es message
// descriptor is filled from its fields (strings from pools of plausible
// values or hostile ones, numbers at their extremes, lists and maps of odd
// sizes), then encoded as binary or JSON and sometimes damaged on the wire.

import { create, type DescField, type DescMessage, ScalarType, toBinary, toJsonString } from "@bufbuild/protobuf";
import { hostileString, type Rand } from "./fuzz-random.js";

/** Plausible values for a string field (by proto field name; for map values, by key too). */
export type Pools = (field: string, key?: string) => readonly string[] | undefined;

/** Stands for a string whose bytes are replaced by invalid UTF-8 after encoding (same length: 11 bytes). */
const MARKER = "\u0001\u0002BADUTF8\u0002\u0001";
const BAD_UTF8 = Uint8Array.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28]);

interface Gen {
  r: Rand;
  pools: Pools;
  /** Huge strings left for this message (keeps messages from growing without bound). */
  huge: number;
  hostile: number;
  /** Inside a long list: no further long lists, no nesting past one more level. */
  shallow: boolean;
}

function stringFor(g: Gen, field: string, key?: string): string {
  const { r } = g;
  if (r.chance(0.05)) return MARKER;
  if (r.chance(g.hostile)) {
    const s = hostileString(r, r.pick(g.pools(field, key) ?? ["x"]));
    if (s.length <= 4096) return s;
    if (g.huge > 0) {
      g.huge--;
      return s;
    }
    return `${s.slice(0, 8)}\u0000`;
  }
  const pool = g.pools(field, key);
  return pool && pool.length > 0 ? r.pick(pool) : r.pick(["", "a", "x-y", "user", "1"]);
}

const INT32 = [0, 1, -1, 2_147_483_647, -2_147_483_648, 7, 100, 1001];
const UINT32 = [0, 1, 4_294_967_295, 5, 1000];
const INT64 = [0n, 1n, -1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n, 40n, 1_000_000n];
const UINT64 = [0n, 1n, 18_446_744_073_709_551_615n, 3n];

function scalar(g: Gen, t: ScalarType, field: string, key?: string): unknown {
  const { r } = g;
  switch (t) {
    case ScalarType.STRING:
      return stringFor(g, field, key);
    case ScalarType.BYTES:
      return r.bytes(r.pick([0, 3, 64, 5000]));
    case ScalarType.BOOL:
      return r.chance(0.5);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return r.pick(INT32);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return r.pick(UINT32);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return r.pick(INT64);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return r.pick(UINT64);
    default:
      return r.pick([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 1e308]);
  }
}

function json(g: Gen, depth: number): unknown {
  const { r } = g;
  const k = depth > 3 ? r.int(4) : r.int(6);
  if (k === 0) return r.chance(0.5) ? null : r.chance(0.5);
  if (k === 1) return r.pick([0, -1, 1e308, 3.25]);
  if (k <= 3) return stringFor(g, "json");
  if (k === 4) return Array.from({ length: r.int(4) }, () => json(g, depth + 1));
  return jsonObject(g, depth + 1);
}

function jsonObject(g: Gen, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const n = g.r.int(4);
  for (let i = 0; i < n; i++) out[stringFor(g, "json_key")] = json(g, depth);
  if (g.r.chance(0.5)) out["sub"] = stringFor(g, "sub");
  return out;
}

/** A message field's init value; well-known types in their protobuf-es v2 field form. */
function messageValue(g: Gen, desc: DescMessage, depth: number, field: string): unknown {
  const { r } = g;
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
    case "google.protobuf.Duration":
      return {
        seconds: r.pick([0n, 1n, -1n, 60n, 253_402_300_800n, -62_135_596_801n, 9_223_372_036_854_775_807n]),
        nanos: r.pick([0, 1, 999_999_999, -1, 2_000_000_000]),
      };
    case "google.protobuf.Struct":
      return jsonObject(g, depth);
    case "google.protobuf.Value":
      return json(g, depth);
    case "google.protobuf.ListValue":
      return [json(g, depth)];
  }
  if (desc.typeName.startsWith("google.protobuf.") && desc.typeName.endsWith("Value") && desc.fields.length === 1) {
    const f = desc.fields[0] as DescField & { fieldKind: "scalar" };
    return scalar(g, f.scalar, field);
  }
  return depth > 6 || (g.shallow && depth > 2) ? {} : randomInit(g, desc, depth + 1);
}

function listSize(g: Gen, depth: number): number {
  const { r } = g;
  if (g.shallow) return r.pick([0, 1, 2]);
  // Long lists only at the top (items, mutations, descriptors): they test the count limits; deeper they only cost generating.
  if (depth === 0 && r.chance(0.04)) return r.pick([50, 1001, 1500]);
  if (depth <= 2 && r.chance(0.02)) return r.pick([65, 257, 1025]);
  return r.pick([0, 1, 1, 2, 3]);
}

function valueFor(g: Gen, f: DescField, depth: number): unknown {
  switch (f.fieldKind) {
    case "scalar":
      return scalar(g, f.scalar, f.name);
    case "enum":
      return g.r.chance(0.9) ? g.r.pick(f.enum.values).number : 99;
    case "message":
      return messageValue(g, f.message, depth, f.name);
    case "list": {
      const n = listSize(g, depth);
      const item = () =>
        f.listKind === "scalar"
          ? scalar(g, f.scalar, f.name)
          : f.listKind === "enum"
            ? g.r.pick(f.enum.values).number
            : messageValue(g, f.message, depth, f.name);
      if (n > 100) g.hostile = Math.min(g.hostile, 0.02);
      // The items of a long list are shallow: a list of 1500 items of 1500 items each would take seconds to build.
      const deep = g.shallow;
      if (n > 100) g.shallow = true;
      const out = Array.from({ length: n }, item);
      g.shallow = deep;
      return out;
    }
    case "map": {
      const out: Record<string, unknown> = {};
      const n = listSize(g, depth);
      for (let i = 0; i < n; i++) {
        const k = String(f.mapKey === ScalarType.STRING ? stringFor(g, `${f.name}.key`) : scalar(g, f.mapKey, f.name));
        out[k] =
          f.mapKind === "scalar"
            ? scalar(g, f.scalar, f.name, k)
            : f.mapKind === "enum"
              ? g.r.pick(f.enum.values).number
              : messageValue(g, f.message, depth, f.name);
      }
      return out;
    }
  }
}

function randomInit(g: Gen, desc: DescMessage, depth: number): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const m of desc.members) {
    if (!g.r.chance(depth === 0 ? 0.85 : 0.7)) continue;
    if (m.kind === "oneof") {
      const f = g.r.pick(m.fields);
      init[m.localName] = { case: f.localName, value: valueFor(g, f, depth) };
    } else {
      init[m.localName] = valueFor(g, m, depth);
    }
  }
  return init;
}

/** A random message of `desc`; `hostile` is the share of string fields given a hostile value. */
export function randomMessage(desc: DescMessage, r: Rand, pools: Pools, hostile: number) {
  return create(desc, randomInit({ r, pools, huge: 1, hostile, shallow: false }, desc, 0) as never);
}

const MARKER_BYTES = Buffer.from(MARKER);

function replaceMarkers(bytes: Uint8Array): Uint8Array {
  const out = Buffer.from(bytes);
  for (let i = out.indexOf(MARKER_BYTES); i >= 0; i = out.indexOf(MARKER_BYTES, i + MARKER_BYTES.length)) out.set(BAD_UTF8, i);
  return out;
}

/** The message in the binary format, sometimes damaged: invalid UTF-8 in strings, flipped bytes, truncation, garbage, element bombs, oversize. */
export function binaryBody(desc: DescMessage, msg: ReturnType<typeof randomMessage>, r: Rand): Uint8Array {
  // Rarely, bodies no encoder makes: just over 50,000 empty fields (cheap to send, slow to decode), or one over the size limit.
  if (r.chance(0.005)) return Buffer.alloc(2 * (50_001 + r.int(20_000)), Uint8Array.of(0x7a, 0x00));
  if (r.chance(0.003)) return Buffer.concat([Uint8Array.of(0x7a, 0x80, 0x80, 0xc0, 0x02), Buffer.alloc(5 << 20)]);
  const bytes = replaceMarkers(toBinary(desc, msg));
  switch (r.int(10)) {
    case 0: {
      const out = Uint8Array.from(bytes);
      for (let i = 0; i < 1 + r.int(4) && out.length > 0; i++) out[r.int(out.length)] = r.int(256);
      return out;
    }
    case 1:
      return bytes.subarray(0, r.int(bytes.length + 1));
    case 2:
      return r.bytes(r.pick([0, 1, 2, 7, 100]));
    case 3:
      return Buffer.concat([bytes, r.bytes(1 + r.int(8))]);
    default:
      return bytes;
  }
}

const JSON_MARKER = JSON.stringify(MARKER).slice(1, -1);

/** The message in the JSON format, sometimes damaged: lone surrogates, wrong types, truncation, deep nesting. */
export function jsonBody(desc: DescMessage, msg: ReturnType<typeof randomMessage>, r: Rand): string {
  let text: string;
  try {
    text = toJsonString(desc, msg);
  } catch {
    text = "{}";
  }
  text = text.replaceAll(JSON_MARKER, "\\ud800\\u0000");
  switch (r.int(12)) {
    case 0:
      return text.slice(0, r.int(text.length + 1));
    case 1:
      return `${"[".repeat(5000)}${"]".repeat(5000)}`;
    case 2:
      return text.replace(/"[^"]*"/, '{"a":1}');
    case 3:
      return text.replace(/:\s*"/, ':12345,"zz":"');
    case 4:
      return r.pick(["", "null", "[]", '"x"', '{"\u0000":1}', '{"subject":{"id":"\\u0000"}}']);
    default:
      return text;
  }
}
