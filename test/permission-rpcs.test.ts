import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";

const ENG = "00000002-0000-4000-8000-000000000001";
const SALES = "00000002-0000-4000-8000-000000000002";
const ALICE = "00000003-0000-4000-8000-000000000001";
const BOB = "00000003-0000-4000-8000-000000000002"; // admin in eng, member in sales
const DAVE = "00000003-0000-4000-8000-000000000004"; // locked
const ALICE_PRINCIPAL = "00000006-0000-4000-8000-000000000001";
const ACME_BOT = "00000007-0000-4000-8000-000000000001";

let t: TestDatabase;
let app: App;
let port = 0;
let httpPort = 0;
const protos = loadProtos();
type Svc = ReturnType<typeof client>;
let perms: Svc;

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ({ grpcPort: port, httpPort } = await app.listen());
  await app.ready;
  perms = client(protos, "authz.v1.PermissionService", port);
}, 60_000);
afterAll(async () => {
  perms?.close();
  await app?.stop();
  await t?.drop();
});

const user = (id: string) => ({ type: "user", id });
const org = (id: string) => ({ type: "organization", id });

describe("Check", () => {
  it("explains an allow with the path and a deny with its reason", async () => {
    const allow = await unary<{ allowed: boolean; reason: string; explanation: { steps: Array<{ kind: string; key: string }>; message: string } }>(
      perms,
      "Check",
      { subject: user(ALICE), permission: "members.read", resource: org(ENG), explain: true },
    );
    expect(allow.allowed).toBe(true);
    expect(allow.explanation.steps.map((s) => `${s.kind.replace("EXPLANATION_STEP_KIND_", "")}:${s.key}`)).toEqual([
      "ASSIGNMENT:",
      "ROLE:owner",
      "INHERITED_ROLE:admin",
      "INHERITED_ROLE:member",
      "PERMISSION:members.read",
    ]);
    const deny = await unary<{ allowed: boolean; reason: string; explanation: { message: string } }>(perms, "Check", {
      subject: user(DAVE),
      permission: "members.read",
      resource: org(ENG),
      explain: true,
    });
    expect(deny).toMatchObject({ allowed: false, reason: "DECISION_REASON_SUBJECT_LOCKED" });
    expect(deny.explanation.message).toMatch(/SUBJECT_LOCKED/);
  });

  it("a malformed token is INVALID_ARGUMENT", async () => {
    const err = (await unary(perms, "Check", {
      subject: user(ALICE),
      permission: "members.read",
      resource: org(ENG),
      consistency: { at_least_as_fresh: "zed-token" },
    }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("CheckBulk", () => {
  it("answers 1000 items at one revision, with per-item errors that do not fail the rest", async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({
      correlation_id: `c${i}`,
      subject: i === 7 ? { type: "robot", id: ALICE } : user(i % 2 ? ALICE : DAVE),
      permission: "members.read",
      resource: org(ENG),
    }));
    const res = await unary<{ revision: string; results: Array<{ correlation_id: string; allowed: boolean; reason: string; error?: { code: string } }> }>(
      perms,
      "CheckBulk",
      { items },
    );
    expect(res.results).toHaveLength(1000);
    expect(res.results[1]).toMatchObject({ correlation_id: "c1", allowed: true, reason: "DECISION_REASON_GRANTED" });
    expect(res.results[2]).toMatchObject({ correlation_id: "c2", allowed: false, reason: "DECISION_REASON_SUBJECT_LOCKED" });
    expect(res.results[7]).toMatchObject({ correlation_id: "c7", allowed: false, error: { code: "INVALID_ARGUMENT" } });
    expect(res.revision).toMatch(/^\d+$/);
  });

  it("more than 1000 items is INVALID_ARGUMENT", async () => {
    const items = Array.from({ length: 1001 }, () => ({ subject: user(ALICE), permission: "members.read", resource: org(ENG) }));
    const err = (await unary(perms, "CheckBulk", { items }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/at most 1000/);
  });
});

type Listing = {
  scopes: Array<{
    org_id: string;
    scope: { type: string; id: string } | null;
    user_role: string;
    inherited_user_roles_plus_current_role: string[];
    user_permissions: string[];
    additional_roles: string[];
    url_safe_org_name: string;
  }>;
  revision: string;
  next_page_token: string;
  subject_status: string;
};

describe("ListPermissions", () => {
  it("lists a user's organizations in the UserOrganizationInfo shape", async () => {
    const l = await unary<Listing>(perms, "ListPermissions", { subject: user(BOB) });
    expect(l.subject_status).toBe("DECISION_REASON_GRANTED");
    const eng = l.scopes.find((s) => s.org_id === ENG);
    expect(eng).toMatchObject({ user_role: "admin", url_safe_org_name: "acme-eng", inherited_user_roles_plus_current_role: ["admin", "member"] });
    expect(eng?.user_permissions).toContain("members.invite");
    expect(eng?.user_permissions).not.toContain("org.delete");
    expect(l.scopes.some((s) => s.org_id === SALES)).toBe(true);
  });

  it("a locked user holds nothing and says why; an unknown one is NOT_FOUND", async () => {
    const l = await unary<Listing>(perms, "ListPermissions", { subject: user(DAVE) });
    expect(l).toMatchObject({ subject_status: "DECISION_REASON_SUBJECT_LOCKED", scopes: [] });
    const err = (await unary(perms, "ListPermissions", { subject: user("00000003-0000-4000-8000-0000000000ff") }).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.NOT_FOUND);
  });

  it("lists a principal per scope, including its avatar memberships", async () => {
    const l = await unary<Listing>(perms, "ListPermissions", { subject: { type: "principal", id: ALICE_PRINCIPAL } });
    const bot = l.scopes.find((s) => s.scope?.type === "avatar" && s.scope.id === ACME_BOT);
    expect(bot).toBeDefined();
    expect([bot?.user_role, ...(bot?.additional_roles ?? [])]).toEqual(expect.arrayContaining(["avatar_owner", "avatar_member"]));
    expect(bot?.user_permissions).toEqual(expect.arrayContaining(["avatar.moderate", "avatar.post"]));
  });

  it("pages with a token, and a change between pages aborts instead of mixing states", async () => {
    const first = await unary<Listing>(perms, "ListPermissions", { subject: user(BOB), page_size: 1 });
    expect(first.scopes).toHaveLength(1);
    expect(first.next_page_token).not.toBe("");
    const second = await unary<Listing>(perms, "ListPermissions", { subject: user(BOB), page_size: 1, page_token: first.next_page_token });
    expect(second.scopes).toHaveLength(1);
    expect(second.scopes[0]?.org_id).not.toBe(first.scopes[0]?.org_id);

    // Change what bob holds, then ask for page 2 again with the old token.
    const admin = client(protos, "authz.v1.AdminService", port);
    const w = await unary<{ revision: string }>(admin, "ManageRoles", {
      mutations: [{ assign_role: { subject: user(BOB), role: { key: { organization_id: SALES, key: "billing" } }, scope: org(SALES) } }],
    });
    admin.close();
    const err = (await unary(perms, "ListPermissions", {
      subject: user(BOB),
      page_size: 1,
      page_token: first.next_page_token,
      consistency: { at_least_as_fresh: w.revision },
    }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.ABORTED);

    const otherRequest = (await unary(perms, "ListPermissions", { subject: user(ALICE), page_size: 1, page_token: first.next_page_token }).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(otherRequest.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("metrics", () => {
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  };
  const value = (text: string, series: string): number => {
    const line = text.split("\n").find((l) => l.startsWith(series + " "));
    return line ? Number(line.slice(series.length + 1)) : 0;
  };

  it("exposes per-RPC counts and latency, decisions, freshness and process metrics, and they move", async () => {
    const before = await scrape();
    await unary(perms, "Check", { subject: user(ALICE), permission: "members.read", resource: org(ENG) });
    await unary(perms, "Check", { subject: user(DAVE), permission: "members.read", resource: org(ENG) });
    const after = await scrape();
    const okChecks = 'authz_rpc_requests_total{method="/authz.v1.PermissionService/Check",code="OK"}';
    expect(value(after, okChecks)).toBe(value(before, okChecks) + 2);
    const allowed = 'authz_decisions_total{method="Check",allowed="true"}';
    const denied = 'authz_decisions_total{method="Check",allowed="false"}';
    expect(value(after, allowed)).toBe(value(before, allowed) + 1);
    expect(value(after, denied)).toBe(value(before, denied) + 1);
    expect(after).toMatch(/authz_rpc_duration_seconds_bucket\{le="0.001",method="\/authz.v1.PermissionService\/Check",code="OK"\}/);
    expect(value(after, "authz_engine_revision")).toBeGreaterThan(0);
    expect(value(after, "authz_engine_lag_revisions")).toBe(0);
    expect(value(after, "authz_serving")).toBe(1);
    expect(after).toMatch(/^authz_process_resident_memory_bytes \d+/m);
    expect(after).toMatch(/^authz_listener_reconnects_total 0/m);
    expect(after).toMatch(/^authz_ratelimit_store_state\{state="(up|embedded)"\} 1/m);
  });
});
