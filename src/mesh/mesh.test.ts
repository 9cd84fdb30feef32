import { describe, expect, it } from "vitest";
import { ConfigError } from "../config.js";
import { DEFAULT_MESH_CONFIG, parseMeshConfig } from "./config.js";
import { planDescriptor, rateLimitHeaders, windowUnit } from "./rate-limit.js";
import { type HttpAttributes, MeshMappingError, resolveRoute, resolveSubject } from "./request.js";
import { compilePath, compileValue, matchPath, renderValue } from "./template.js";

const ORG = "00000002-0000-4000-8000-000000000001";
const USER = "00000003-0000-4000-8000-000000000001";

function req(over: Partial<HttpAttributes> & { headers?: Record<string, string> } = {}): HttpAttributes {
  const headers = over.headers ?? {};
  return {
    method: "GET",
    path: "/",
    principal: "",
    contextExtensions: {},
    metadata: () => undefined,
    header: (n) => headers[n],
    ...over,
  };
}

describe("path templates", () => {
  it("captures variables, ignores the query string and a trailing slash, and percent-decodes", () => {
    const t = compilePath("/orgs/{org}/billing");
    expect(matchPath(t, `/orgs/${ORG}/billing?x=1`)).toEqual({ org: ORG });
    expect(matchPath(t, `/orgs/${ORG}/billing/`)).toEqual({ org: ORG });
    expect(matchPath(t, "/orgs/a%20b/billing")).toEqual({ org: "a b" });
    expect(matchPath(t, "/orgs//billing")).toBeUndefined();
    expect(matchPath(t, `/orgs/${ORG}/billing/more`)).toBeUndefined();
    expect(matchPath(compilePath("/a/*/c"), "/a/b/c")).toEqual({});
    expect(matchPath(compilePath("/files/**"), "/files")).toEqual({});
    expect(matchPath(compilePath("/files/**"), "/files/a/b")).toEqual({});
  });

  it("rejects templates it cannot match", () => {
    for (const bad of ["orgs/{org}", "/a/**/b", "/a/x{org}", "/a/{org}/{org}", "/a/{subject}", "/a/{1x}"]) expect(() => compilePath(bad)).toThrow();
  });
});

describe("value templates", () => {
  it("renders path variables, headers and the subject; says what is missing", () => {
    const t = compileValue("key:{subject.type}-{subject.id}:{org}:{header:X-Email}");
    const input = { vars: { org: "o" }, header: (n: string) => (n === "x-email" ? "e@x" : undefined), subject: { type: "user", id: "u" } };
    expect(renderValue(t, input)).toEqual({ ok: true, value: "key:user-u:o:e@x" });
    expect(renderValue(t, { ...input, header: () => undefined })).toMatchObject({ ok: false, kind: "header" });
    expect(renderValue(t, { ...input, vars: {} })).toMatchObject({ ok: false, kind: "var" });
    expect(renderValue(compileValue("{subject}"), { vars: {}, header: () => undefined })).toMatchObject({ ok: false, kind: "subject" });
    expect(() => compileValue("{header:}")).toThrow();
    expect(() => compileValue("a}")).toThrow();
  });
});

describe("the mapping file", () => {
  it("has safe defaults: the subject from the JWT jwt_authn verified, never a header a client can send; unknown routes denied", () => {
    expect(DEFAULT_MESH_CONFIG.unknownRoute).toBe("deny");
    expect(DEFAULT_MESH_CONFIG.warnings).toEqual([]);
    const verified = req({ metadata: (ns) => (ns === "envoy.filters.http.jwt_authn" ? { jwt_payload: { sub: USER } } : undefined) });
    expect(resolveSubject(DEFAULT_MESH_CONFIG, verified)).toMatchObject({ kind: "subject", ref: { type: "user", id: USER }, from: "jwt" });
    // A client-sent x-authz-subject is no identity at all.
    expect(resolveSubject(DEFAULT_MESH_CONFIG, req({ headers: { "x-authz-subject": `user:${USER}` } }))).toEqual({ kind: "none" });
    expect(resolveRoute(DEFAULT_MESH_CONFIG, req())).toEqual({ kind: "unknown" });
  });

  it("a subject read from a request header needs set_by_sidecar: true, and is then a start-up warning", () => {
    for (const source of [
      { from: "header", header: "x-authz-subject" },
      { from: "jwt", claim: "sub", header: "x-jwt-payload" },
    ]) {
      expect(() => parseMeshConfig({ subject: [source] }, "m.json")).toThrow(
        /\$\.subject\[0\]: reads the subject from request header x-[a-z-]+, which any client can send/,
      );
      const trusted = parseMeshConfig({ subject: [{ ...source, set_by_sidecar: true }] }, "m.json");
      expect(trusted.warnings).toHaveLength(1);
      expect(trusted.warnings[0]).toMatch(/^m\.json: \$\.subject\[0\]: the subject comes from request header x-[a-z-]+ \(set_by_sidecar\)/);
    }
    const header = parseMeshConfig({ subject: [{ from: "header", header: "x-authz-user-id", type: "user", set_by_sidecar: true }] }, "t");
    expect(resolveSubject(header, req({ headers: { "x-authz-user-id": USER } }))).toMatchObject({ kind: "subject", ref: { type: "user", id: USER } });
  });

  it("reports every problem at once, with its JSON path", () => {
    let err: unknown;
    try {
      parseMeshConfig(
        {
          unknown_route: "maybe",
          subjekt: [],
          subject: [{ from: "cookie" }, { from: "peer", principals: { "spiffe://x": "user:nope" } }],
          routes: [
            { path: "/orgs/{org}", permission: "x", resource: "organization:{team}" },
            { path: "/a", method: "get", permission: "x", resource: "organization:not-a-uuid" },
            { path: "/b" },
            { name: "dup", permission: "x", resource: `organization:${ORG}` },
            { name: "dup", permission: "x", resource: `organization:${ORG}`, rate_limit: { cost: -1 } },
          ],
          rate_limit_service: { subject_keys: { user: "robot" } },
        },
        "mesh.json",
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join("\n");
    for (const want of [
      "$.unknown_route",
      "$.subjekt",
      "$.subject[0].from",
      '$.subject[1].principals["spiffe://x"]',
      "$.routes[0].resource: uses {team}",
      "$.routes[1].resource",
      "$.routes[2].permission",
      "$.routes[2].resource",
      '$.routes[4].name: "dup"',
      "$.routes[4].rate_limit.policy",
      "$.routes[4].rate_limit.cost",
      "$.rate_limit_service.subject_keys.user",
    ]) {
      expect(problems).toContain(want);
    }
    expect(problems.startsWith("mesh.json: ")).toBe(true);
  });
});

describe("routes", () => {
  const mesh = parseMeshConfig(
    {
      routes: [
        { name: "read", method: "GET", path: "/orgs/{org}", permission: "members.read", resource: "organization:{org}" },
        { name: "any", path: "/orgs/{org}", permission: "members.invite", resource: "organization:{org}" },
        { name: "eng", permission: "members.read", resource: `organization:${ORG}` },
      ],
    },
    "test",
  );

  it("the table matches by method and path, first match wins", () => {
    expect(resolveRoute(mesh, req({ path: `/orgs/${ORG}` }))).toMatchObject({ kind: "route", route: { name: "read" }, vars: { org: ORG }, via: "table" });
    expect(resolveRoute(mesh, req({ method: "post", path: `/orgs/${ORG}` }))).toMatchObject({ route: { name: "any" } });
  });

  it("context_extensions pick a named route or describe one inline; bad ones are mapping errors", () => {
    expect(resolveRoute(mesh, req({ contextExtensions: { authz_route: "eng" } }))).toMatchObject({ route: { name: "eng" }, via: "context_extensions" });
    const inline = resolveRoute(
      mesh,
      req({ path: "/x/42", contextExtensions: { authz_permission: "p", authz_resource: "organization:{id}", authz_path: "/x/{id}" } }),
    );
    expect(inline).toMatchObject({ kind: "route", vars: { id: "42" }, route: { permission: "p" } });
    expect(() => resolveRoute(mesh, req({ contextExtensions: { authz_route: "nope" } }))).toThrow(MeshMappingError);
    expect(() => resolveRoute(mesh, req({ contextExtensions: { authz_permission: "p" } }))).toThrow(MeshMappingError);
    expect(() => resolveRoute(mesh, req({ contextExtensions: { authz_permission: "p", authz_resource: "organization:{id}" } }))).toThrow(/does not capture/);
    expect(() =>
      resolveRoute(
        mesh,
        req({
          contextExtensions: { authz_permission: "p", authz_resource: `organization:${ORG}`, authz_rate_limit_policy: "x", authz_rate_limit_cost: "lots" },
        }),
      ),
    ).toThrow(MeshMappingError);
  });
});

describe("subjects", () => {
  const payload = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const mesh = parseMeshConfig(
    {
      subject: [
        { from: "jwt", claim: "ctx.user", type: "user", header: "x-jwt-payload", set_by_sidecar: true },
        { from: "jwt", claim: "sub" },
        { from: "peer", principals: { "spiffe://a": `principal:${USER}` } },
      ],
    },
    "test",
  );

  it("tries the sources in order: forwarded JWT payload header, jwt_authn metadata, peer principal", () => {
    expect(resolveSubject(mesh, req({ headers: { "x-jwt-payload": payload({ ctx: { user: USER } }) } }))).toMatchObject({
      kind: "subject",
      ref: { type: "user", id: USER },
      from: "jwt",
    });
    const meta = req({ metadata: (ns) => (ns === "envoy.filters.http.jwt_authn" ? { jwt_payload: { sub: `staff:${USER}` } } : undefined) });
    expect(resolveSubject(mesh, meta)).toMatchObject({ ref: { type: "staff", id: USER } });
    expect(resolveSubject(mesh, req({ principal: "spiffe://a" }))).toMatchObject({ ref: { type: "principal" }, from: "peer" });
    expect(resolveSubject(mesh, req({ principal: "spiffe://b" }))).toEqual({ kind: "none" });
  });

  it("a present but unreadable source is malformed, never skipped", () => {
    expect(resolveSubject(mesh, req({ headers: { "x-jwt-payload": "%%%" } }))).toMatchObject({ kind: "malformed" });
    const meta = req({ metadata: () => ({ jwt_payload: { sub: "no-colon" } }), principal: "spiffe://a" });
    expect(resolveSubject(mesh, meta)).toMatchObject({ kind: "malformed" });
  });
});

describe("rate-limit helpers", () => {
  const m = parseMeshConfig(
    { rate_limit_service: { policy_key: "policy", subject_keys: { user_id: "user", org: "organization", remote_address: "key" } } },
    "t",
  ).rateLimitService;

  it("reads a descriptor: the policy entry and the first entry of each subject type", () => {
    expect(
      planDescriptor(m, [
        { key: "policy", value: "p" },
        { key: "user_id", value: "u" },
        { key: "org", value: "o" },
        { key: "user_id", value: "v" },
        { key: "other", value: "x" },
      ]),
    ).toEqual({
      policy: "p",
      subjects: { user: "u", organization: "o" },
    });
    expect(planDescriptor(m, [{ key: "remote_address", value: "10.0.0.1" }])).toEqual({ policy: undefined, subjects: { key: "10.0.0.1" } });
  });

  it("maps windows to RLS units: exact when possible, else the next longer unit", () => {
    expect([1, 60, 300, 3600, 86_400, 604_800, 100_000_000].map(windowUnit)).toEqual(["second", "minute", "hour", "hour", "day", "week", "year"]);
  });

  it("builds RateLimit-* and Retry-After in whole seconds", () => {
    expect(rateLimitHeaders({ limit: 5, remaining: 0, resetAfterUs: 1_200_000, retryAfterUs: 300_000 }, true)).toEqual([
      ["retry-after", "1"],
      ["ratelimit-limit", "5"],
      ["ratelimit-remaining", "0"],
      ["ratelimit-reset", "2"],
    ]);
    expect(rateLimitHeaders({ limit: 5, remaining: 3, resetAfterUs: 0, retryAfterUs: 0 }, false)).toEqual([
      ["ratelimit-limit", "5"],
      ["ratelimit-remaining", "3"],
      ["ratelimit-reset", "0"],
    ]);
    // A cost that can never pass: no Retry-After (waiting does not help), the rest as usual.
    expect(rateLimitHeaders({ limit: 5, remaining: 5, resetAfterUs: 4_000_000, retryAfterUs: -1 }, true)).toEqual([
      ["ratelimit-limit", "5"],
      ["ratelimit-remaining", "5"],
      ["ratelimit-reset", "4"],
    ]);
  });
});
