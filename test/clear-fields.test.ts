// Fields that, once set, could not be cleared through the API (proto3 cannot
// tell an empty value from an absent one): a role's or permission's
// description (clear_description), a user's last_active_at
// (clear_last_active_at) and a principal's accepted_at (clear_accepted_at).
// Each is set, kept when the upsert leaves it out, cleared by its flag, and
// refused when both are given.
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
let perms: ReturnType<typeof client>;

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
  perms = client(protos, "authz.v1.PermissionService", grpcPort);
}, 60_000);

afterAll(async () => {
  admin?.close();
  dir?.close();
  perms?.close();
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

  it("a user's last_active_at and a principal's accepted_at are cleared by their flags, and the decision follows", async () => {
    type Changed = { revision: string; results: Array<{ changed: boolean }> };
    const manage = (m: Record<string, unknown>) => unary<Changed>(dir, "ManageDirectory", { mutations: [m] });
    const at = (r: Changed) => ({ consistency: { at_least_as_fresh: r.revision } });
    const user = DEMO.user.alice;
    await manage({ upsert_user: { id: user, last_active_at: { seconds: 1_700_000_000 } } });
    const kept = await manage({ upsert_user: { id: user, first_name: "Alice" } });
    expect((await unary<{ user: { last_active_at?: unknown } }>(dir, "GetUser", { id: user, ...at(kept) })).user.last_active_at).toBeTruthy();
    const cleared = await manage({ upsert_user: { id: user, clear_last_active_at: true } });
    expect(cleared.results[0]?.changed).toBe(true);
    expect((await unary<{ user: { last_active_at?: unknown } }>(dir, "GetUser", { id: user, ...at(cleared) })).user.last_active_at ?? null).toBeNull();

    // Alice's principal owns acme-bot: avatar_owner there holds avatar.transfer, while the principal is accepted.
    const principal = DEMO.principal.aliceEng;
    const check = async (r: Changed) =>
      (
        await unary<{ reason: string }>(perms, "Check", {
          subject: { type: "principal", id: principal },
          permission: "avatar.transfer",
          resource: { type: "avatar", id: DEMO.avatar.acmeBot },
          ...at(r),
        })
      ).reason;
    expect(await check(kept)).toBe("DECISION_REASON_GRANTED");
    const unaccepted = await manage({ upsert_principal: { id: principal, clear_accepted_at: true } });
    expect(
      (await unary<{ principal: { accepted_at?: unknown } }>(dir, "GetPrincipal", { id: principal, ...at(unaccepted) })).principal.accepted_at ?? null,
    ).toBeNull();
    expect(await check(unaccepted)).toBe("DECISION_REASON_NOT_ACCEPTED");
    const both = await manage({ upsert_principal: { id: principal, accepted_at: { seconds: 1_700_000_000 }, clear_accepted_at: true } }).catch(
      (e: grpc.ServiceError) => e,
    );
    expect((both as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((both as grpc.ServiceError).details).toContain("mutations[0].upsert_principal.accepted_at");
  });
});
