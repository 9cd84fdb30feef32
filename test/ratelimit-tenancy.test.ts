// Rate limits and tenant-bound credentials (issue 11, point 8): a key bound
// to tenant Acme may spend and read only the counters of Acme's
// organizations (and a user's, with an Acme organization as the context);
// never another tenant's, an unknown organization's, a key's or a global
// counter. ConsumeRateLimit, GetRateLimitCounters and Envoy's
// ShouldRateLimit over gRPC against the real server (createApp, auth on,
// demo data, Redis under a prefix of its own). A refusal is
// PERMISSION_DENIED, reason OTHER_TENANT, decided before Redis is touched,
// and its message names nothing of another tenant.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { mintApiKey } from "../src/auth/api-keys.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import { descriptor, loadEnvoyProtos, type RateLimitResponse } from "./support/envoy.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";
import { type GrpcFailure, rejection } from "./support/grpc-error.js";

const { tenant: T, org: O, user: U } = DEMO;
const OTHER_TENANT = "0000aaaa-0000-4000-8000-000000000001";
const OTHER_ORG = "0000aaaa-0000-4000-8000-000000000002";
const UNKNOWN_ORG = "0000aaaa-0000-4000-8000-0000000000ff";
/** A user with a place only in Globex's organization, with a per-user policy of its own. */
const U3 = "0000aaaa-0000-4000-8000-000000000003";

let t: TestDatabase;
let app: App;
let rl: grpc.Client & Record<string, Function>;
let rls: grpc.Client & Record<string, Function>;
const md: Record<"acme" | "globex" | "unbound", grpc.Metadata> = { acme: new grpc.Metadata(), globex: new grpc.Metadata(), unbound: new grpc.Metadata() };

async function addKey(name: string, tenant: string | null): Promise<grpc.Metadata> {
  const { key, record } = mintApiKey(name, ["ratelimit"], tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  const m = new grpc.Metadata();
  m.set("x-api-key", key);
  return m;
}

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  await t.raw`insert into tenants (id, name, slug) values (${OTHER_TENANT}, 'Globex', 'globex')`;
  await t.raw`insert into organizations (id, tenant_id, name, slug) values (${OTHER_ORG}, ${OTHER_TENANT}, 'Globex Labs', 'globex-labs')`;
  // Fixed windows of a day: their counts do not drain while the test runs, so "nothing spent" is exact.
  await t.raw`insert into rate_limit_policies (name, scope, limit_count, window_sec) values ('org-daily', 'organization', 1000, 86400)`;
  await t.raw`insert into rate_limit_assignments (policy_id, org_id) select id, ${OTHER_ORG}::uuid from rate_limit_policies where name = 'org-daily'`;
  // A global policy: one counter shared by everybody it applies to; assigned to acme-sales.
  await t.raw`insert into rate_limit_policies (name, scope, limit_count, window_sec) values ('everyone', 'global', 1000, 86400)`;
  await t.raw`insert into rate_limit_assignments (policy_id, org_id) select id, ${O.sales}::uuid from rate_limit_policies where name = 'everyone'`;
  await t.raw`insert into users (id, email) values (${U3}, 'u3@globex.example')`;
  await t.raw`insert into user_organizations (user_id, organization_id) values (${U3}, ${OTHER_ORG})`;
  await t.raw`insert into rate_limit_policies (name, scope, limit_count, window_sec) values ('user-limit', 'user', 20, 86400)`;
  await t.raw`insert into rate_limit_assignments (policy_id, user_id) select id, ${U3}::uuid from rate_limit_policies where name = 'user-limit'`;
  md.acme = await addKey("acme-limiter", T.acme);
  md.globex = await addKey("globex-limiter", OTHER_TENANT);
  md.unbound = await addKey("limiter", null);
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      REDIS_URL: inject("redisUrl"),
      AUTHZ_REDIS_KEY_PREFIX: `authz:test:tenancy:${randomUUID()}`,
      AUTHZ_AUTH: "on",
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
    }),
    createLogger("silent"),
  );
  const { grpcPort } = await app.listen();
  await app.ready;
  rl = client(loadProtos(), "authz.v1.RateLimitService", grpcPort);
  rls = client(loadEnvoyProtos(), "envoy.service.ratelimit.v3.RateLimitService", grpcPort);
}, 60_000);

afterAll(async () => {
  rl?.close();
  rls?.close();
  await app?.stop();
  await t?.drop();
});

interface Consumed {
  allowed: boolean;
  source: string;
  remaining: string;
  policies: Array<{ policy: string; counter_subject: { type: string; id: string } }>;
}
const consume = (who: keyof typeof md, req: Record<string, unknown>) => unary<Consumed>(rl, "ConsumeRateLimit", { cost: "1", ...req }, md[who]);
const counters = (who: keyof typeof md, req: Record<string, unknown>) =>
  unary<{ counters: Array<{ policy: string; count: string; limit: string }> }>(rl, "GetRateLimitCounters", req, md[who]);
const limit = (who: keyof typeof md, descriptors: unknown[]) => unary<RateLimitResponse>(rls, "ShouldRateLimit", { domain: "authz", descriptors }, md[who]);
const org = (id: string) => ({ type: "organization", id });
const user = (id: string) => ({ type: "user", id });

/** A refusal that names nothing of the other tenant. */
function expectOtherTenant(f: GrpcFailure): void {
  expect(f).toMatchObject({ code: "PERMISSION_DENIED", reason: "OTHER_TENANT", domain: "authz" });
  for (const secret of [OTHER_TENANT, "Globex", "globex"]) expect(f.message).not.toContain(secret);
}

describe("a credential bound to tenant Acme", () => {
  it("spends and reads its own organizations' counters, and a user's with an Acme organization as context", async () => {
    // api-per-org is a token bucket (1000 a minute): right after one unit, 999 are left.
    expect(await consume("acme", { subject: org(O.eng) })).toMatchObject({ allowed: true, source: "RATE_LIMIT_DECISION_SOURCE_STORE", remaining: "999" });
    const both = await consume("acme", { subject: user(U.bob), organization_id: O.eng });
    expect(both.policies.map((p) => [p.policy, p.counter_subject.type])).toEqual([
      ["api-per-user", "user"],
      ["api-per-org", "organization"],
    ]);
    // The bucket drains as time passes (16 units a second), so only its identity is checked here.
    expect((await counters("acme", { subject: org(O.eng) })).counters).toMatchObject([{ policy: "api-per-org", limit: "1000" }]);
    expect(
      await limit("acme", [
        descriptor([["organization", O.eng]]),
        descriptor([
          ["user", U.bob],
          ["organization", O.eng],
        ]),
      ]),
    ).toMatchObject({
      overall_code: "OK",
      statuses: [{ code: "OK", current_limit: { name: "api-per-org" } }, { code: "OK" }],
    });
    // A key without a named policy touches no counter: unlimited, as for anyone.
    expect(await consume("acme", { subject: { type: "key", id: "k" } })).toMatchObject({ allowed: true, source: "RATE_LIMIT_DECISION_SOURCE_NO_POLICY" });
  });

  const refused: Array<[string, Record<string, unknown>]> = [
    ["another tenant's organization", { subject: org(OTHER_ORG) }],
    ["an unknown organization (answered as another tenant's)", { subject: org(UNKNOWN_ORG) }],
    ["a user without organization_id", { subject: user(U.bob) }],
    ["a user in another tenant's organization", { subject: user(U.bob), organization_id: OTHER_ORG }],
    ["a key's counter, by policy name", { policy: "login-attempts", subject: { type: "key", id: "login:someone@example.com" } }],
    ["a global policy by name", { policy: "everyone", subject: org(O.eng) }],
    ["an Acme organization with a global policy assigned", { subject: org(O.sales) }],
  ];
  it.each(refused)("ConsumeRateLimit and GetRateLimitCounters refuse %s: PERMISSION_DENIED OTHER_TENANT", async (_what, req) => {
    expectOtherTenant(await rejection(consume("acme", req)));
    expectOtherTenant(await rejection(counters("acme", req)));
  });

  it("nothing was spent by the refused calls: the counters as an unbound credential reads them", async () => {
    expect((await counters("unbound", { subject: org(OTHER_ORG) })).counters).toMatchObject([{ policy: "org-daily", count: "0" }]);
    expect((await counters("unbound", { policy: "everyone", subject: org(O.eng) })).counters).toMatchObject([{ policy: "everyone", count: "0" }]);
  });

  const refusedDescriptors: Array<[string, Array<[string, string]>]> = [
    ["another tenant's organization", [["organization", OTHER_ORG]]],
    [
      "an unknown organization",
      [
        ["policy", "api-per-org"],
        ["organization", UNKNOWN_ORG],
      ],
    ],
    ["a user without an organization", [["user", U.bob]]],
    [
      "a key's counter",
      [
        ["policy", "login-attempts"],
        ["key", "10.0.0.7"],
      ],
    ],
    ["a global policy", [["policy", "everyone"]]],
  ];
  it.each(refusedDescriptors)("ShouldRateLimit refuses the whole call for a descriptor naming %s", async (_what, entries) => {
    expectOtherTenant(await rejection(limit("acme", [descriptor([["organization", O.eng]]), descriptor(entries)])));
  });

  it("the same calls from a credential bound to no tenant are answered", async () => {
    expect(await consume("unbound", { subject: org(OTHER_ORG) })).toMatchObject({ allowed: true, source: "RATE_LIMIT_DECISION_SOURCE_STORE" });
    expect(await consume("unbound", { policy: "everyone", subject: org(O.eng) })).toMatchObject({ allowed: true });
    expect(await consume("unbound", { subject: user(U.bob) })).toMatchObject({ allowed: true });
    expect(
      (
        await limit("unbound", [
          descriptor([["policy", "everyone"]]),
          descriptor([
            ["policy", "login-attempts"],
            ["key", "10.0.0.7"],
          ]),
        ])
      ).overall_code,
    ).toBe("OK");
  });
});

describe("two tenants and one user: a user's counters are kept per tenant", () => {
  const userLimit = async (who: keyof typeof md, organization: string) =>
    (await counters(who, { subject: user(U3), organization_id: organization })).counters.find((c) => c.policy === "user-limit");

  it("Acme neither reads nor spends what Globex spent on its user, over ConsumeRateLimit, GetRateLimitCounters and ShouldRateLimit", async () => {
    // Globex spends 4 of U3's 20, in its own organization.
    expect(await consume("globex", { subject: user(U3), organization_id: OTHER_ORG, cost: "4" })).toMatchObject({
      allowed: true,
      policy: "user-limit",
      remaining: "16",
    });
    // Acme, naming U3 with its own organization as the context, sees a counter of its own: untouched.
    expect(await userLimit("acme", O.eng)).toMatchObject({ count: "0", remaining: "20" });
    // Spending 16 there exhausts nothing of Globex's.
    expect(await consume("acme", { policy: "user-limit", subject: user(U3), organization_id: O.eng, cost: "16" })).toMatchObject({
      allowed: true,
      remaining: "4",
    });
    expect(
      await limit("acme", [
        descriptor(
          [
            ["user", U3],
            ["organization", O.eng],
          ],
          1,
        ),
      ]),
    ).toMatchObject({ overall_code: "OK" });
    expect(await userLimit("acme", O.eng)).toMatchObject({ count: "17", remaining: "3" });
    // Globex still has its 16 left, and its counter shows only its own 4.
    expect(await userLimit("globex", OTHER_ORG)).toMatchObject({ count: "4", remaining: "16" });
    expect(await consume("globex", { subject: user(U3), organization_id: OTHER_ORG, cost: "16" })).toMatchObject({ allowed: true, remaining: "0" });
    expect(
      await limit("globex", [
        descriptor(
          [
            ["user", U3],
            ["organization", OTHER_ORG],
          ],
          1,
        ),
      ]),
    ).toMatchObject({ overall_code: "OVER_LIMIT" });
    // Acme is not denied by Globex's exhausted counter either.
    expect(
      await limit("acme", [
        descriptor(
          [
            ["user", U3],
            ["organization", O.eng],
          ],
          1,
        ),
      ]),
    ).toMatchObject({ overall_code: "OK" });
    // The counter is chosen by the organization the call names, not by who asks: an unbound credential sees the same ones.
    expect(await userLimit("unbound", OTHER_ORG)).toMatchObject({ count: "20", remaining: "0" });
    expect(await userLimit("unbound", O.eng)).toMatchObject({ count: "18", remaining: "2" });
  });
});
