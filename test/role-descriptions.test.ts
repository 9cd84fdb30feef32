// A role's or permission's description through ManageRoles: set, kept when
// the upsert leaves it empty, cleared with clear_description (an empty string
// cannot say "clear" in proto3), and refused when both are given.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";

const ORG = DEMO.org.eng;
const protos = loadProtos();
let t: TestDatabase;
let app: App;
let admin: ReturnType<typeof client>;
let dir: ReturnType<typeof client>;

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  const { grpcPort } = await app.listen();
  await app.ready;
  admin = client(protos, "authz.v1.AdminService", grpcPort);
  dir = client(protos, "authz.v1.DirectoryService", grpcPort);
}, 60_000);

afterAll(async () => {
  admin?.close();
  dir?.close();
  await app?.stop();
  await t?.drop();
});

type Written = { revision: string; results: Array<{ changed: boolean }> };
const write = (m: Record<string, unknown>) => unary<Written>(admin, "ManageRoles", { mutations: [m] });
const fresh = (w: Written) => ({ organization_id: ORG, consistency: { at_least_as_fresh: w.revision } });
const roleDescription = async (w: Written) =>
  (await unary<{ roles: Array<{ key: string; description: string }> }>(dir, "ListRoles", fresh(w))).roles.find((r) => r.key === "described")?.description;
const permDescription = async (w: Written) =>
  (await unary<{ permissions: Array<{ key: string; description: string }> }>(dir, "ListPermissionDefinitions", fresh(w))).permissions.find(
    (p) => p.key === "described.read",
  )?.description;

describe("descriptions through ManageRoles", () => {
  it("are set, kept by an upsert without one, and cleared with clear_description", async () => {
    const key = { organization_id: ORG, key: "described" };
    expect(await roleDescription(await write({ upsert_role: { key, description: "Writes things" } }))).toBe("Writes things");
    const kept = await write({ upsert_role: { key, name: "Described" } });
    expect(await roleDescription(kept)).toBe("Writes things");
    const cleared = await write({ upsert_role: { key, clear_description: true } });
    expect(cleared.results[0]?.changed).toBe(true);
    expect(await roleDescription(cleared)).toBe("");
    expect((await write({ upsert_role: { key, clear_description: true } })).results[0]?.changed).toBe(false);

    const pkey = { organization_id: ORG, key: "described.read" };
    expect(await permDescription(await write({ upsert_permission: { key: pkey, description: "Reads things" } }))).toBe("Reads things");
    expect(await permDescription(await write({ upsert_permission: { key: pkey, clear_description: true } }))).toBe("");
  });

  it("a description and clear_description together are INVALID_ARGUMENT naming the field", async () => {
    const err = await write({ upsert_role: { key: { organization_id: ORG, key: "described" }, description: "x", clear_description: true } }).catch(
      (e: grpc.ServiceError) => e,
    );
    expect((err as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((err as grpc.ServiceError).details).toContain("mutations[0].upsert_role");
  });
});
