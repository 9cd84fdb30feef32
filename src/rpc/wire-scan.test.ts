import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { CheckRequestSchema } from "../../gen/authz/v1/permission_service_pb.js";
import { RateLimitRequestSchema } from "../../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { scanWire, WIRE_LIMITS } from "./wire-scan.js";

const check = toBinary(
  CheckRequestSchema,
  create(CheckRequestSchema, {
    subject: { type: "user", id: "00000003-0000-4000-8000-000000000001" },
    permission: "members.read",
    resource: { type: "organization", id: "00000002-0000-4000-8000-000000000001" },
    consistency: { requirement: { case: "atLeastAsFresh", value: "7" } },
    explain: true,
  }),
);
const bytes = (...b: number[]) => Uint8Array.from(b);
const join = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

describe("scanWire", () => {
  it("accepts what protobuf-es encodes, and unknown fields of every wire type (as newer clients send)", () => {
    expect(scanWire(CheckRequestSchema, check)).toBeUndefined();
    expect(scanWire(CheckRequestSchema, new Uint8Array(0))).toBeUndefined();
    const unknown = join(
      check,
      bytes(0xa0, 0x06, 0x96, 0x01), // field 100, varint 150
      bytes(0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8), // field 101, fixed64
      bytes(0xb2, 0x06, 0x03, 0xff, 0xfe, 0x00), // field 102, length-delimited (opaque: no UTF-8 rule)
      bytes(0xbd, 0x06, 1, 2, 3, 4), // field 103, fixed32
    );
    expect(scanWire(CheckRequestSchema, unknown)).toBeUndefined();
    expect(() => fromBinary(CheckRequestSchema, unknown)).not.toThrow();
  });

  it("accepts valid UTF-8 beyond ASCII in a string", () => {
    const text = toBinary(CheckRequestSchema, create(CheckRequestSchema, { permission: "lire.les-membres·é€😀" }));
    expect(scanWire(CheckRequestSchema, text)).toBeUndefined();
  });

  it("refuses what protobuf-es cannot decode, and more", () => {
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ["a length past the end", bytes(0x12, 0x05, 0x61), /runs past the end/],
      ["a truncated number", bytes(0x28, 0xff), /runs past the end/],
      ["an 11-byte number", bytes(0x28, ...Array(10).fill(0xff), 0x01), /longer than 10 bytes/],
      ["field number 0", bytes(0x00, 0x01), /number 0/],
      ["a group (field 99)", bytes(0x9b, 0x06, 0x9c, 0x06), /groups are not supported/],
      ["a known field sent as a group", bytes(0x0b, 0x0c), /wire type 3, expected 2/],
      ["wire type 7", bytes(0x0f), /wire type 7/],
      ["invalid UTF-8 in a string", bytes(0x12, 0x02, 0xc3, 0x28), /not valid UTF-8/],
      ["invalid UTF-8 after ASCII", bytes(0x12, 0x04, 0x61, 0x62, 0x63, 0xff), /not valid UTF-8/],
      ["a truncated multi-byte character after ASCII", bytes(0x12, 0x03, 0x61, 0x62, 0xe2), /not valid UTF-8/],
      ["a string field sent as a number", bytes(0x10, 0x01), /wire type 0, expected 2/],
      ["a message field sent as fixed32", bytes(0x0d, 1, 2, 3, 4), /wire type 5, expected 2/],
      ["a sub-message past its parent", bytes(0x0a, 0x02, 0x12, 0x05, 0x61), /runs past the end/],
    ];
    for (const [what, b, message] of cases) {
      const f = scanWire(CheckRequestSchema, b);
      expect({ what, reason: f?.reason }).toEqual({ what, reason: "MALFORMED_MESSAGE" });
      expect(f?.message).toMatch(message);
    }
  });

  it("bounds nesting and the number of elements before anything is decoded", () => {
    // google.protobuf.Value nested in list_value (field 6) → values (field 1): each level two messages deep.
    let v = bytes(0x08, 0x00);
    for (let i = 0; i < WIRE_LIMITS.depth; i++) {
      const list = join(bytes(0x0a, ...varint(v.length)), v);
      v = join(bytes(0x32, ...varint(list.length)), list);
    }
    expect(scanWire(ValueSchema, v)?.reason).toBe("TOO_DEEP");
    const bomb = new Uint8Array(2 * (WIRE_LIMITS.elements + 1)).map((_, i) => (i % 2 === 0 ? 0x12 : 0x00));
    expect(scanWire(RateLimitRequestSchema, bomb)).toEqual({
      reason: "TOO_MANY_ELEMENTS",
      message: `the request holds more than ${WIRE_LIMITS.elements} fields and list items`,
    });
    expect(scanWire(RateLimitRequestSchema, bomb.subarray(0, 2 * WIRE_LIMITS.elements))).toBeUndefined();
  });
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
