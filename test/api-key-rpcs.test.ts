// CreateApiKey, ListApiKeys and RevokeApiKey (AdminService) on a real
// Postgres with authentication on, over real sockets: the admin scope, no
// scope escalation, tenant confinement, and a new or revoked key taking
// effect on the running server.
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListApiKeysRequestSchema } from "../gen/authz/v1/admin_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { connect, RemoteError } from "../src/rpc/client.js";
import { insertApiKey } from "../src/store/api-key-store.js";
import { importDocument } from "../src/store/import.js";
import { projectPath } from "../src/paths.js";
import { readFileSync } from "node:fs";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import { connectUnary, frame, grpcWeb } from "./support/edge-calls.js";

const OTHER_TENANT = "0000aaaa-0000-4000-8000-000000000001";
const ADMIN = "authz.v1.AdminService";
const CHECK = { subject: { type: "user", id: DEMO.user.alice }, permission: "members.read", resource: { type: "organization", id: DEMO.org.eng } };

let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const keys: Record<string, string> = {};

async function addKey(name: string, scopes: Scope[], tenant: string | null = null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await insertApiKey(t.client, record);
  return key;
}

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  await t.raw`insert into tenants (id, name, slug) values (${OTHER_TENANT}, 'Other', 'other')`;
  keys.admin = await addKey("admin", ["admin", "check"]);
  keys.adminOnly = await addKey("admin-only", ["admin"]);
  keys.check = await addKey("checker", ["check"]);
  keys.acme = await addKey("acme-admin", ["admin", "check"], DEMO.tenant.acme);
  keys.other = await addKey("other-admin", ["admin"], OTHER_TENANT);
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

const as = (key: string) => connect({ server: `127.0.0.1:${ports.grpcPort}`, credential: key, timeoutMs: 10_000 });

/** The call's refusal as code and reason (when the reason is not just the code), or "OK". */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (err) {
    if (!(err instanceof RemoteError)) throw err;
    return err.reason && err.reason !== err.code ? `${err.code} ${err.reason}` : err.code;
  }
}

/** Polls Check with a key until it answers `want` (the key cache follows NOTIFY), bounded. */
async function checkUntil(key: string, want: string): Promise<string> {
  const end = Date.now() + 5000;
  let got = "";
  while (Date.now() < end && (got = await refusal(as(key).call("authz.v1.PermissionService", "Check", CHECK))) !== want) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return got;
}

describe("API-key RPCs", () => {
  it("an admin creates a key that works at once, lists it without a secret, and revoking it stops it", async () => {
    const created = (await as(keys.admin as string).call(ADMIN, "CreateApiKey", { name: "svc", scopes: ["check"] })) as {
      apiKey: { id: string; scopes: string[]; tenantId: string; createdAt: string };
      key: string;
    };
    expect(created.key).toMatch(new RegExp(`^azk_${created.apiKey.id}_`));
    expect(created.apiKey).toMatchObject({ scopes: ["check"], tenantId: "" });
    expect(await checkUntil(created.key, "OK")).toBe("OK");

    const listed = (await as(keys.admin as string).call(ADMIN, "ListApiKeys", {})) as { apiKeys: Record<string, unknown>[] };
    const mine = listed.apiKeys.find((k) => k.id === created.apiKey.id);
    expect(mine).toMatchObject({ name: "svc", scopes: ["check"] });
    expect(JSON.stringify(listed)).not.toContain(created.key.slice(22));

    expect(await as(keys.admin as string).call(ADMIN, "RevokeApiKey", { id: created.apiKey.id })).toEqual({ revoked: true });
    expect(await as(keys.admin as string).call(ADMIN, "RevokeApiKey", { id: created.apiKey.id })).toEqual({ revoked: false });
    expect(await checkUntil(created.key, "UNAUTHENTICATED")).toBe("UNAUTHENTICATED");
  });

  it("pages through the keys in id order", async () => {
    const first = (await as(keys.admin as string).call(ADMIN, "ListApiKeys", { pageSize: 2 })) as { apiKeys: { id: string }[]; nextPageToken: string };
    expect(first.apiKeys).toHaveLength(2);
    const second = (await as(keys.admin as string).call(ADMIN, "ListApiKeys", { pageSize: 2, pageToken: first.nextPageToken })) as {
      apiKeys: { id: string }[];
    };
    const ids = [...first.apiKeys, ...second.apiKeys].map((k) => k.id);
    expect(ids).toEqual([...ids].sort());
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("needs the admin scope and grants no scope its creator lacks; bad input is INVALID_ARGUMENT", async () => {
    expect(await refusal(as(keys.check as string).call(ADMIN, "ListApiKeys", {}))).toBe("PERMISSION_DENIED MISSING_SCOPE");
    expect(await refusal(as(keys.adminOnly as string).call(ADMIN, "CreateApiKey", { name: "x", scopes: ["check"] }))).toBe("PERMISSION_DENIED SCOPE_NOT_HELD");
    expect(await refusal(as(keys.admin as string).call(ADMIN, "CreateApiKey", { name: "x", scopes: ["root"] }))).toBe("INVALID_ARGUMENT");
    expect(await refusal(as(keys.admin as string).call(ADMIN, "CreateApiKey", { name: "", scopes: ["check"] }))).toBe("INVALID_ARGUMENT");
    // A name that displays as another (a line break, a right-to-left override) in listings and tables.
    for (const name of ["a\nb", "ops\u202e1yek", "tab\there", "\u2066x\u2069"]) {
      expect(await refusal(as(keys.admin as string).call(ADMIN, "CreateApiKey", { name, scopes: ["check"] }))).toBe("INVALID_ARGUMENT");
    }
    expect(await refusal(as(keys.admin as string).call(ADMIN, "RevokeApiKey", { id: "nope" }))).toBe("INVALID_ARGUMENT");
    expect(await refusal(as(keys.admin as string).call(ADMIN, "RevokeApiKey", { id: "0123456789abcdef" }))).toBe("NOT_FOUND API_KEY_NOT_FOUND");
    const missingTenant = { name: "x", scopes: ["check"], tenantId: "0000bbbb-0000-4000-8000-000000000001" };
    expect(await refusal(as(keys.admin as string).call(ADMIN, "CreateApiKey", missingTenant))).toBe("NOT_FOUND");
  });

  it("a tenant-bound admin creates keys of its tenant, sees only them and cannot revoke others", async () => {
    const acme = as(keys.acme as string);
    const own = (await acme.call(ADMIN, "CreateApiKey", { name: "acme-svc", scopes: ["check"] })) as { apiKey: { id: string; tenantId: string } };
    expect(own.apiKey.tenantId).toBe(DEMO.tenant.acme);
    expect(await refusal(acme.call(ADMIN, "CreateApiKey", { name: "x", scopes: ["check"], tenantId: OTHER_TENANT }))).toBe("PERMISSION_DENIED OTHER_TENANT");
    const listed = (await acme.call(ADMIN, "ListApiKeys", {})) as { apiKeys: { id: string; tenantId: string }[] };
    expect(listed.apiKeys.map((k) => k.tenantId)).toEqual(listed.apiKeys.map(() => DEMO.tenant.acme));
    expect(listed.apiKeys.map((k) => k.id)).toContain(own.apiKey.id);
    const unbound = (keys.check as string).split("_")[1] as string;
    const otherTenants = (keys.other as string).split("_")[1] as string;
    expect(await refusal(acme.call(ADMIN, "RevokeApiKey", { id: unbound }))).toBe("PERMISSION_DENIED OTHER_TENANT");
    expect(await refusal(acme.call(ADMIN, "RevokeApiKey", { id: otherTenants }))).toBe("PERMISSION_DENIED OTHER_TENANT");
    expect(await acme.call(ADMIN, "RevokeApiKey", { id: own.apiKey.id })).toEqual({ revoked: true });
  });

  it("is served on Connect and gRPC-Web as well", async () => {
    const url = (m: string) => `http://127.0.0.1:${ports.httpPort}/${ADMIN}/${m}`;
    const res = await fetch(url("CreateApiKey"), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.admin}` },
      body: JSON.stringify({ name: "via-connect", scopes: ["check"] }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { key: string }).key).toMatch(/^azk_/);
    expect((await connectUnary(url("ListApiKeys"), "{}", "application/json", { authorization: `Bearer ${keys.check}` })).code).toBe("PERMISSION_DENIED");
    const body = frame(0, toBinary(ListApiKeysRequestSchema, create(ListApiKeysRequestSchema, {})));
    expect((await grpcWeb(url("ListApiKeys"), body, { authorization: `Bearer ${keys.admin}` })).code).toBe("OK");
    expect((await grpcWeb(url("ListApiKeys"), body, { authorization: `Bearer ${keys.check}` })).code).toBe("PERMISSION_DENIED");
  });
});
