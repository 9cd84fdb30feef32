// One call must not take the server down (issue 11, point 6): a single
// ShouldRateLimit with 20,000 descriptors used to exit the process (an
// ioredis auto-pipelining TypeError thrown from a nextTick callback), and
// 10,000 answered OVER_LIMIT for fresh keys (one Lua call too big to finish
// within the timeout). Calls are now bounded: descriptors and entries per
// ShouldRateLimit, counters per call everywhere, each with its own error.
// Against the built server as a process of its own, over a real gRPC
// socket, with the demo data and the built-in mesh mapping.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { mintApiKey } from "../../src/auth/api-keys.js";
import { createLogger } from "../../src/logger.js";
import { MAX_DESCRIPTOR_ENTRIES, MAX_DESCRIPTORS } from "../../src/mesh/rate-limit.js";
import { projectPath } from "../../src/paths.js";
import { createRedisStore } from "../../src/ratelimit/redis-store.js";
import { type Bucket, MAX_COUNTERS_PER_CALL } from "../../src/ratelimit/store.js";
import { importDocument } from "../../src/store/import.js";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { descriptor, loadEnvoyProtos, type RateLimitResponse } from "../support/envoy.js";
import { client, loadProtos, unary } from "../support/grpc-client.js";
import { rejection } from "../support/grpc-error.js";
import { type ServerProcess, startServerProcess } from "../support/server-child.js";

const HEIDI = "00000003-0000-4000-8000-000000000008"; // gets more policies than one call may spend
const MANY = MAX_COUNTERS_PER_CALL + 1;

let t: TestDatabase;
let server: ServerProcess;
let rls: grpc.Client & Record<string, Function>;
let rl: grpc.Client & Record<string, Function>;
let md: grpc.Metadata;

const limit = (req: Record<string, unknown>) => unary<RateLimitResponse>(rls, "ShouldRateLimit", req, md);
const loginDescriptors = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    descriptor([
      ["policy", "login-attempts"],
      ["key", `k-${i}-${randomUUID()}`],
    ]),
  );

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  await t.raw`insert into rate_limit_policies (name, scope, limit_count, window_sec)
              select 'many-' || g, 'user', 10, 60 from generate_series(1, ${MANY}::int) g`;
  await t.raw`insert into rate_limit_assignments (policy_id, user_id)
              select id, ${HEIDI}::uuid from rate_limit_policies where name like 'many-%'`;
  const { key, record } = mintApiKey("sidecar", ["ratelimit"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, 'sidecar', ${record.secretSha256}, ${record.scopes}, null)`;
  md = new grpc.Metadata();
  md.set("x-api-key", key);
  server = await startServerProcess({
    DATABASE_URL: t.url,
    REDIS_URL: inject("redisUrl"),
    AUTHZ_AUTH: "on",
    AUTHZ_REDIS_KEY_PREFIX: `authz:test:oversized:${randomUUID()}`,
  });
  rls = client(loadEnvoyProtos(), "envoy.service.ratelimit.v3.RateLimitService", server.grpcPort);
  rl = client(loadProtos(), "authz.v1.RateLimitService", server.grpcPort);
}, 60_000);

afterAll(async () => {
  rls?.close();
  rl?.close();
  await server?.stop();
  await t?.drop();
});

describe("ShouldRateLimit: bounded descriptors and entries", () => {
  // Past 50,000 elements the edge's wire scan refuses the message before it is decoded (TOO_MANY_ELEMENTS,
  // docs/limits.md); below that, the descriptor bound answers. Either way: INVALID_ARGUMENT and the process lives.
  it.each([20_000, 10_000])(
    "%i descriptors: INVALID_ARGUMENT before any work; the process lives and answers the next call",
    async (n) => {
      const f = await rejection(limit({ domain: "authz", descriptors: loginDescriptors(n) }));
      expect(f).toMatchObject({ code: "INVALID_ARGUMENT", domain: "authz" });
      expect(["TOO_MANY_ELEMENTS", "TOO_MANY_DESCRIPTORS"]).toContain(f.reason);
      expect(server.alive()).toBe(true);
      const next = await limit({ domain: "authz", descriptors: loginDescriptors(1) });
      expect(next).toMatchObject({ overall_code: "OK", statuses: [{ code: "OK", limit_remaining: 4 }] });
    },
    30_000,
  );

  it.each([MAX_DESCRIPTORS + 1, 1000])(
    "%i descriptors: INVALID_ARGUMENT TOO_MANY_DESCRIPTORS; the process lives and answers the next call",
    async (n) => {
      const f = await rejection(limit({ domain: "authz", descriptors: loginDescriptors(n) }));
      expect(f).toMatchObject({
        code: "INVALID_ARGUMENT",
        reason: "TOO_MANY_DESCRIPTORS",
        domain: "authz",
        metadata: { field: "descriptors", max: String(MAX_DESCRIPTORS) },
      });
      expect(f.message).toContain(`at most ${MAX_DESCRIPTORS} per call`);
      expect(server.alive()).toBe(true);
      const next = await limit({ domain: "authz", descriptors: loginDescriptors(1) });
      expect(next).toMatchObject({ overall_code: "OK", statuses: [{ code: "OK", limit_remaining: 4 }] });
    },
    30_000,
  );

  it(`${MAX_DESCRIPTORS} descriptors, the most allowed, are all answered by Redis`, async () => {
    const r = await limit({ domain: "authz", descriptors: loginDescriptors(MAX_DESCRIPTORS) });
    expect(r.overall_code).toBe("OK");
    expect(r.statuses).toHaveLength(MAX_DESCRIPTORS);
    expect(r.statuses.every((s) => s.code === "OK" && s.limit_remaining === 4)).toBe(true);
  });

  it(`a descriptor with more than ${MAX_DESCRIPTOR_ENTRIES} entries: INVALID_ARGUMENT TOO_MANY_DESCRIPTOR_ENTRIES naming it`, async () => {
    const entries: Array<[string, string]> = [
      ["policy", "login-attempts"],
      ...Array.from({ length: MAX_DESCRIPTOR_ENTRIES }, (_, i): [string, string] => [`x${i}`, "y"]),
    ];
    const f = await rejection(limit({ domain: "authz", descriptors: [...loginDescriptors(1), descriptor(entries)] }));
    expect(f).toMatchObject({ code: "INVALID_ARGUMENT", reason: "TOO_MANY_DESCRIPTOR_ENTRIES", metadata: { field: "descriptors[1].entries" } });
    expect(server.alive()).toBe(true);
  });
});

describe(`more than ${MAX_COUNTERS_PER_CALL} counters in one call`, () => {
  const heidi = { type: "user", id: HEIDI };
  const counters = () => unary<{ counters: Array<{ count: string }> }>(rl, "GetRateLimitCounters", { policy: "many-1", subject: heidi }, md);

  it("ConsumeRateLimit, GetRateLimitCounters and ShouldRateLimit: RESOURCE_EXHAUSTED TOO_MANY_COUNTERS, nothing spent", async () => {
    const expected = { code: "RESOURCE_EXHAUSTED", reason: "TOO_MANY_COUNTERS", metadata: { counters: String(MANY), max: String(MAX_COUNTERS_PER_CALL) } };
    expect(await rejection(unary(rl, "ConsumeRateLimit", { subject: heidi, cost: "1" }, md))).toMatchObject(expected);
    expect(await rejection(unary(rl, "GetRateLimitCounters", { subject: heidi }, md))).toMatchObject(expected);
    expect(await rejection(limit({ domain: "authz", descriptors: [descriptor([["user", HEIDI]])] }))).toMatchObject(expected);
    // One of them by name is an ordinary call: its counter shows that nothing was spent.
    expect((await counters()).counters).toMatchObject([{ count: "0" }]);
    expect(server.alive()).toBe(true);
  });
});

describe("the Redis store itself", () => {
  it("an oversized call comes back as failed counters: no ioredis error escapes to crash the process", async () => {
    const store = createRedisStore({
      url: inject("redisUrl"),
      cluster: false,
      keyPrefix: `authz:test:oversized:${randomUUID()}`,
      commandTimeoutMs: 1000,
      connectTimeoutMs: 1000,
      breakerFailures: 5,
      breakerCooldownMs: 1000,
      logger: createLogger("silent"),
    });
    try {
      expect(await store.ready(5000)).toBe(true);
      const bucket = (i: number): Bucket => ({
        policyId: 1,
        algorithm: "fixed_window",
        limit: 5,
        windowSec: 60,
        owner: { type: "key", id: `k${i}` },
        gating: true,
        failClosed: true,
      });
      const out = await store.consume(
        Array.from({ length: 20_000 }, (_, i) => bucket(i)),
        1,
      );
      expect(out.every((o) => !o.ok)).toBe(true);
      // The store still works, and its breaker did not count a call it never sent.
      expect(await store.consume([bucket(0)], 1)).toMatchObject([{ ok: true, report: { allowed: true, count: 1 } }]);
      expect(store.breaker).toBe("closed");
    } finally {
      await store.close();
    }
  });
});
