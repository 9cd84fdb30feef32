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
import { client, loadProtos } from "./support/grpc-client.js";

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
    expect(((await res.json()) as { code: string }).code).toBe("resource_exhausted");
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
});
