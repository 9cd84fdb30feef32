// Limits: message size and concurrent calls answer with clear codes.
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

let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const protos = loadProtos();
const checkReq = {
  subject: { type: "user", id: "00000003-0000-4000-8000-000000000001" },
  permission: "members.read",
  resource: { type: "organization", id: "00000002-0000-4000-8000-000000000001" },
};

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      AUTHZ_AUTH: "off",
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_MAX_CONCURRENT_CALLS: "2",
      AUTHZ_MAX_MESSAGE_BYTES: "2048",
    }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
});
afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

const call = (c: ReturnType<typeof client>, req: unknown) =>
  new Promise<number>((resolve) => {
    (c.Check as Function).call(c, req, (err: grpc.ServiceError | null) => resolve(err ? err.code : 0));
  });

describe("limits", () => {
  it("a message over AUTHZ_MAX_MESSAGE_BYTES is RESOURCE_EXHAUSTED on gRPC and Connect", async () => {
    const c = client(protos, "authz.v1.PermissionService", ports.grpcPort);
    const big = { ...checkReq, permission: "p".repeat(4000) };
    expect(await call(c, big)).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await call(c, checkReq)).toBe(0);
    c.close();
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.PermissionService/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(big),
    });
    const e = (await res.json()) as { code: string; details?: Array<{ type: string; debug?: { reason?: string } }> };
    expect(e.code).toBe("resource_exhausted");
    // With its reason, as every other refusal (the catalogue, docs/errors.md).
    expect(e.details?.find((d) => d.type === "google.rpc.ErrorInfo")?.debug?.reason).toBe("MESSAGE_TOO_LARGE");
  });

  it("calls beyond AUTHZ_MAX_CONCURRENT_CALLS get RESOURCE_EXHAUSTED, the rest are answered", async () => {
    const c = client(protos, "authz.v1.PermissionService", ports.grpcPort);
    // fully_consistent makes each call wait on a database round trip, so calls overlap.
    const codes = await Promise.all(Array.from({ length: 40 }, () => call(c, { ...checkReq, consistency: { fully_consistent: true } })));
    c.close();
    expect(codes.filter((x) => x === 0).length).toBeGreaterThan(0);
    expect(codes.filter((x) => x === grpc.status.RESOURCE_EXHAUSTED).length).toBeGreaterThan(0);
    expect(codes.every((x) => x === 0 || x === grpc.status.RESOURCE_EXHAUSTED)).toBe(true);
  });

  it("AuthZEN shares AUTHZ_MAX_CONCURRENT_CALLS with the RPCs: with the limit taken by writes, an evaluation is 429 (TOO_MANY_CALLS)", async () => {
    const admin = client(protos, "authz.v1.AdminService", ports.grpcPort);
    const checks = client(protos, "authz.v1.PermissionService", ports.grpcPort);
    const write = (key: string) =>
      unary(admin, "ManageRoles", { mutations: [{ upsert_role: { key: { organization_id: checkReq.resource.id, key }, name: key } }] });
    const evaluation = () =>
      fetch(`http://127.0.0.1:${ports.httpPort}/access/v1/evaluation`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ subject: checkReq.subject, action: { name: checkReq.permission }, resource: checkReq.resource }),
      });
    let held: Promise<unknown[]> | undefined;
    // Hold the writers' lock exclusively (as a write with expected_revision does) so that two writes wait on it
    // at their first change: both limit slots in use.
    await t.raw.begin(async (sql) => {
      await sql`select pg_advisory_xact_lock(authz_writer_lock_key())`;
      held = Promise.all([write("held-1"), write("held-2")]);
      const deadline = Date.now() + 5000;
      for (;;) {
        const [w] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
        if ((w?.n ?? 0) >= 2) break;
        if (Date.now() > deadline) throw new Error("the writes never waited on the lock");
        await new Promise((r) => setTimeout(r, 20));
      }
      const refused = await evaluation();
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/calls, its limit/);
      expect(await call(checks, checkReq)).toBe(grpc.status.RESOURCE_EXHAUSTED);
    });
    await held;
    // The slots are free again: AuthZEN answers.
    const ok = await evaluation();
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ decision: true });
    admin.close();
    checks.close();
  });
});
