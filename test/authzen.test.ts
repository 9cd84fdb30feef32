// The AuthZEN Authorization API 1.0 over HTTP JSON against the real server:
// createApp on a fresh database loaded with examples/demo.json,
// authentication on (API keys). Request and response shapes follow the spec's
// examples, with the demo's subjects and resources.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";

const { user: U, org: O, avatar: A } = DEMO;
const OTHER_TENANT = "0000aaaa-0000-4000-8000-000000000001";
const MAX_BODY = 131_072;

let t: TestDatabase;
let app: App;
let base = "";
const keys: Record<string, string> = {};

async function addKey(name: string, scopes: Scope[], tenant: string | null = null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  return key;
}

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  await t.raw`insert into tenants (id, name, slug) values (${OTHER_TENANT}, 'Other', 'other')`;
  keys.pep = await addKey("pep", ["check"]);
  keys.limiter = await addKey("limiter-only", ["ratelimit"]);
  keys.other = await addKey("other-tenant", ["check"], OTHER_TENANT);
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      AUTHZ_AUTH: "on",
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_MAX_MESSAGE_BYTES: String(MAX_BODY),
    }),
    createLogger("silent"),
  );
  const { httpPort } = await app.listen();
  await app.ready;
  base = `http://127.0.0.1:${httpPort}`;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

interface Decision {
  decision: boolean;
  context?: { reason?: string; error?: { status: number; message: string } };
}

async function post(path: string, body: unknown, opts: { key?: string | null; headers?: Record<string, string>; raw?: string } = {}) {
  const key = opts.key === undefined ? keys.pep : opts.key;
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...opts.headers },
    body: opts.raw ?? JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}
const evaluation = (body: unknown, opts?: Parameters<typeof post>[2]) => post("/access/v1/evaluation", body, opts);
const evaluations = (body: unknown, opts?: Parameters<typeof post>[2]) => post("/access/v1/evaluations", body, opts);

const user = (id: string) => ({ type: "user", id });
const org = (id: string) => ({ type: "organization", id });

describe("POST /access/v1/evaluation", () => {
  it("allows and denies as Check does, with the revision in a header", async () => {
    const yes = await evaluation({ subject: user(U.alice), action: { name: "members.read" }, resource: org(O.eng) });
    expect(yes.status).toBe(200);
    expect(yes.headers.get("content-type")).toMatch(/^application\/json/);
    expect(yes.body).toEqual({ decision: true });
    expect(BigInt(yes.headers.get("x-authz-revision") as string)).toBeGreaterThan(0n);
    const no = await evaluation({ subject: user(U.carol), action: { name: "members.invite" }, resource: org(O.eng) });
    expect(no).toMatchObject({ status: 200, body: { decision: false, context: { reason: "no_grant" } } });
  });

  it("the spec's example request is understood: properties and context are accepted; an entity we cannot hold is a denial", async () => {
    const spec = {
      subject: { type: "user", id: "alice@example.com" },
      resource: { type: "account", id: "123" },
      action: { name: "can_read", properties: { method: "GET" } },
      context: { time: "1985-10-26T01:22-07:00" },
    };
    const r = await evaluation(spec);
    expect(r.status).toBe(200);
    const d = r.body as unknown as Decision;
    expect(d.decision).toBe(false);
    expect(d.context?.reason).toBe("subject_not_found");
    expect(d.context?.error?.status).toBe(400);
    // The same shape with the demo's entities and extra properties.
    const ours = await evaluation({
      subject: { ...user(U.alice), properties: { department: "Engineering", ip_address: "172.217.22.14" } },
      action: { name: "members.read", properties: { method: "GET" } },
      resource: { ...org(O.eng), properties: { library_record: { title: "x" } } },
      context: { time: "1985-10-26T01:22-07:00" },
    });
    expect(ours.body).toEqual({ decision: true });
  });

  it("echoes X-Request-ID, and sends one when the PEP did not", async () => {
    const id = "bfe9eb29-ab87-4ca3-be83-a1d5d8305716";
    const r = await evaluation({ subject: user(U.alice), action: { name: "members.read" }, resource: org(O.eng) }, { headers: { "x-request-id": id } });
    expect(r.headers.get("x-request-id")).toBe(id);
    const none = await evaluation({ subject: user(U.alice), action: { name: "members.read" }, resource: org(O.eng) });
    expect(none.headers.get("x-request-id")).toMatch(/\S+/);
  });

  it("missing required entities, bad JSON and a non-object body are 400 with a JSON error", async () => {
    for (const body of [
      { action: { name: "members.read" }, resource: org(O.eng) },
      { subject: user(U.alice), resource: org(O.eng) },
      { subject: "alice", action: { name: "x" }, resource: org(O.eng) },
      [1, 2],
    ]) {
      const r = await evaluation(body);
      expect(r.status).toBe(400);
      expect(r.headers.get("content-type")).toMatch(/^application\/json/);
      expect(r.body).toMatchObject({ error: { status: 400, message: expect.any(String) } });
    }
    const bad = await evaluation(undefined, { raw: '{"subject": {"type": "user",' });
    expect(bad.status).toBe(400);
    expect((bad.body as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
  });

  it("415 for a body that is not JSON, 405 for other methods, 413 above the size limit", async () => {
    const text = await evaluation(undefined, { raw: "subject=alice", headers: { "content-type": "text/plain" } });
    expect(text.status).toBe(415);
    const get = await fetch(`${base}/access/v1/evaluation`, { headers: { authorization: `Bearer ${keys.pep}` } });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const big = await evaluation({ subject: user(U.alice), action: { name: "members.read" }, resource: org(O.eng), context: { pad: "x".repeat(MAX_BODY) } });
    expect(big.status).toBe(413);
  });

  it("callers authenticate like any RPC: 401 without a credential, 403 without the check scope or for another tenant's data", async () => {
    const body = { subject: user(U.alice), action: { name: "members.read" }, resource: org(O.eng) };
    const anon = await evaluation(body, { key: null });
    expect(anon.status).toBe(401);
    expect(anon.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(anon.body).toMatchObject({ error: { status: 401 } });
    expect((await evaluation(body, { key: keys.limiter })).status).toBe(403);
    expect((await evaluation(body, { key: keys.other })).status).toBe(403);
  });
});

describe("POST /access/v1/evaluations", () => {
  // The spec's three-semantics example: one subject and action, three resources (allowed, denied, allowed).
  const three = (semantic?: string) => ({
    subject: user(U.carol),
    action: { name: "members.read" },
    ...(semantic ? { options: { evaluations_semantic: semantic } } : {}),
    evaluations: [{ resource: org(O.eng) }, { resource: org(O.sales) }, { resource: { type: "avatar", id: A.engNews } }],
  });

  it("execute_all (the default) returns every decision in request order, without a top-level decision", async () => {
    for (const body of [three(), three("execute_all")]) {
      const r = await evaluations(body);
      expect(r.status).toBe(200);
      expect(r.body).not.toHaveProperty("decision");
      expect((r.body.evaluations as Decision[]).map((d) => d.decision)).toEqual([true, false, true]);
    }
  });

  it("deny_on_first_deny stops at the first denial, which is the last result", async () => {
    const r = await evaluations(three("deny_on_first_deny"));
    const list = r.body.evaluations as Decision[];
    expect(list.map((d) => d.decision)).toEqual([true, false]);
    expect(list[1]?.context?.reason).toBe("no_grant");
  });

  it("permit_on_first_permit stops at the first permit", async () => {
    const r = await evaluations(three("permit_on_first_permit"));
    expect(r.body).toEqual({ evaluations: [{ decision: true }] });
    const late = await evaluations({
      ...three("permit_on_first_permit"),
      evaluations: [{ resource: org(O.sales) }, { resource: org(O.eng) }, { resource: org(O.sales) }],
    });
    expect((late.body.evaluations as Decision[]).map((d) => d.decision)).toEqual([false, true]);
  });

  it("top-level values are defaults; an item's own key replaces the default", async () => {
    const r = await evaluations({
      subject: user(U.carol),
      context: { time: "2024-05-31T15:22-07:00" },
      action: { name: "members.read" },
      evaluations: [
        { resource: org(O.eng) },
        { resource: org(O.eng), action: { name: "members.invite" } },
        { resource: org(O.eng), subject: user(U.bob), action: { name: "members.invite" } },
      ],
    });
    expect((r.body.evaluations as Decision[]).map((d) => d.decision)).toEqual([true, false, true]);
  });

  it("no defaults at all: every item carries its own subject, action and resource", async () => {
    const r = await evaluations({
      evaluations: [
        { subject: user(U.alice), action: { name: "members.read" }, resource: org(O.eng), context: { time: "2024-05-31T15:22-07:00" } },
        { subject: user(U.dave), action: { name: "members.read" }, resource: org(O.eng) },
      ],
    });
    expect(r.body).toEqual({ evaluations: [{ decision: true }, { decision: false, context: { reason: "subject_locked" } }] });
  });

  it("per-evaluation errors are denials with context.error; the rest still run", async () => {
    const r = await evaluations({
      action: { name: "members.read" },
      subject: user(U.alice),
      evaluations: [{ resource: { type: "document", id: "1" } }, { resource: org(O.eng) }],
    });
    const [first, second] = r.body.evaluations as Decision[];
    expect(first).toMatchObject({ decision: false, context: { reason: "resource_not_found", error: { status: 400 } } });
    expect(second).toEqual({ decision: true });
    // A tenant-bound caller asking about another tenant's data: that item fails with 403.
    const other = await evaluations({ action: { name: "members.read" }, subject: user(U.alice), evaluations: [{ resource: org(O.eng) }] }, { key: keys.other });
    expect(other.status).toBe(200);
    expect((other.body.evaluations as Decision[])[0]).toMatchObject({ decision: false, context: { reason: "permission_denied", error: { status: 403 } } });
  });

  it("without an evaluations array (or with an empty one) it behaves as a single evaluation", async () => {
    const single = { subject: user(U.alice), action: { name: "members.read" }, resource: org(O.eng) };
    expect((await evaluations(single)).body).toEqual({ decision: true });
    expect((await evaluations({ ...single, evaluations: [] })).body).toEqual({ decision: true });
  });

  it("malformed batches are 400: an item missing an entity with no default, a bad semantic, too many items", async () => {
    const missing = await evaluations({ action: { name: "members.read" }, evaluations: [{ resource: org(O.eng) }] });
    expect(missing.status).toBe(400);
    expect((missing.body as { error: { message: string } }).error.message).toMatch(/evaluations\[0\]\.subject/);
    const semantic = await evaluations({ ...three(), options: { evaluations_semantic: "first_match" } });
    expect(semantic.status).toBe(400);
    const notArray = await evaluations({ ...three(), evaluations: { resource: org(O.eng) } });
    expect(notArray.status).toBe(400);
    const many = await evaluations({
      subject: user(U.alice),
      action: { name: "members.read" },
      evaluations: Array.from({ length: 1001 }, () => ({ resource: org(O.eng) })),
    });
    expect(many.status).toBe(400);
  });
});

describe("GET /.well-known/authzen-configuration", () => {
  it("publishes the endpoints as absolute URLs, without authentication", async () => {
    const res = await fetch(`${base}/.well-known/authzen-configuration`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      policy_decision_point: base,
      access_evaluation_endpoint: `${base}/access/v1/evaluation`,
      access_evaluations_endpoint: `${base}/access/v1/evaluations`,
      search_subject_endpoint: `${base}/access/v1/search/subject`,
      search_resource_endpoint: `${base}/access/v1/search/resource`,
      search_action_endpoint: `${base}/access/v1/search/action`,
    });
    const post = await fetch(`${base}/.well-known/authzen-configuration`, { method: "POST" });
    expect(post.status).toBe(405);
  });

  it("other paths under /access/v1/ are 404", async () => {
    const r = await post("/access/v1/search/everything", { subject: { type: "user" }, action: { name: "members.read" }, resource: org(O.eng) });
    expect(r.status).toBe(404);
  });
});

// Search: every answer is compared with evaluations of the same server.
const DEMO_DOC = JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as {
  Permission: Array<{ name: string }>;
  CAPABILITY: Array<{ key: string }>;
};
const ALL_KEYS = [...new Set([...DEMO_DOC.Permission.map((p) => p.name), ...DEMO_DOC.CAPABILITY.map((c) => c.key)])].sort();
const search = (kind: string, body: unknown, opts?: Parameters<typeof post>[2]) => post(`/access/v1/search/${kind}`, body, opts);
type Page = { results: Array<Record<string, string>>; page: { next_token: string; count: number } };

/** Every page of a search, following page.next_token with the same body. */
async function allResults(kind: string, body: Record<string, unknown>, limit: number) {
  const out: Array<Record<string, string>> = [];
  const revisions = new Set<string>();
  let token = "";
  do {
    const r = await search(kind, { ...body, page: { limit, ...(token ? { token } : {}) } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    revisions.add(r.headers.get("x-authz-revision") ?? "");
    const p = r.body as unknown as Page;
    expect(p.page.count).toBe(p.results.length);
    out.push(...p.results);
    token = p.page.next_token;
  } while (token);
  return { out, revisions };
}

const allowed = async (subject: unknown, name: string, resource: unknown) =>
  ((await evaluation({ subject, action: { name }, resource })).body as unknown as Decision).decision;

describe("POST /access/v1/search/*", () => {
  it("subject search: the users an evaluation allows, paged by 2 at one revision", async () => {
    let nonEmpty = 0;
    for (const name of ["members.read", "billing.manage", "avatar.view"]) {
      for (const resource of [org(O.eng), org(O.sales), { type: "avatar", id: A.acmeBot }]) {
        const { out, revisions } = await allResults("subject", { subject: { type: "user" }, action: { name }, resource }, 2);
        expect(revisions.size).toBe(1);
        const want: string[] = [];
        for (const id of Object.values(U)) if (await allowed(user(id), name, resource)) want.push(id);
        expect(out.map((x) => `${x.type}:${x.id}`).sort(), `${name} on ${resource.id}`).toEqual(want.map((id) => `user:${id}`).sort());
        if (want.length > 0) nonEmpty++;
      }
    }
    expect(nonEmpty).toBeGreaterThanOrEqual(3);
  });

  it("resource search: the organizations and avatars an evaluation allows", async () => {
    for (const id of [U.alice, U.bob, U.dave]) {
      for (const name of ["members.read", "avatar.view"]) {
        for (const type of ["organization", "avatar"]) {
          const { out } = await allResults("resource", { subject: user(id), action: { name }, resource: { type } }, 1);
          const candidates = type === "organization" ? Object.values(O) : Object.values(A);
          const want: string[] = [];
          for (const rid of candidates) if (await allowed(user(id), name, { type, id: rid })) want.push(rid);
          expect(out.map((x) => x.id).sort(), `${id} ${name} ${type}`).toEqual(want.sort());
          expect(out.every((x) => x.type === type)).toBe(true);
        }
      }
    }
  });

  it("action search: exactly the keys an evaluation allows, sorted", async () => {
    for (const [subject, resource] of [
      [user(U.alice), org(O.eng)],
      [user(U.bob), org(O.sales)],
      [
        { type: "principal", id: DEMO.principal.bobEng },
        { type: "avatar", id: A.acmeBot },
      ],
      [user(U.dave), org(O.eng)],
    ] as const) {
      const { out } = await allResults("action", { subject, resource }, 3);
      const want: string[] = [];
      for (const k of ALL_KEYS) if (await allowed(subject, k, resource)) want.push(k);
      expect(out.map((x) => x.name)).toEqual(want);
    }
    const { out } = await allResults("action", { subject: user(U.alice), resource: org(O.eng) }, 100);
    expect(out.length).toBeGreaterThan(3);
  });

  it("malformed searches are 400; a bad token too", async () => {
    const base = { subject: { type: "user" }, action: { name: "members.read" }, resource: org(O.eng) };
    for (const body of [
      { ...base, action: undefined },
      { ...base, resource: { type: "organization" } },
      { ...base, subject: { type: "robot" } },
      { ...base, page: { limit: 0 } },
      { ...base, page: { limit: 5000 } },
      { ...base, page: { token: "garbage" } },
      { ...base, page: "x" },
      [],
    ]) {
      const r = await search("subject", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect((r.body as { error?: { message?: string } }).error?.message).toBeTruthy();
    }
    expect((await search("resource", { subject: user(U.alice), action: { name: "x" }, resource: {} })).status).toBe(400);
    expect((await search("action", { subject: user(U.alice) })).status).toBe(400);
    expect((await post("/access/v1/search/subject", base, { headers: { "content-type": "text/plain" } })).status).toBe(415);
  });

  it("credentials and tenancy as for evaluations: 401, 403 for another tenant's data", async () => {
    const body = { subject: { type: "user" }, action: { name: "members.read" }, resource: org(O.eng) };
    expect((await search("subject", body, { key: null })).status).toBe(401);
    expect((await search("subject", body, { key: keys.limiter })).status).toBe(403);
    expect((await search("subject", body, { key: keys.other })).status).toBe(403);
    expect((await search("action", { subject: user(U.alice), resource: org(O.eng) }, { key: keys.other })).status).toBe(403);
    const none = await search(
      "resource",
      { subject: user(U.alice), action: { name: "members.read" }, resource: { type: "organization" } },
      { key: keys.other },
    );
    expect(none.status).toBe(200);
    expect((none.body as unknown as Page).results).toEqual([]);
  });
});
