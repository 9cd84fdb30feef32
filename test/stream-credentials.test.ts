// Open streams end when the API key they were opened with is revoked
// (docs/security.md, "Callers"): two replicas on one database, the key
// created and revoked through replica A, every server-streaming RPC open on
// replica B (Watch on gRPC and Connect, StreamLookupSubjects,
// StreamLookupResources, ExportDirectory). Each ends with UNAUTHENTICATED
// (reason UNAUTHENTICATED, as a unary call with the key) on the revocation
// event, and sends nothing after it.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchService } from "../gen/authz/v1/watch_service_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { connect, RemoteError } from "../src/rpc/client.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos } from "./support/grpc-client.js";
import { grpcFailure } from "./support/grpc-error.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const [T, O, R, P] = [id("a001", 1), id("a002", 1), id("a003", 1), id("a004", 1)];
/** Users holding the role: enough that a lookup or an export cannot sit in the transport's buffers whole. */
const USERS = 40_000;
const DATA = {
  TENANT: [{ id: T, name: "Alpha", slug: "alpha" }],
  ORGANIZATION: [{ id: O, tenant_id: T, name: "Alpha Org", slug: "alpha-org" }],
  Role: [{ role_id: R, org_id: O, name: "Reader", key: "reader" }],
  Permission: [{ permission_id: P, org_id: O, name: "secrets.read" }],
  RolePermission: [{ role_id: R, permission_id: P }],
};

let t: TestDatabase;
const apps: App[] = [];
const ports: Array<{ grpcPort: number; httpPort: number }> = [];
const protos = loadProtos();
let admin = "";

/** A unary call on replica `i`. */
const as = (key: string, i: number) => connect({ server: `127.0.0.1:${ports[i]?.grpcPort}`, credential: key, timeoutMs: 10_000 });

/**
 * A new key, created through replica A; resolves once replica B knows it
 * (B learns of it from the change feed's notice, so a call on B right after
 * the create may still be refused UNAUTHENTICATED).
 */
async function createKey(scopes: Scope[], tenantId = ""): Promise<{ id: string; key: string }> {
  const r = (await as(admin, 0).call("authz.v1.AdminService", "CreateApiKey", { name: "streamer", scopes, tenantId })) as {
    apiKey: { id: string };
    key: string;
  };
  // Any answer but UNAUTHENTICATED (an admin-only key gets PERMISSION_DENIED for a Check) means B verified it.
  const known = async () => !(await refusal(as(r.key, 1).call("authz.v1.PermissionService", "Check", CHECK))).startsWith("UNAUTHENTICATED");
  await until(known, "the new key on replica B");
  return { id: r.apiKey.id, key: r.key };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (err) {
    if (!(err instanceof RemoteError)) throw err;
    return `${err.code} ${err.reason}`;
  }
}

/** Resolves once `cond()` holds, polled every 10 ms; rejects after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Revokes through replica A, then waits (bounded) until replica B refuses a unary call with the key. */
async function revoke(k: { id: string; key: string }): Promise<number> {
  expect(await as(admin, 0).call("authz.v1.AdminService", "RevokeApiKey", { id: k.id })).toEqual({ revoked: true });
  const at = Date.now();
  await until(async () => (await refusal(as(k.key, 1).call("authz.v1.PermissionService", "Check", CHECK))) !== "OK", "the revocation on replica B");
  return at;
}
const CHECK = { subject: { type: "user", id: id("c001", 1) }, permission: "secrets.read", resource: { type: "organization", id: O } };

/** A server stream on replica B over gRPC, collected; pause()/resume() hold the reader back. */
function grpcStream(service: string, method: string, req: Record<string, unknown>, key: string) {
  const c = client(protos, service, ports[1]?.grpcPort as number);
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  const msgs: Array<Record<string, unknown>> = [];
  const s = (c[method] as Function).call(c, req, md) as grpc.ClientReadableStream<Record<string, unknown>>;
  let error: grpc.ServiceError | undefined;
  let ended = false;
  s.on("data", (m: Record<string, unknown>) => msgs.push(m));
  s.on("error", (e: grpc.ServiceError) => {
    error = e;
  });
  // "end" comes before "error" too; the status says how the stream ended.
  s.on("status", (st: grpc.StatusObject) => {
    if (st.code === grpc.status.OK) ended = true;
  });
  return {
    msgs,
    stream: s,
    get error() {
      return error;
    },
    get ended() {
      return ended;
    },
    close() {
      s.cancel();
      c.close();
    },
  };
}

const writeOrg = (n: string) => t.raw`insert into organizations (tenant_id, name, slug) values (${T}, ${n}, ${n})`;

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, DATA);
  await t.raw`insert into users (id, email) select ('0000c001-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, 'u' || i || '@example.test'
              from generate_series(1, ${USERS}) as i`;
  await t.raw`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
              select 'user', ('0000c001-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, ${R}, 'organization', ${O}
              from generate_series(1, ${USERS}) as i`;
  // User 1 also holds a global role on as many organizations: a long StreamLookupResources.
  await t.raw`insert into roles (id, organization_id, key, name) values (${id("c003", 1)}, null, 'viewer', 'Viewer')`;
  await t.raw`insert into permissions (id, organization_id, key) values (${id("c003", 2)}, null, 'orgs.view')`;
  await t.raw`insert into role_permissions (role_id, permission_id) values (${id("c003", 1)}, ${id("c003", 2)})`;
  await t.raw`insert into organizations (id, tenant_id, name, slug) select ('0000c002-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, ${T}, 'o' || i, 'o' || i
              from generate_series(1, ${USERS}) as i`;
  await t.raw`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
              select 'user', ${id("c001", 1)}, ${id("c003", 1)}, 'organization', ('0000c002-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid
              from generate_series(1, ${USERS}) as i`;
  const { key, record } = mintApiKey("admin", ["admin", "check"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id) values (${record.id}, 'admin', ${record.secretSha256}, ${record.scopes}, null)`;
  admin = key;
  for (let i = 0; i < 2; i++) {
    const app = createApp(
      loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
      createLogger("silent"),
    );
    apps.push(app);
    ports.push(await app.listen());
    await app.ready;
  }
}, 120_000);

afterAll(async () => {
  for (const app of apps) await app.stop();
  await t?.drop();
});

describe("a revoked API key's open streams", () => {
  it("Watch on gRPC: ends with UNAUTHENTICATED on the revocation, on another replica, and delivers nothing after it", async () => {
    const k = await createKey(["check"], T);
    // heartbeat_ms 60 s: nothing but the revocation can wake the stream in this test.
    const w = grpcStream("authz.v1.WatchService", "Watch", { heartbeat_ms: 60_000 }, k.key);
    try {
      await until(() => w.msgs.length > 0, "the opening message");
      await writeOrg("before-revoke");
      await until(() => w.msgs.some((m) => (m.changes as unknown[]).length > 0), "the change before the revocation");
      const delivered = w.msgs.length;
      const revokedAt = await revoke(k);
      await until(() => w.error !== undefined || w.ended, "the end of the stream", 5000);
      const endedAfterMs = Date.now() - revokedAt;
      expect(w.ended).toBe(false);
      expect(grpcFailure(w.error)).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
      await writeOrg("after-revoke");
      expect(w.msgs.length).toBe(delivered);
      // On the event, not on a poll of seconds (the key poll is 30 s, the heartbeat 60 s).
      expect(endedAfterMs).toBeLessThan(5000);
    } finally {
      w.close();
    }
  });

  it("Watch on Connect: the same", async () => {
    const k = await createKey(["check"]);
    const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${ports[1]?.httpPort}`, httpVersion: "1.1" });
    const abort = new AbortController();
    const changes: string[] = [];
    let opened = false;
    const done = (async () => {
      try {
        for await (const m of createClient(WatchService, transport).watch({ heartbeatMs: 60_000 }, { headers: { "x-api-key": k.key }, signal: abort.signal })) {
          opened = true;
          changes.push(...m.changes.map((c) => c.ids.id ?? ""));
        }
        return "OK";
      } catch (err) {
        const e = ConnectError.from(err);
        return `${Code[e.code]} ${e.findDetails(ErrorInfoSchema)[0]?.reason ?? ""}`;
      }
    })();
    try {
      await until(() => opened, "the opening message");
      await writeOrg("connect-before");
      await until(() => changes.length > 0, "the change before the revocation");
      const seen = changes.length;
      await revoke(k);
      const outcome = await Promise.race([done, new Promise<string>((r) => setTimeout(() => r("still open"), 5000))]);
      expect(outcome).toBe("Unauthenticated UNAUTHENTICATED");
      await writeOrg("connect-after");
      expect(changes.length).toBe(seen);
    } finally {
      abort.abort();
    }
  });

  // A long stream held back by a slow reader: the server has more to send than the transport holds.
  for (const [label, service, method, req] of [
    [
      "StreamLookupSubjects",
      "authz.v1.PermissionService",
      "StreamLookupSubjects",
      { permission: "secrets.read", resource: { type: "organization", id: O }, subject_type: "user", with_grants: true },
    ],
    [
      "StreamLookupResources",
      "authz.v1.PermissionService",
      "StreamLookupResources",
      { permission: "orgs.view", subject: { type: "user", id: id("c001", 1) }, resource_type: "organization", with_grants: true },
    ],
    ["ExportDirectory", "authz.v1.AdminService", "ExportDirectory", {}],
  ] as const) {
    it(`${label}: a long stream stops at the revocation, short of its end`, async () => {
      const k = await createKey(method === "ExportDirectory" ? ["admin"] : ["check"]);
      const s = grpcStream(service, method, req, k.key);
      try {
        s.stream.pause();
        // Readable in paused mode still buffers what arrives; wait until it is there.
        await until(() => s.stream.readableLength > 0 || s.error !== undefined || s.ended, "the first message");
        await revoke(k);
        s.stream.resume();
        await until(() => s.error !== undefined || s.ended, "the end of the stream", 20_000);
        expect(s.ended, `${label} ran to its end after the revocation`).toBe(false);
        expect(grpcFailure(s.error)).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
        if (method !== "ExportDirectory") {
          const got = s.msgs.reduce((n, m) => n + ((m.subjects ?? m.resources) as unknown[]).length, 0);
          expect(got).toBeLessThan(USERS);
        }
      } finally {
        s.close();
      }
    }, 60_000);
  }
});
