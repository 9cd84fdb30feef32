// The promise of src/rpc/wire-scan.ts, checked at random: whatever it
// accepts, protobuf-es decodes (so no listener ever answers INTERNAL for a
// body it let through), and what protobuf-es encodes, it accepts. Random
// requests of every RPC, damaged on the wire at random; and Envoy's
// CheckRequests as Envoy's own (fuller) protos encode them. No servers.
import { randomInt } from "node:crypto";
import { type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AdminService } from "../gen/authz/v1/admin_service_pb.js";
import { PermissionService } from "../gen/authz/v1/permission_service_pb.js";
import { RateLimitService } from "../gen/authz/v1/rate_limit_service_pb.js";
import { Authorization, CheckRequestSchema } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { RateLimitService as EnvoyRateLimitService } from "../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { scanWire } from "../src/rpc/wire-scan.js";
import { checkRequest, loadEnvoyProtos } from "./support/envoy.js";
import { binaryBody, randomMessage } from "./support/fuzz-messages.js";
import { FUZZ_POOLS } from "./support/fuzz-pools.js";
import { createRand, type Rand } from "./support/fuzz-random.js";

const SEED = process.env.AUTHZ_FUZZ_SEED ? Number(process.env.AUTHZ_FUZZ_SEED) : randomInt(2 ** 31);
const PER_TYPE = 150;
const INPUTS: DescMessage[] = [
  ...new Set([PermissionService, AdminService, RateLimitService, Health, Authorization, EnvoyRateLimitService].flatMap((s) => s.methods.map((m) => m.input))),
];

const decodes = (desc: DescMessage, b: Uint8Array) => {
  try {
    fromBinary(desc, b);
    return true;
  } catch {
    return false;
  }
};

/** More damage than binaryBody's: a random field appended, bytes inserted or dropped. */
function damage(b: Uint8Array, r: Rand): Uint8Array {
  const at = r.int(b.length + 1);
  switch (r.int(3)) {
    case 0:
      return Buffer.concat([b, Uint8Array.of(r.int(256)), r.bytes(r.int(6))]);
    case 1:
      return Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(3)), b.subarray(at)]);
    default:
      return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r.int(3)))]);
  }
}

describe("wire-scan against protobuf-es", () => {
  it(`accepts only what decodes, and accepts what encodes (${INPUTS.length} request types, seed printed)`, () => {
    console.log(`wire-scan seed ${SEED} (AUTHZ_FUZZ_SEED replays)`);
    let accepted = 0;
    let refused = 0;
    for (const desc of INPUTS) {
      for (let i = 0; i < PER_TYPE; i++) {
        const r = createRand((SEED + Math.imul(i, 0x9e3779b1) + desc.typeName.length) >>> 0);
        const msg = randomMessage(desc, r, FUZZ_POOLS, 0.2);
        const clean = toBinary(desc, msg);
        const fault = scanWire(desc, clean);
        // A clean encoding is refused only for its size in elements.
        if (fault) expect({ type: desc.typeName, i, reason: fault.reason }).toEqual({ type: desc.typeName, i, reason: "TOO_MANY_ELEMENTS" });
        for (const b of [binaryBody(desc, msg, r), damage(clean, r), damage(binaryBody(desc, msg, r), r)]) {
          const ok = scanWire(desc, b) === undefined;
          if (ok) {
            accepted++;
            expect({ type: desc.typeName, i, decodes: decodes(desc, b) }).toEqual({ type: desc.typeName, i, decodes: true });
          } else refused++;
        }
      }
    }
    console.log(`wire-scan: ${accepted} damaged or clean bodies accepted (all decoded), ${refused} refused`);
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  }, 60_000);

  it("refuses a tag longer than 5 bytes, as protobuf-es does, even when its low bits would make a small tag (seed 181791002)", () => {
    const desc = PermissionService.method.streamLookupSubjects.input;
    // A 7-byte tag varint (its first 5 bytes alone read as a valid uint32), then a varint value.
    const body = Uint8Array.from([0xc5, 0xf1, 0x92, 0xd0, 0x82, 0xe8, 0x6f, 0x05, 0x16, 0xed, 0xa5]);
    expect(decodes(desc, body)).toBe(false);
    expect(scanWire(desc, body)?.reason).toBe("MALFORMED_MESSAGE");
    // The longest tag protobuf-es reads: 5 bytes, the last at most 0x0f (field 536870911, wire type 0), then a value.
    const longest = Uint8Array.from([0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    expect(decodes(desc, longest)).toBe(true);
    expect(scanWire(desc, longest)).toBeUndefined();
  });

  it("accepts Envoy's CheckRequests as Envoy's fuller protos encode them (fields authz does not declare included)", () => {
    const protos = loadEnvoyProtos() as unknown as {
      envoy: { service: { auth: { v3: { Authorization: { service: { Check: { requestSerialize(v: unknown): Buffer } } } } } } };
    };
    const encode = protos.envoy.service.auth.v3.Authorization.service.Check.requestSerialize;
    const requests = [
      checkRequest({ path: "/orgs/x/members?page=2", headers: { "x-authz-subject": "user:1", cookie: "a=b" } }),
      checkRequest({ method: "POST", path: "/login", principal: "spiffe://a/b", contextExtensions: { authz_route: "r" } }),
      checkRequest({ path: "/", jwtPayload: { sub: "u", groups: ["a", "b"], nested: { deep: [1, { x: null }] } } }),
    ];
    for (const req of requests) {
      const b = encode(req);
      expect(scanWire(CheckRequestSchema, b)).toBeUndefined();
      expect(decodes(CheckRequestSchema, b)).toBe(true);
    }
  });
});
