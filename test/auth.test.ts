// Who may call: API keys (table and file), JWTs, scopes per RPC, tenant-bound
// credentials, on every protocol (gRPC, Connect, gRPC-Web); limits; and that a
// call's credentials never reach the logs.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckRequestSchema } from "../gen/authz/v1/permission_service_pb.js";
import { hashSecret, mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos } from "./support/grpc-client.js";

const run = promisify(execFile);
const ACME = "00000001-0000-4000-8000-000000000001";
const ENG = "00000002-0000-4000-8000-000000000001";
const OTHER_TENANT = "0000aaaa-0000-4000-8000-000000000001";
const OTHER_ORG = "0000aaaa-0000-4000-8000-000000000002";
const ALICE = "00000003-0000-4000-8000-000000000001";

let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const logLines: string[] = [];
/** Waiters for a log line matching a pattern (events of the app, seen through its log). */
const logWaiters: Array<{ re: RegExp; resolve: () => void }> = [];
const nextLog = (re: RegExp) => new Promise<void>((resolve) => logWaiters.push({ re, resolve }));
const dir = mkdtempSync(join(tmpdir(), "authz-auth-"));
const protos = loadProtos();
const keys: Record<string, string> = {};
let signer: (claims: Record<string, unknown>, opts?: { exp?: string; iss?: string }) => Promise<string>;

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
  await t.raw`insert into organizations (id, tenant_id, name, slug) values (${OTHER_ORG}, ${OTHER_TENANT}, 'Other Org', 'other-org')`;
  keys.check = await addKey("checker", ["check"]);
  keys.ratelimit = await addKey("limiter", ["ratelimit"]);
  keys.admin = await addKey("admin", ["admin", "check"]);
  keys.acmeAdmin = await addKey("acme-admin", ["admin", "check"], ACME);

  // A key from a mounted file (hash only in the file).
  const fileKey = mintApiKey("file", ["check"], null);
  keys.file = fileKey.key;
  writeFileSync(
    join(dir, "keys.json"),
    JSON.stringify([{ id: fileKey.record.id, name: "file", sha256: hashSecret(fileKey.key.slice("azk_0123456789abcdef_".length)), scopes: ["check"] }]),
  );

  // JWTs signed by a key whose public half is in a JWKS file.
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  writeFileSync(join(dir, "jwks.json"), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" }] }));
  signer = (claims, opts = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setIssuer(opts.iss ?? "https://issuer.example")
      .setAudience("authz")
      .setSubject("svc-1")
      .setExpirationTime(opts.exp ?? "5m")
      .sign(privateKey);

  const sink = new Writable({
    write(chunk, _enc, cb) {
      const line = chunk.toString();
      logLines.push(line);
      for (const w of logWaiters.filter((x) => x.re.test(line))) {
        logWaiters.splice(logWaiters.indexOf(w), 1);
        w.resolve();
      }
      cb();
    },
  });
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_API_KEYS_FILE: join(dir, "keys.json"),
      AUTHZ_JWT_JWKS_FILE: join(dir, "jwks.json"),
      AUTHZ_JWT_ISSUER: "https://issuer.example",
      AUTHZ_JWT_AUDIENCE: "authz",
      AUTHZ_DECISION_LOG: join(dir, "decisions.log"),
      // Every successful call logged too, so that the secrets test below sees their lines.
      AUTHZ_RPC_LOG_SAMPLE: "1",
    }),
    createLogger("info", sink),
  );
  ports = await app.listen();
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

type Cred = { header: "x-api-key" | "authorization"; value: string } | undefined;
const apiKey = (k: string): Cred => ({ header: "x-api-key", value: k });
const bearer = (v: string): Cred => ({ header: "authorization", value: `Bearer ${v}` });

const checkReq = { subject: { type: "user", id: ALICE }, permission: "members.read", resource: { type: "organization", id: ENG } };

/** Calls PermissionService/Check on one protocol; returns the gRPC status code (0 = OK). */
async function checkVia(protocol: "grpc" | "connect" | "grpc-web", cred: Cred, req: Record<string, unknown> = checkReq): Promise<number> {
  if (protocol === "grpc") {
    const c = client(protos, "authz.v1.PermissionService", ports.grpcPort);
    const md = new grpc.Metadata();
    if (cred) md.set(cred.header, cred.value);
    try {
      return await new Promise<number>((resolve) => {
        (c.Check as Function).call(c, req, md, (err: grpc.ServiceError | null) => resolve(err ? err.code : 0));
      });
    } finally {
      c.close();
    }
  }
  const headers: Record<string, string> = {};
  if (cred) headers[cred.header] = cred.value;
  if (protocol === "connect") {
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.PermissionService/Check`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify(req),
    });
    if (res.ok) return 0;
    const body = (await res.json()) as { code: string };
    return grpc.status[body.code.toUpperCase() as keyof typeof grpc.status] as number;
  }
  const msg = toBinary(CheckRequestSchema, create(CheckRequestSchema, req as never));
  const frame = new Uint8Array(5 + msg.length);
  new DataView(frame.buffer).setUint32(1, msg.length);
  frame.set(msg, 5);
  const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.PermissionService/Check`, {
    method: "POST",
    headers: { ...headers, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
    body: frame,
  });
  const text = new TextDecoder().decode(new Uint8Array(await res.arrayBuffer()));
  const m = /grpc-status: ?(\d+)/.exec(text) ?? /(\d+)/.exec(res.headers.get("grpc-status") ?? "");
  return Number(m?.[1] ?? -1);
}

/** Calls a method over gRPC with a credential; returns the status code. */
async function grpcCall(service: string, method: string, req: unknown, cred: Cred): Promise<number> {
  const c = client(protos, service, ports.grpcPort);
  const md = new grpc.Metadata();
  if (cred) md.set(cred.header, cred.value);
  try {
    return await new Promise<number>((resolve) => {
      (c[method] as Function).call(c, req, md, (err: grpc.ServiceError | null) => resolve(err ? err.code : 0));
    });
  } finally {
    c.close();
  }
}

const OK = 0;
const { UNAUTHENTICATED, PERMISSION_DENIED } = grpc.status;

describe("credentials on every protocol", () => {
  for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
    it(`${protocol}: no credential or a bad one is UNAUTHENTICATED; a key without the scope is PERMISSION_DENIED; the right scope passes`, async () => {
      expect(await checkVia(protocol, undefined)).toBe(UNAUTHENTICATED);
      expect(await checkVia(protocol, apiKey("azk_0123456789abcdef_" + "x".repeat(43)))).toBe(UNAUTHENTICATED);
      expect(await checkVia(protocol, bearer("not-a-jwt"))).toBe(UNAUTHENTICATED);
      expect(await checkVia(protocol, { header: "authorization", value: "Basic dXNlcjpwYXNz" })).toBe(UNAUTHENTICATED);
      expect(await checkVia(protocol, apiKey(keys.ratelimit as string))).toBe(PERMISSION_DENIED);
      expect(await checkVia(protocol, apiKey(keys.check as string))).toBe(OK);
      expect(await checkVia(protocol, bearer(keys.check as string))).toBe(OK);
      expect(await checkVia(protocol, apiKey(keys.file as string))).toBe(OK);
      expect(await checkVia(protocol, bearer(await signer({ scope: "check" })))).toBe(OK);
      expect(await checkVia(protocol, bearer(await signer({ scope: "ratelimit" })))).toBe(PERMISSION_DENIED);
      expect(await checkVia(protocol, bearer(await signer({ scope: "check" }, { iss: "https://evil.example" })))).toBe(UNAUTHENTICATED);
      expect(await checkVia(protocol, bearer(await signer({ scope: "check" }, { exp: "-1m" })))).toBe(UNAUTHENTICATED);
    });
  }

  it("each scope opens exactly its RPCs", async () => {
    const consume = { policy: "login-attempts", subject: { type: "key", id: "auth-test" }, cost: "0" };
    const manage = { mutations: [{ upsert_permission: { key: { organization_id: ENG, key: "auth.test" } } }] };
    const matrix: Array<[string, Cred, number, number, number]> = [
      // credential, Check, ConsumeRateLimit, ManageRoles
      ["check", apiKey(keys.check as string), OK, PERMISSION_DENIED, PERMISSION_DENIED],
      ["ratelimit", apiKey(keys.ratelimit as string), PERMISSION_DENIED, OK, PERMISSION_DENIED],
      ["admin+check", apiKey(keys.admin as string), OK, PERMISSION_DENIED, OK],
    ];
    for (const [name, cred, check, rl, admin] of matrix) {
      expect(await grpcCall("authz.v1.PermissionService", "Check", checkReq, cred), `${name} Check`).toBe(check);
      expect(await grpcCall("authz.v1.RateLimitService", "ConsumeRateLimit", consume, cred), `${name} ConsumeRateLimit`).toBe(rl);
      expect(await grpcCall("authz.v1.AdminService", "ManageRoles", manage, cred), `${name} ManageRoles`).toBe(admin);
    }
  });

  it("health needs no credential", async () => {
    expect(await grpcCall("grpc.health.v1.Health", "Check", { service: "" }, undefined)).toBe(OK);
  });

  it("a revoked key stops working on every replica at once (NOTIFY), though its verification was remembered", async () => {
    // The key table's notice makes every replica reload its keys; the reload logs the new count.
    const reloaded = () => nextLog(/"msg":"API keys reloaded"/);
    let next = reloaded();
    const key = await addKey("short-lived", ["check"]);
    await next;
    // Verified once, then answered from the remembered keys.
    expect(await checkVia("grpc", apiKey(key))).toBe(OK);
    expect(await checkVia("grpc", apiKey(key))).toBe(OK);
    const id = key.split("_")[1] as string;
    next = reloaded();
    const { stdout } = await run("node", [projectPath("dist/src/cli.js"), "api-key", "revoke", id, "--server", `127.0.0.1:${ports.grpcPort}`], {
      env: { PATH: process.env.PATH, AUTHZ_API_KEY: keys.admin },
    });
    expect(JSON.parse(stdout)).toEqual({ revoked: true });
    await next;
    expect(await checkVia("grpc", apiKey(key))).toBe(UNAUTHENTICATED);
    expect(await checkVia("connect", apiKey(key))).toBe(UNAUTHENTICATED);
    expect(await checkVia("grpc", apiKey(keys.check as string))).toBe(OK);
  });
});

describe("tenant-bound credentials", () => {
  const acme = () => apiKey(keys.acmeAdmin as string);

  it("read: a check on another tenant's data is PERMISSION_DENIED; on its own tenant it is answered", async () => {
    expect(await grpcCall("authz.v1.PermissionService", "Check", checkReq, acme())).toBe(OK);
    const other = { ...checkReq, resource: { type: "organization", id: OTHER_ORG } };
    expect(await grpcCall("authz.v1.PermissionService", "Check", other, acme())).toBe(PERMISSION_DENIED);
    expect(await grpcCall("authz.v1.PermissionService", "Check", other, apiKey(keys.check as string))).toBe(OK);
  });

  it("write: changing another tenant's (or global) data is PERMISSION_DENIED and writes nothing", async () => {
    const count = async () => Number((await t.raw`select count(*)::int as n from permissions where key like 'tenant.%'`)[0]?.n);
    const before = await count();
    const inOther = { mutations: [{ upsert_permission: { key: { organization_id: OTHER_ORG, key: "tenant.other" } } }] };
    const global = { mutations: [{ upsert_permission: { key: { organization_id: "", key: "tenant.global" } } }] };
    const own = { mutations: [{ upsert_permission: { key: { organization_id: ENG, key: "tenant.own" } } }] };
    expect(await grpcCall("authz.v1.AdminService", "ManageRoles", inOther, acme())).toBe(PERMISSION_DENIED);
    expect(await grpcCall("authz.v1.AdminService", "ManageRoles", global, acme())).toBe(PERMISSION_DENIED);
    expect(await count()).toBe(before);
    expect(await grpcCall("authz.v1.AdminService", "ManageRoles", own, acme())).toBe(OK);
    expect(await count()).toBe(before + 1);
  });
});

describe("secrets stay out of logs", () => {
  it("neither the call log nor the decision log holds a key or a token", async () => {
    const jwt = await signer({ scope: "check" });
    await checkVia("grpc", apiKey(keys.check as string));
    await checkVia("connect", bearer(jwt));
    await checkVia("grpc", bearer(keys.admin as string));
    await app.stop();
    const decisions = readFileSync(join(dir, "decisions.log"), "utf8");
    const logs = logLines.join("");
    expect(logs).toMatch(/"method":"\/authz.v1.PermissionService\/Check"/);
    expect(decisions).toMatch(/"caller":"key:[0-9a-f]{16}"/);
    expect(decisions).toMatch(/"caller":"jwt:svc-1"/);
    for (const secret of [keys.check, keys.admin, keys.file, jwt, (keys.check as string).slice("azk_0123456789abcdef_".length)]) {
      expect(logs).not.toContain(secret);
      expect(decisions).not.toContain(secret);
    }
  });
});
