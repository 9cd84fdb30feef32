// AdminService/ExportDirectory over a real server: the same stream on gRPC,
// Connect and gRPC-Web; admin scope; a tenant-bound key exports only its
// tenant and is refused another's; the export imports into an empty
// database with the same decisions; live counters on request.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExportDirectoryRequestSchema, ExportDirectoryResponseSchema } from "../gen/authz/v1/admin_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { importDocument } from "../src/store/import.js";
import { loadSnapshot } from "../src/store/live-engine.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { frame } from "./support/edge-calls.js";
import { until } from "./support/fault.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const TA = id("a001", 1);
const TB = id("b001", 1);
const OA = id("a002", 1);
const OB = id("b002", 1);
const UA = id("a003", 1);
const UB = id("b003", 1);
const AA = id("a005", 1);
const AB = id("b005", 1);
const PA = id("a006", 1);
const PB = id("b006", 1);
const VA = id("a007", 1);
const VB = id("b007", 1);
const MA = id("a008", 1);
const MB = id("b008", 1);
const RA = id("a009", 1);
const RB = id("b009", 1);
const SA = id("a010", 1);
const SB = id("b010", 1);
const accepted = "2024-01-01T00:00:00Z";
const tenantData = (t: string, o: string, u: string, a: string, p: string, v: string, m: string, r: string, s: string, x: string) => ({
  TENANT: [{ id: t, name: `T ${x}`, slug: `t-${x}` }],
  ORGANIZATION: [{ id: o, tenant_id: t, name: `O ${x}`, slug: `o-${x}` }],
  User: [{ user_id: u, email: `${x}@example.test` }],
  ACCOUNT: [{ id: a, organization_id: o, email: `acct@${x}.test` }],
  PRINCIPAL: [{ id: p, account_id: a, subject_type: "user", subject_id: u, accepted_at: accepted }],
  AVATAR: [{ id: v, organization_id: o, handle: `bot-${x}` }],
  MEMBERSHIP: [{ id: m, principal_id: p, avatar_id: v, owner: true, accepted_at: accepted }],
  Role: [{ role_id: r, org_id: o, name: "Admin", key: "admin" }],
  Permission: [{ permission_id: s, org_id: o, name: "secrets.read" }],
  RolePermission: [{ role_id: r, permission_id: s }],
  UserOrganizationInfo: [{ user_id: u, org_id: o, user_role: "admin" }],
});
const merge = (...docs: Array<Record<string, unknown[]>>) => {
  const out: Record<string, unknown[]> = {};
  for (const d of docs) for (const [k, v] of Object.entries(d)) out[k] = [...(out[k] ?? []), ...v];
  return out;
};
const DATA = merge(tenantData(TA, OA, UA, AA, PA, VA, MA, RA, SA, "alpha"), tenantData(TB, OB, UB, AB, PB, VB, MB, RB, SB, "beta"), {
  RateLimitPolicy: [
    { policy_id: 1, name: "per-org", scope: "organization", limit_count: 10, window_sec: 3600 },
    { policy_id: 2, name: "everyone", scope: "global", limit_count: 100, window_sec: 3600 },
    { policy_id: 3, name: "per-user", scope: "user", limit_count: 10, window_sec: 3600 },
  ],
  RateLimitAssignment: [
    { policy_id: 1, org_id: OA },
    { policy_id: 1, org_id: OB },
    // A user's assignment belongs to no tenant: alpha's export carries it, as alpha's user.
    { policy_id: 3, user_id: UA },
  ],
});

let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const protos = loadProtos();
const keys: Record<string, string> = {};

async function addKey(name: string, scopes: Scope[], tenant: string | null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  return key;
}

interface Msg {
  section: string;
  recordsJson: string;
  revision: string;
}
type Outcome = { code: number; message: string; messages: Msg[] };

/** The stream over gRPC (grpc-js). */
function viaGrpc(req: Record<string, unknown>, key: string): Promise<Outcome> {
  const c = client(protos, "authz.v1.AdminService", ports.grpcPort);
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  const messages: Msg[] = [];
  return new Promise((resolve) => {
    const call = (c.ExportDirectory as Function).call(c, req, md, { deadline: Date.now() + 20_000 }) as grpc.ClientReadableStream<Record<string, string>>;
    call.on("data", (m: Record<string, string>) => messages.push({ section: m.section ?? "", recordsJson: m.records_json ?? "", revision: m.revision ?? "" }));
    call.on("error", (e: grpc.ServiceError) => {
      c.close();
      resolve({ code: e.code, message: e.details, messages });
    });
    call.on("end", () => {
      c.close();
      resolve({ code: 0, message: "", messages });
    });
  });
}

/** Envelopes of a streamed HTTP body: [flags, payload]. */
function envelopes(bytes: Uint8Array): Array<[number, Uint8Array]> {
  const out: Array<[number, Uint8Array]> = [];
  for (let at = 0; at + 5 <= bytes.length; ) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    out.push([bytes[at] as number, bytes.subarray(at + 5, at + 5 + len)]);
    at += 5 + len;
  }
  return out;
}

/** The stream over Connect (server streaming, binary) or gRPC-Web; code as a gRPC status name. */
async function viaHttp(protocol: "connect" | "grpc-web", req: Record<string, unknown>, key: string): Promise<{ code: string; messages: Msg[] }> {
  const body = frame(0, toBinary(ExportDirectoryRequestSchema, create(ExportDirectoryRequestSchema, req)));
  const headers: Record<string, string> =
    protocol === "connect" ? { "content-type": "application/connect+proto" } : { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
  const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.AdminService/ExportDirectory`, {
    method: "POST",
    headers: { ...headers, "x-api-key": key },
    body,
    signal: AbortSignal.timeout(20_000),
  });
  const messages: Msg[] = [];
  let code = "OK";
  for (const [flags, payload] of envelopes(new Uint8Array(await res.arrayBuffer()))) {
    if (protocol === "connect" && flags & 0x02) {
      const end = JSON.parse(new TextDecoder().decode(payload)) as { error?: { code: string } };
      if (end.error) code = end.error.code.toUpperCase();
    } else if (protocol === "grpc-web" && flags & 0x80) {
      const status = /grpc-status:\s*(\d+)/.exec(new TextDecoder().decode(payload))?.[1];
      code = grpc.status[Number(status)] as string;
    } else {
      const m = fromBinary(ExportDirectoryResponseSchema, payload);
      messages.push({ section: m.section, recordsJson: m.recordsJson, revision: m.revision });
    }
  }
  if (protocol === "grpc-web" && res.headers.get("grpc-status")) code = grpc.status[Number(res.headers.get("grpc-status"))] as string;
  return { code, messages };
}

const documentOf = (messages: Msg[]): Record<string, unknown[]> => {
  const doc: Record<string, unknown[]> = {};
  for (const m of messages) doc[m.section] = [...(doc[m.section] ?? []), ...(JSON.parse(m.recordsJson) as unknown[])];
  return doc;
};

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, DATA);
  keys.root = await addKey("root", ["admin", "check", "ratelimit"], null);
  keys.alpha = await addKey("alpha-admin", ["admin", "ratelimit"], TA);
  keys.checker = await addKey("checker", ["check"], null);
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

describe("ExportDirectory", () => {
  it("streams the same export on gRPC, Connect and gRPC-Web, at one revision; it imports into an empty database with the same decisions", async () => {
    const g = await viaGrpc({}, keys.root as string);
    expect(g.code, g.message).toBe(0);
    const c = await viaHttp("connect", {}, keys.root as string);
    const w = await viaHttp("grpc-web", {}, keys.root as string);
    expect([c.code, w.code]).toEqual(["OK", "OK"]);
    expect(c.messages).toEqual(g.messages);
    expect(w.messages).toEqual(g.messages);
    expect(new Set(g.messages.map((m) => m.revision)).size).toBe(1);
    const doc = documentOf(g.messages);
    expect((doc.TENANT ?? []).length).toBe(2);

    const empty = await freshDatabase();
    try {
      await importDocument(empty.client, doc);
      const [a, b] = [await loadSnapshot(t.client), await loadSnapshot(empty.client)];
      for (const [subject, resource] of [
        [UA, OA],
        [UA, OB],
        [UB, OB],
      ] as Array<[string, string]>) {
        const x = a.check({ type: "user", id: subject }, "secrets.read", { type: "organization", id: resource }, Date.now());
        const y = b.check({ type: "user", id: subject }, "secrets.read", { type: "organization", id: resource }, Date.now());
        expect(y).toMatchObject({ allowed: x.allowed, reason: x.reason });
      }
      expect(a.check({ type: "user", id: UA }, "secrets.read", { type: "organization", id: OA }, Date.now()).allowed).toBe(true);
    } finally {
      await empty.drop();
    }
  });

  it("a tenant-bound key exports its own tenant only, and is refused another tenant's", async () => {
    const own = await viaGrpc({}, keys.alpha as string);
    expect(own.code, own.message).toBe(0);
    const text = JSON.stringify(documentOf(own.messages));
    for (const other of [TB, OB, AB, PB, VB, MB, RB, SB, UB]) expect(text).not.toContain(other);
    for (const mine of [TA, OA, AA, PA, VA, MA, RA, SA, UA]) expect(text).toContain(mine);
    const doc = documentOf(own.messages);
    expect(doc.RateLimitAssignment).toEqual(expect.arrayContaining([expect.objectContaining({ policy_id: 3, user_id: UA })]));
    expect((doc.RateLimitPolicy as Array<{ name: string }>).map((p) => p.name).sort()).toEqual(["per-org", "per-user"]);
    const named = await viaGrpc({ tenant_id: TA }, keys.alpha as string);
    expect(named.messages).toEqual(own.messages);

    const refused = await viaGrpc({ tenant_id: TB }, keys.alpha as string);
    expect(refused.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refused.messages).toEqual([]);
    expect((await viaGrpc({}, keys.checker as string)).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await viaGrpc({ tenant_id: "not-a-uuid" }, keys.root as string)).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await viaGrpc({ tenant_id: id("ffff", 9) }, keys.root as string)).code).toBe(grpc.status.NOT_FOUND);
  });

  it("a caller that goes away mid-stream leaves no export transaction open", async () => {
    // Three pages of users, so the stream is cut while the export still holds its transaction.
    await t.raw`insert into users (id, email) select gen_random_uuid(), 'bulk' || g || '@example.test' from generate_series(1, 2500) g`;
    const open = async () =>
      Number(
        (
          await t.raw<{ n: number }[]>`select count(*)::int as n from pg_stat_activity
           where datname = current_database() and pid <> pg_backend_pid() and state like 'idle in transaction%'`
        )[0]?.n,
      );
    const c = client(protos, "authz.v1.AdminService", ports.grpcPort);
    const md = new grpc.Metadata();
    md.set("x-api-key", keys.root as string);
    const call = (c.ExportDirectory as Function).call(c, {}, md) as grpc.ClientReadableStream<{ section: string }>;
    const sections: string[] = [];
    await new Promise<void>((resolve) => {
      call.on("data", (m: { section: string }) => {
        sections.push(m.section);
        if (m.section === "User") {
          call.cancel();
          resolve();
        }
      });
      call.on("error", () => resolve());
    });
    c.close();
    expect(sections).toContain("User");
    await until(async () => (await open()) === 0, 10_000, "no export transaction left open");
    await t.raw`delete from users where email like 'bulk%@example.test'`;
    expect((await viaGrpc({}, keys.root as string)).code).toBe(0);
  });

  it("with include_counters, writes the live counters (RateLimitCounter), which the import refuses", async () => {
    const rl = client(protos, "authz.v1.RateLimitService", ports.grpcPort);
    const md = new grpc.Metadata();
    md.set("x-api-key", keys.root as string);
    for (let i = 0; i < 3; i++) await unary(rl, "ConsumeRateLimit", { policy: "per-org", subject: { type: "organization", id: OA }, cost: 1 }, md);
    rl.close();
    const out = await viaGrpc({ include_counters: true }, keys.alpha as string);
    expect(out.code, out.message).toBe(0);
    const doc = documentOf(out.messages);
    expect(doc.RateLimitCounter).toEqual([expect.objectContaining({ policy_id: 1, org_id: OA, count: 3 })]);
    await expect(importDocument(t.client, { RateLimitCounter: doc.RateLimitCounter })).rejects.toThrow(/rate-limit counters cannot be imported/);
  });

  it("a global policy's one counter is exported with none of key_id, user_id and org_id", async () => {
    const rl = client(protos, "authz.v1.RateLimitService", ports.grpcPort);
    const md = new grpc.Metadata();
    md.set("x-api-key", keys.root as string);
    await unary(rl, "ConsumeRateLimit", { policy: "everyone", subject: { type: "organization", id: OA }, cost: 2 }, md);
    rl.close();
    const out = await viaGrpc({ include_counters: true }, keys.root as string);
    expect(out.code, out.message).toBe(0);
    const global = (documentOf(out.messages).RateLimitCounter as Array<Record<string, unknown>>).find((r) => r.policy_id === 2);
    expect(global).toMatchObject({ count: 2 });
    expect(Object.keys(global ?? {}).filter((k) => k === "key_id" || k === "user_id" || k === "org_id")).toEqual([]);
  });

  it("a tenant's export with counters carries its users' counters of that tenant", async () => {
    const rl = client(protos, "authz.v1.RateLimitService", ports.grpcPort);
    const md = new grpc.Metadata();
    md.set("x-api-key", keys.root as string);
    await unary(rl, "ConsumeRateLimit", { policy: "per-user", subject: { type: "user", id: UA }, organization_id: OA, cost: 4 }, md);
    rl.close();
    const out = await viaGrpc({ include_counters: true }, keys.alpha as string);
    expect(out.code, out.message).toBe(0);
    expect(documentOf(out.messages).RateLimitCounter).toEqual(expect.arrayContaining([expect.objectContaining({ policy_id: 3, user_id: UA, count: 4 })]));
  });
});
