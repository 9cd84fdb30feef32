// A cheap pass over a request's protobuf bytes, by its schema, before they
// are decoded. It answers two questions protobuf-es can only answer by
// building the whole message: is it well formed (every length inside its
// parent, known fields with their declared wire type, valid UTF-8 in every
// string, no groups, bounded nesting), and is it small in elements? Decoding
// costs about as much per element as per kilobyte: 4 MiB of empty
// sub-messages took seconds of one core here, so the element count is
// bounded before any decoding starts. Whatever this pass accepts,
// protobuf-es decodes.

import { isUtf8 } from "node:buffer";
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";

/** Limits of the pass (docs/limits.md). */
export const WIRE_LIMITS = {
  /** Fields on the wire (tags) in one request, at every depth; a batch of 1000 writes needs about 15,000. */
  elements: 50_000,
  /** Nesting of messages (protobuf-es itself stops at 100). */
  depth: 64,
} as const;

export interface WireFault {
  reason: "MALFORMED_MESSAGE" | "TOO_MANY_ELEMENTS" | "TOO_DEEP";
  message: string;
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

/** How one field number is read: its wire type, and what a length-delimited value holds. */
type Slot =
  | { readonly wire: typeof VARINT | typeof I64 | typeof I32; readonly packable: boolean }
  | { readonly wire: typeof LEN; readonly holds: "bytes" | "string" }
  | { readonly wire: typeof LEN; readonly holds: "message"; readonly plan: () => Plan };
type Plan = ReadonlyMap<number, Slot>;

const plans = new WeakMap<DescMessage, Plan>();

function scalarSlot(t: ScalarType, packable: boolean): Slot {
  switch (t) {
    case ScalarType.STRING:
      return { wire: LEN, holds: "string" };
    case ScalarType.BYTES:
      return { wire: LEN, holds: "bytes" };
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return { wire: I64, packable };
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return { wire: I32, packable };
    default:
      return { wire: VARINT, packable };
  }
}

const messageSlot = (desc: DescMessage): Slot => ({ wire: LEN, holds: "message", plan: () => planOf(desc) });

function slotOf(f: DescField): Slot {
  switch (f.fieldKind) {
    case "scalar":
      return scalarSlot(f.scalar, false);
    case "enum":
      return { wire: VARINT, packable: false };
    case "message":
      return messageSlot(f.message);
    case "list":
      if (f.listKind === "message") return messageSlot(f.message);
      return f.listKind === "enum" ? { wire: VARINT, packable: true } : scalarSlot(f.scalar, true);
    case "map": {
      const value = f.mapKind === "message" ? messageSlot(f.message) : f.mapKind === "enum" ? scalarSlot(ScalarType.INT32, false) : scalarSlot(f.scalar, false);
      // A map entry is a message with the key in field 1 and the value in field 2.
      const entry: Plan = new Map([
        [1, scalarSlot(f.mapKey, false)],
        [2, value],
      ]);
      return { wire: LEN, holds: "message", plan: () => entry };
    }
  }
}

function planOf(desc: DescMessage): Plan {
  let plan = plans.get(desc);
  if (!plan) {
    plan = new Map(desc.fields.map((f) => [f.number, slotOf(f)]));
    plans.set(desc, plan);
  }
  return plan;
}

class Stop extends Error {
  constructor(readonly fault: WireFault) {
    super(fault.message);
  }
}

const malformed = (message: string) => new Stop({ reason: "MALFORMED_MESSAGE", message });

/**
 * Whether buf[from, to) is valid UTF-8. ASCII (every byte below 0x80, the
 * usual case: ids, keys, types) is valid as it stands and is checked in
 * place; anything else goes to node:buffer's isUtf8.
 */
function validUtf8(buf: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if ((buf[i] as number) >= 0x80) return isUtf8(buf.subarray(from, to));
  return true;
}

/** Reads the wire format of one request, counting elements; throws Stop. */
class Scan {
  pos = 0;
  elements = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly maxElements: number,
    readonly maxDepth: number,
  ) {}

  varint(end: number): number {
    let v = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) throw malformed("a number runs past the end of its message");
      const b = this.buf[this.pos++] as number;
      if (i < 5) v += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) return v;
    }
    throw malformed("a number is longer than 10 bytes");
  }

  length(end: number): number {
    const n = this.varint(end);
    if (n > end - this.pos) throw malformed("a length-delimited field runs past the end of its message");
    return n;
  }

  fixed(n: number, end: number): void {
    if (n > end - this.pos) throw malformed("a fixed-width field runs past the end of its message");
    this.pos += n;
  }

  message(plan: Plan | undefined, end: number, depth: number): void {
    if (depth > this.maxDepth) throw new Stop({ reason: "TOO_DEEP", message: `messages are nested deeper than ${this.maxDepth} levels` });
    while (this.pos < end) {
      const at = this.pos;
      const tag = this.varint(end);
      // As protobuf-es reads a tag: a uint32 in at most 5 bytes (a longer varint, even of a small value, is refused).
      if (tag > 0xffff_ffff || this.pos - at > 5) throw malformed("a field tag is out of range");
      const no = Math.floor(tag / 8);
      const wire = tag % 8;
      if (no === 0) throw malformed("a field has number 0");
      if (++this.elements > this.maxElements) {
        throw new Stop({ reason: "TOO_MANY_ELEMENTS", message: `the request holds more than ${this.maxElements} fields and list items` });
      }
      const slot = plan?.get(no);
      if (slot) this.field(slot, no, wire, end, depth);
      else this.unknown(no, wire, end);
    }
  }

  unknown(no: number, wire: number, end: number): void {
    if (wire === VARINT) this.varint(end);
    else if (wire === I64) this.fixed(8, end);
    else if (wire === I32) this.fixed(4, end);
    else if (wire === LEN) {
      const n = this.length(end);
      this.pos += n;
    } else throw malformed(`field ${no} has wire type ${wire}, which is not accepted (groups are not supported)`);
  }

  field(slot: Slot, no: number, wire: number, end: number, depth: number): void {
    if (slot.wire !== LEN) {
      if (wire === slot.wire) return slot.wire === VARINT ? void this.varint(end) : this.fixed(slot.wire === I64 ? 8 : 4, end);
      if (wire === LEN && slot.packable) return this.packed(slot.wire, end);
      throw malformed(`field ${no} has wire type ${wire}, expected ${slot.wire}`);
    }
    if (wire !== LEN) throw malformed(`field ${no} has wire type ${wire}, expected ${LEN}`);
    const n = this.length(end);
    const stop = this.pos + n;
    if (slot.holds === "message") return this.message(slot.plan(), stop, depth + 1);
    if (slot.holds === "string" && !validUtf8(this.buf, this.pos, stop)) throw malformed(`field ${no} is a string but not valid UTF-8`);
    this.pos = stop;
  }

  packed(wire: number, end: number): void {
    const n = this.length(end);
    const stop = this.pos + n;
    while (this.pos < stop) {
      if (++this.elements > this.maxElements) {
        throw new Stop({ reason: "TOO_MANY_ELEMENTS", message: `the request holds more than ${this.maxElements} fields and list items` });
      }
      if (wire === VARINT) this.varint(stop);
      else this.fixed(wire === I64 ? 8 : 4, stop);
    }
  }
}

/** Whether `bytes` is a well-formed, bounded `desc` message; the fault when not. */
export function scanWire(desc: DescMessage, bytes: Uint8Array, limits: { elements: number; depth: number } = WIRE_LIMITS): WireFault | undefined {
  const s = new Scan(bytes, limits.elements, limits.depth);
  try {
    s.message(planOf(desc), bytes.length, 1);
    return undefined;
  } catch (err) {
    if (err instanceof Stop) return err.fault;
    throw err;
  }
}
