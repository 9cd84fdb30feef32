// Envoy's sidecar contracts against the real server: createApp on a fresh
// database loaded with examples/demo.json, a mesh mapping file in a temp dir,
// Redis at REDIS_URL under a key prefix of its own, authentication on (Envoy
// sends an API key in its grpc_service initial_metadata). The client is
// @grpc/grpc-js with Envoy-shaped protos (test/support/envoy-protos), calling
// as Envoy's ext_authz and ratelimit filters do.
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CheckRequestSchema } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { DEFAULT_MESH_CONFIG, parseMeshConfig } from "../src/mesh/config.js";
import { projectPath } from "../src/paths.js";
import { createMemoryStore } from "../src/ratelimit/memory-store.js";
import { envoyAuthorizationHandlers } from "../src/rpc/envoy-handlers.js";
import type { CallContext } from "../src/rpc/handler-types.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import {
  type CheckResponse,
  checkRequest,
  descriptor,
  fromStruct,
  type HttpCheck,
  headerMap,
  loadEnvoyProtos,
  type RateLimitResponse,
} from "./support/envoy.js";
import { client, unary } from "./support/grpc-client.js";

const { user: U, org: O, tenant: T, staff: S, principal: P, avatar: A } = DEMO;
const TESS_SPIFFE = "spiffe://cluster.local/ns/ops/sa/support-console";

const MESH = {
  $comment: "test mapping",
  subject: [
    // As if Envoy set x-authz-subject itself: the test plays Envoy.
    { from: "header", header: "x-authz-subject", set_by_sidecar: true },
    { from: "jwt", claim: "sub", type: "user" },
    { from: "peer", principals: { [TESS_SPIFFE]: `staff:${S.tess}` } },
  ],
  routes: [
    { name: "members-read", method: ["GET", "HEAD"], path: "/orgs/{org}/members", permission: "members.read", resource: "organization:{org}" },
    {
      name: "members-invite",
      method: "POST",
      path: "/orgs/{org}/members",
      permission: "members.invite",
      resource: "organization:{org}",
      rate_limit: { policy: "api-per-user", cost: 40 },
    },
    { name: "support", method: "GET", path: "/tenants/{tenant}/support", permission: "support.read", resource: "tenant:{tenant}" },
    { name: "avatar-post", method: "POST", path: "/avatars/{avatar}/**", permission: "avatar.post", resource: "avatar:{avatar}" },
    { name: "things", path: "/things/**", permission: "members.read", resource: "{header:x-authz-resource}" },
    { name: "login", method: "POST", path: "/login", public: true, rate_limit: { policy: "login-attempts", subject: "key:login:{header:x-login-email}" } },
    { name: "healthz", path: "/healthz", public: true },
    { name: "eng-members", permission: "members.read", resource: `organization:${O.eng}` },
  ],
  rate_limit_service: { domains: ["authz"], policy_key: "policy", subject_keys: { user: "user", org_id: "organization", key: "key", remote_address: "key" } },
};

let t: TestDatabase;
let app: App;
const dir = mkdtempSync(join(tmpdir(), "authz-envoy-"));
const protos = loadEnvoyProtos();
type Svc = ReturnType<typeof client>;
let authz: Svc;
let rls: Svc;
const keys: Record<string, string> = {};

async function addKey(name: string, scopes: Scope[], tenant: string | null = null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  return key;
}

const md = (key: string | null) => {
  const m = new grpc.Metadata();
  if (key) m.set("x-api-key", key);
  return m;
};

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  keys.envoy = await addKey("envoy-sidecar", ["check", "ratelimit"]);
  keys.limiter = await addKey("limiter-only", ["ratelimit"]);
  writeFileSync(join(dir, "mesh.json"), JSON.stringify(MESH));
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      REDIS_URL: inject("redisUrl"),
      AUTHZ_REDIS_KEY_PREFIX: `authz:test:envoy:${randomUUID()}`,
      AUTHZ_REDIS_COMMAND_TIMEOUT_MS: "2000",
      AUTHZ_AUTH: "on",
      AUTHZ_MESH_CONFIG: join(dir, "mesh.json"),
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
    }),
    createLogger("silent"),
  );
  const { grpcPort } = await app.listen();
  await app.ready;
  authz = client(protos, "envoy.service.auth.v3.Authorization", grpcPort);
  rls = client(protos, "envoy.service.ratelimit.v3.RateLimitService", grpcPort);
}, 60_000);

afterAll(async () => {
  authz?.close();
  rls?.close();
  await app?.stop();
  await t?.drop();
});

const check = (c: HttpCheck, key: string | null = keys.envoy as string) => unary<CheckResponse>(authz, "Check", checkRequest(c), md(key));
const check2 = (req: unknown) => unary<CheckResponse>(authz, "Check", req, md(keys.envoy as string));
const limit = (req: Record<string, unknown>, key: string | null = keys.envoy as string) => unary<RateLimitResponse>(rls, "ShouldRateLimit", req, md(key));
const failure = async (p: Promise<unknown>) =>
  (await p.then(
    () => expect.fail("expected a gRPC error"),
    (e: unknown) => e,
  )) as grpc.ServiceError;
const as = (type: string, id: string) => ({ "x-authz-subject": `${type}:${id}` });
const body = (r: CheckResponse) => JSON.parse(r.denied_response?.body ?? "{}") as { error: string; message: string };

/** Asserts a denial and returns its downstream headers. */
function expectDenied(r: CheckResponse, http: string, code: grpc.status, error: string): Record<string, string> {
  expect(r.http_response).toBe("denied_response");
  expect(r.status.code).toBe(code);
  expect(r.denied_response?.status.code).toBe(http);
  expect(body(r).error).toBe(error);
  return headerMap(r.denied_response?.headers);
}

describe("Authorization/Check: allow", () => {
  it("a subject header on a table route: status OK with the revision and the resolved subject for upstream", async () => {
    const r = await check({ path: `/orgs/${O.eng}/members?page=2`, headers: as("user", U.alice) });
    expect(r.status.code).toBe(0);
    expect(r.http_response).toBe("ok_response");
    const up = headerMap(r.ok_response?.headers);
    expect(up["x-authz-subject"]).toBe(`user:${U.alice}`);
    expect(BigInt(up["x-authz-revision"] as string)).toBeGreaterThan(0n);
    // Replace, never append: a client cannot smuggle its own x-authz-subject upstream.
    for (const h of r.ok_response?.headers ?? []) {
      expect(h.append_action).toBe("OVERWRITE_IF_EXISTS_OR_ADD");
      expect(h.append?.value).toBe(false);
    }
    expect(fromStruct(r.dynamic_metadata)).toMatchObject({
      decision: "allow",
      route: "members-read",
      subject: `user:${U.alice}`,
      permission: "members.read",
      resource: `organization:${O.eng}`,
      reason: "GRANTED",
    });
  });

  it("a verified JWT claim from jwt_authn's metadata (payload_in_metadata) names the user", async () => {
    const r = await check({ path: `/orgs/${O.eng}/members`, jwtPayload: { iss: "https://idp.example", sub: U.bob, aud: ["api"] } });
    expect(r.status.code).toBe(0);
    expect(headerMap(r.ok_response?.headers)["x-authz-subject"]).toBe(`user:${U.bob}`);
  });

  it("the peer principal (SPIFFE id) maps to a subject through the table", async () => {
    const r = await check({ path: `/tenants/${T.acme}/support`, principal: TESS_SPIFFE });
    expect(r.status.code).toBe(0);
    expect(headerMap(r.ok_response?.headers)["x-authz-subject"]).toBe(`staff:${S.tess}`);
  });

  it("a ** path template and a principal subject", async () => {
    const r = await check({ method: "POST", path: `/avatars/${A.acmeBot}/posts/new`, headers: as("principal", P.bobEng) });
    expect(r.status.code).toBe(0);
  });

  it("the resource can come from a header", async () => {
    const r = await check({ path: "/things/anything", headers: { ...as("user", U.carol), "x-authz-resource": `organization:${O.eng}` } });
    expect(r.status.code).toBe(0);
  });

  it("per-route context_extensions: an inline permission/resource, or a named route of the file", async () => {
    const inline = {
      authz_permission: "members.invite",
      authz_resource: "organization:{org}",
      authz_path: "/v2/orgs/{org}/invitations",
    };
    const bob = await check({ method: "PUT", path: `/v2/orgs/${O.eng}/invitations`, headers: as("user", U.bob), contextExtensions: inline });
    expect(bob.status.code).toBe(0);
    const carol = await check({ method: "PUT", path: `/v2/orgs/${O.eng}/invitations`, headers: as("user", U.carol), contextExtensions: inline });
    expectDenied(carol, "Forbidden", grpc.status.PERMISSION_DENIED, "permission_denied");
    const named = await check({ path: "/legacy/members", headers: as("user", U.alice), contextExtensions: { authz_route: "eng-members" } });
    expect(named.status.code).toBe(0);
    expect(fromStruct(named.dynamic_metadata).route).toBe("eng-members");
  });

  it("a public route needs no identity, and upstream never sees a client-sent subject header", async () => {
    const r = await check({ path: "/healthz", headers: { "x-authz-subject": `user:${U.alice}` } });
    expect(r.status.code).toBe(0);
    expect(r.ok_response?.headers_to_remove).toContain("x-authz-subject");
  });

  it("an answer at least as fresh as a revision token the client holds", async () => {
    const first = await check({ path: `/orgs/${O.eng}/members`, headers: as("user", U.alice) });
    const rev = headerMap(first.ok_response?.headers)["x-authz-revision"] as string;
    const r = await check({ path: `/orgs/${O.eng}/members`, headers: { ...as("user", U.alice), "x-authz-at-least-as-fresh": rev } });
    expect(r.status.code).toBe(0);
  });
});

describe("Authorization/Check: deny, never a gRPC error", () => {
  it("no grant: PERMISSION_DENIED with a 403 whose body does not reveal why (the reason is in dynamic metadata)", async () => {
    const r = await check({ method: "POST", path: `/orgs/${O.eng}/members`, headers: as("user", U.carol) });
    const h = expectDenied(r, "Forbidden", grpc.status.PERMISSION_DENIED, "permission_denied");
    expect(h["content-type"]).toBe("application/json");
    expect(r.denied_response?.body).not.toMatch(/NO_GRANT/i);
    expect(fromStruct(r.dynamic_metadata)).toMatchObject({ decision: "deny", reason: "NO_GRANT", http_status: 403 });
    const locked = await check({ path: `/orgs/${O.eng}/members`, headers: as("user", U.dave) });
    expect(fromStruct(locked.dynamic_metadata).reason).toBe("SUBJECT_LOCKED");
  });

  it("no identity: 401 with WWW-Authenticate", async () => {
    const r = await check({ path: `/orgs/${O.eng}/members` });
    const h = expectDenied(r, "Unauthorized", grpc.status.UNAUTHENTICATED, "unauthenticated");
    expect(h["www-authenticate"]).toBe('Bearer realm="authz"');
    // A JWT whose payload lacks the claim is no identity either.
    const noSub = await check({ path: `/orgs/${O.eng}/members`, jwtPayload: { iss: "https://idp.example" } });
    expectDenied(noSub, "Unauthorized", grpc.status.UNAUTHENTICATED, "unauthenticated");
    // An unknown workload is no identity.
    const stranger = await check({ path: `/orgs/${O.eng}/members`, principal: "spiffe://cluster.local/ns/x/sa/y" });
    expectDenied(stranger, "Unauthorized", grpc.status.UNAUTHENTICATED, "unauthenticated");
  });

  it("malformed attributes are a 400, not a gRPC error", async () => {
    const cases: HttpCheck[] = [
      { path: `/orgs/${O.eng}/members`, headers: { "x-authz-subject": "alice" } },
      { path: `/orgs/${O.eng}/members`, headers: { "x-authz-subject": "user:not-a-uuid" } },
      { path: `/orgs/${O.eng}/members`, headers: { "x-authz-subject": `robot:${U.alice}` } },
      { path: "/orgs/not-a-uuid/members", headers: as("user", U.alice) },
      { path: "/things/x", headers: as("user", U.alice) },
      { path: "/things/x", headers: { ...as("user", U.alice), "x-authz-resource": "org:42" } },
      { path: `/orgs/${O.eng}/members`, jwtPayload: { sub: 42 } },
      { path: `/orgs/${O.eng}/members`, headers: { ...as("user", U.alice), "x-authz-at-least-as-fresh": "zed" } },
      // Well formed, but newer than any revision handed out (UNKNOWN_REVISION): a client can send it, so it is a 400 too.
      { path: `/orgs/${O.eng}/members`, headers: { ...as("user", U.alice), "x-authz-at-least-as-fresh": "999999999" } },
      { method: "POST", path: "/login", headers: { "x-login-email": "fresh@example.com", "x-authz-at-least-as-fresh": "999999999" } },
      { method: "POST", path: "/login" },
    ];
    for (const c of cases) {
      const r = await check(c);
      expectDenied(r, "BadRequest", grpc.status.INVALID_ARGUMENT, "invalid_request");
    }
    for (const req of [{}, { attributes: {} }, { attributes: { request: {} } }, { attributes: { request: { http: { method: "GET" } } } }]) {
      const r = await check2(req);
      expectDenied(r, "BadRequest", grpc.status.INVALID_ARGUMENT, "invalid_request");
    }
  });

  it("an unknown route is denied by default (unknown_route: deny)", async () => {
    const r = await check({ path: "/nowhere/at/all", headers: as("user", U.alice) });
    expectDenied(r, "Forbidden", grpc.status.PERMISSION_DENIED, "unknown_route");
    const wrongMethod = await check({ method: "DELETE", path: `/orgs/${O.eng}/members`, headers: as("user", U.alice) });
    expectDenied(wrongMethod, "Forbidden", grpc.status.PERMISSION_DENIED, "unknown_route");
  });

  it("unknown_route: allow lets unmapped requests through (without a subject header)", async () => {
    const handlers = envoyAuthorizationHandlers({
      live: () => app.live(),
      store: createMemoryStore(),
      mesh: parseMeshConfig({ unknown_route: "allow" }, "test"),
    });
    const ctx = {
      path: "/envoy.service.auth.v3.Authorization/Check",
      requestId: "t",
      header: () => undefined,
      timeRemainingMs: () => undefined,
      signal: new AbortController().signal,
    } satisfies CallContext;
    const req = create(CheckRequestSchema, {
      attributes: { request: { http: { method: "GET", path: "/anything", headers: { "x-authz-subject": "user:x" } } } },
    });
    const r = await handlers.check(req, ctx);
    expect(r.status?.code).toBe(0);
    expect(r.httpResponse?.case).toBe("okResponse");
    expect((r.httpResponse?.value as { headersToRemove: string[] } | undefined)?.headersToRemove).toEqual(["x-authz-subject"]);
  });

  it("the default mapping never takes the subject from a header a client can send, only from the JWT jwt_authn verified", async () => {
    const handlers = envoyAuthorizationHandlers({ live: () => app.live(), store: createMemoryStore(), mesh: DEFAULT_MESH_CONFIG });
    const ctx = {
      path: "/envoy.service.auth.v3.Authorization/Check",
      requestId: "t",
      header: () => undefined,
      timeRemainingMs: () => undefined,
      signal: new AbortController().signal,
    } satisfies CallContext;
    const contextExtensions = { authz_permission: "members.read", authz_resource: `organization:${O.eng}` };
    const http = { method: "GET", path: "/anything", headers: { "x-authz-subject": `user:${U.alice}` } };
    const forged = await handlers.check(create(CheckRequestSchema, { attributes: { contextExtensions, request: { http } } }), ctx);
    expect(forged.status?.code).toBe(grpc.status.UNAUTHENTICATED);
    const metadataContext = { filterMetadata: { "envoy.filters.http.jwt_authn": { jwt_payload: { sub: U.alice } } } };
    const verified = await handlers.check(create(CheckRequestSchema, { attributes: { contextExtensions, metadataContext, request: { http } } }), ctx);
    expect(verified.status?.code).toBe(0);
  });

  it("a request past the input bounds, or no CheckRequest at all, is a 400 denial, never a gRPC error that failure_mode_allow would let through", async () => {
    const big = await check({ path: `/orgs/${O.eng}/members`, headers: { ...as("user", U.alice), "x-big": "a".repeat(70_000) } });
    expectDenied(big, "BadRequest", grpc.status.INVALID_ARGUMENT, "invalid_request");
    expect(body(big).message).toBe('attributes.request.http.headers["x-big"] is longer than 65536 bytes');
    expect(fromStruct(big.dynamic_metadata)).toMatchObject({ decision: "deny", reason: "FIELD_TOO_LONG" });
    const nul = await check({ path: `/orgs/${O.eng}/members\u0000`, headers: as("user", U.alice) });
    expectDenied(nul, "BadRequest", grpc.status.INVALID_ARGUMENT, "invalid_request");
    expect(fromStruct(nul.dynamic_metadata).reason).toBe("INVALID_STRING");
    // Bytes that do not decode: a truncated field.
    const method = (
      protos as unknown as { envoy: { service: { auth: { v3: { Authorization: { service: { Check: grpc.MethodDefinition<unknown, CheckResponse> } } } } } } }
    ).envoy.service.auth.v3.Authorization.service.Check;
    const garbage = await new Promise<CheckResponse>((resolve, reject) =>
      authz.makeUnaryRequest(
        method.path,
        (b: Buffer) => b,
        method.responseDeserialize,
        Buffer.from([0x0a, 0xff]),
        md(keys.envoy as string),
        (err, res) => (err ? reject(err) : resolve(res as CheckResponse)),
      ),
    );
    expectDenied(garbage, "BadRequest", grpc.status.INVALID_ARGUMENT, "invalid_request");
    expect(fromStruct(garbage.dynamic_metadata).reason).toBe("MALFORMED_MESSAGE");
    // Without Envoy's credential, it is still UNAUTHENTICATED first.
    expect((await failure(check({ path: `/x\u0000` }, null))).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("a mapping fault (context_extensions naming no route) is a gRPC error, so Envoy's failure mode applies", async () => {
    const err = await failure(check({ path: "/x", headers: as("user", U.alice), contextExtensions: { authz_route: "no-such-route" } }));
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/no-such-route/);
  });

  it("Envoy must authenticate to authz: no key is UNAUTHENTICATED, a key without the check scope PERMISSION_DENIED", async () => {
    expect((await failure(check({ path: "/healthz" }, null))).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await failure(check({ path: "/healthz" }, keys.limiter as string))).code).toBe(grpc.status.PERMISSION_DENIED);
  });
});

describe("Authorization/Check: rate limits in the mapping", () => {
  it("an allowed request spends its route's policy; over the limit it is a 429 with Retry-After and RateLimit-* headers", async () => {
    const invite = () => check({ method: "POST", path: `/orgs/${O.eng}/members`, headers: as("user", U.bob) });
    const first = await invite();
    expect(first.status.code).toBe(0);
    expect(headerMap(first.ok_response?.response_headers_to_add)).toMatchObject({ "ratelimit-limit": "100", "ratelimit-remaining": "60" });
    expect(Number(headerMap(first.ok_response?.response_headers_to_add)["ratelimit-reset"])).toBeLessThanOrEqual(60);
    expect((await invite()).status.code).toBe(0);
    const third = await invite();
    const h = expectDenied(third, "TooManyRequests", grpc.status.RESOURCE_EXHAUSTED, "rate_limited");
    // Sliding window: the 40 spent now weigh on the next window too, so the wait can pass the window's end.
    expect(Number(h["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(Number(h["retry-after"])).toBeLessThanOrEqual(120);
    expect(h["ratelimit-limit"]).toBe("100");
    expect(Number(h["ratelimit-remaining"])).toBeLessThan(40);
    expect(h["ratelimit-reset"]).toMatch(/^\d+$/);
    expect(fromStruct(third.dynamic_metadata)).toMatchObject({ rate_limit_policy: "api-per-user", rate_limit_source: "STORE" });
    // A denied authorization spends nothing.
    expectDenied(
      await check({ method: "POST", path: `/orgs/${O.eng}/members`, headers: as("user", U.carol) }),
      "Forbidden",
      grpc.status.PERMISSION_DENIED,
      "permission_denied",
    );
  });

  it("a public route counts by a header: login-attempts (5 per 5 minutes)", async () => {
    const email = `${randomUUID()}@acme.example`;
    const login = () => check({ method: "POST", path: "/login", headers: { "x-login-email": email } });
    for (let i = 0; i < 5; i++) expect((await login()).status.code).toBe(0);
    const h = expectDenied(await login(), "TooManyRequests", grpc.status.RESOURCE_EXHAUSTED, "rate_limited");
    expect(h["ratelimit-limit"]).toBe("5");
    expect(h["ratelimit-remaining"]).toBe("0");
    expect(Number(h["retry-after"])).toBeGreaterThan(0);
    expect(Number(h["retry-after"])).toBeLessThanOrEqual(300);
  });
});

describe("RateLimitService/ShouldRateLimit", () => {
  const codes = (r: RateLimitResponse) => r.statuses.map((s) => s.code);

  it("descriptors map to policies; statuses in request order with current_limit, limit_remaining and duration_until_reset", async () => {
    const key = `ip-${randomUUID()}`;
    const r = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "login-attempts"],
          ["remote_address", key],
        ]),
        descriptor([
          ["policy", "api-per-user"],
          ["user", U.grace],
        ]),
        descriptor([["generic_key", "x"]]),
      ],
      hits_addend: 1,
    });
    expect(r.overall_code).toBe("OK");
    expect(codes(r)).toEqual(["OK", "OK", "OK"]);
    const [login, api, none] = r.statuses;
    expect(login).toMatchObject({ current_limit: { name: "login-attempts", requests_per_unit: 5, unit: "HOUR" }, limit_remaining: 4 });
    expect(Number(login?.duration_until_reset?.seconds)).toBeLessThanOrEqual(300);
    expect(api).toMatchObject({ current_limit: { name: "api-per-user", requests_per_unit: 100, unit: "MINUTE" }, limit_remaining: 99 });
    expect(none?.current_limit).toBeNull();
  });

  it("hits_addend is the cost; a descriptor's own hits_addend wins (0 reads without spending); OVER_LIMIT when any is over", async () => {
    const key = `ip-${randomUUID()}`;
    const d = (n?: number) =>
      descriptor(
        [
          ["policy", "login-attempts"],
          ["key", key],
        ],
        n,
      );
    const five = await limit({ domain: "authz", descriptors: [d()], hits_addend: 5 });
    expect(five.statuses[0]).toMatchObject({ code: "OK", limit_remaining: 0 });
    const peek = await limit({ domain: "authz", descriptors: [d(0)], hits_addend: 3 });
    expect(peek.statuses[0]).toMatchObject({ code: "OK", limit_remaining: 0 });
    const over = await limit({ domain: "authz", descriptors: [descriptor([["user", U.heidi]]), d()] });
    expect(over.overall_code).toBe("OVER_LIMIT");
    expect(codes(over)).toEqual(["OK", "OVER_LIMIT"]);
    expect(Number(over.statuses[1]?.duration_until_reset?.seconds)).toBeGreaterThan(0);
    const headers = Object.fromEntries(over.response_headers_to_add.map((h) => [h.key, h.value]));
    expect(Number(headers["retry-after"])).toBeGreaterThan(0);
    expect(headers["ratelimit-limit"]).toBe("5");
  });

  it("descriptors sharing a cost are spent all or nothing: a request over one limit spends none of the others", async () => {
    const key = `ip-${randomUUID()}`;
    const full = descriptor([
      ["policy", "login-attempts"],
      ["key", key],
    ]);
    await limit({ domain: "authz", descriptors: [full], hits_addend: 5 });
    const before = await limit({
      domain: "authz",
      descriptors: [
        descriptor(
          [
            ["policy", "api-per-user"],
            ["user", U.frank],
          ],
          0,
        ),
      ],
    });
    const r = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "api-per-user"],
          ["user", U.frank],
        ]),
        full,
      ],
    });
    expect(codes(r)).toEqual(["OK", "OVER_LIMIT"]);
    const after = await limit({
      domain: "authz",
      descriptors: [
        descriptor(
          [
            ["policy", "api-per-user"],
            ["user", U.frank],
          ],
          0,
        ),
      ],
    });
    expect(after.statuses[0]?.limit_remaining).toBe(before.statuses[0]?.limit_remaining);
  });

  it("without a policy entry, the subject's assigned policies apply (bob: api-per-user; heidi: none)", async () => {
    const r = await limit({ domain: "authz", descriptors: [descriptor([["user", U.bob]]), descriptor([["user", U.heidi]])] });
    expect(r.statuses[0]?.current_limit?.name).toBe("api-per-user");
    expect(r.statuses[1]).toMatchObject({ code: "OK", current_limit: null });
  });

  it("an organization policy counts on the organization (token bucket 1000/60)", async () => {
    const r = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "api-per-org"],
          ["org_id", O.sales],
        ]),
      ],
      hits_addend: 10,
    });
    expect(r.statuses[0]).toMatchObject({ code: "OK", current_limit: { name: "api-per-org", requests_per_unit: 1000, unit: "MINUTE" } });
    expect(r.statuses[0]?.limit_remaining).toBeLessThanOrEqual(990);
  });

  it("a shadow policy never limits", async () => {
    const r = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "export-per-user"],
          ["user", U.carol],
        ]),
      ],
      hits_addend: 50,
    });
    expect(r.overall_code).toBe("OK");
    expect(r.statuses[0]?.current_limit?.name).toBe("export-per-user");
  });

  it("unknown policies, unmapped descriptors and other domains are OK with no limit; never UNKNOWN", async () => {
    const r = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "no-such-policy"],
          ["user", U.bob],
        ]),
        descriptor([["header_match", "x"]]),
      ],
    });
    expect(r.overall_code).toBe("OK");
    expect(r.statuses.map((s) => [s.code, s.current_limit])).toEqual([
      ["OK", null],
      ["OK", null],
    ]);
    const other = await limit({
      domain: "edge",
      descriptors: [
        descriptor([
          ["policy", "login-attempts"],
          ["key", "k"],
        ]),
      ],
    });
    expect(other).toMatchObject({ overall_code: "OK", statuses: [{ code: "OK", current_limit: null }] });
    const empty = await limit({ domain: "authz", descriptors: [] });
    expect(empty).toMatchObject({ overall_code: "OK", statuses: [] });
  });

  it("a named policy with no entry of its scope answers by its failure mode: open → OK, closed → OVER_LIMIT", async () => {
    const open = await limit({ domain: "authz", descriptors: [descriptor([["policy", "api-per-user"]])] });
    expect(open.statuses[0]).toMatchObject({ code: "OK", current_limit: { name: "api-per-user" } });
    const closed = await limit({ domain: "authz", descriptors: [descriptor([["policy", "login-attempts"]])] });
    expect(closed).toMatchObject({ overall_code: "OVER_LIMIT", statuses: [{ code: "OVER_LIMIT", current_limit: { name: "login-attempts" } }] });
  });

  it("a malformed subject entry is OVER_LIMIT whatever the failure mode, and spends nothing: it never switches a limit off", async () => {
    const spent = async () =>
      (
        await limit({
          domain: "authz",
          descriptors: [
            descriptor(
              [
                ["policy", "api-per-user"],
                ["user", U.bob],
              ],
              0,
            ),
          ],
        })
      ).statuses[0]?.limit_remaining;
    const before = await spent();
    // A fail-open named policy with a user id that is not a UUID.
    const named = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "api-per-user"],
          ["user", "not-a-uuid"],
        ]),
      ],
    });
    expect(named.overall_code).toBe("OVER_LIMIT");
    expect(named.statuses[0]?.current_limit).toBeNull();
    // No policy entry: bob's assigned policies would apply, but the organization entry (the context) is garbage.
    const assigned = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["user", U.bob],
          ["org_id", "not-a-uuid"],
        ]),
        descriptor([["user", U.grace]]),
      ],
    });
    expect(assigned.overall_code).toBe("OVER_LIMIT");
    expect(codes(assigned)[0]).toBe("OVER_LIMIT");
    // A key past 256 bytes.
    const long = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "login-attempts"],
          ["key", "k".repeat(257)],
        ]),
      ],
    });
    expect(long.overall_code).toBe("OVER_LIMIT");
    expect(await spent()).toBe(before);
  });

  it("a cost above the limit is OVER_LIMIT with no Retry-After: it can never pass", async () => {
    const r = await limit({
      domain: "authz",
      descriptors: [
        descriptor([
          ["policy", "login-attempts"],
          ["key", `ip-${randomUUID()}`],
        ]),
      ],
      hits_addend: 6,
    });
    expect(r.overall_code).toBe("OVER_LIMIT");
    const headers = Object.fromEntries(r.response_headers_to_add.map((h) => [h.key, h.value]));
    expect(headers["retry-after"]).toBeUndefined();
    expect(headers["ratelimit-limit"]).toBe("5");
    expect(r.statuses[0]).toMatchObject({ code: "OVER_LIMIT", limit_remaining: 5 });
  });

  it("the caller needs the ratelimit scope", async () => {
    const err = await failure(limit({ domain: "authz", descriptors: [] }, null));
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
