// Connect JSON carries every decision field, also when it is false or zero:
// proto3 JSON leaves defaults out, so a curl or JavaScript caller reading
// `.allowed` of a denied Check, or `.remaining` of an exhausted limit, would
// get undefined.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";

let t: TestDatabase;
let app: App;
let base = "";

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  base = `http://127.0.0.1:${(await app.listen()).httpPort}`;
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

const post = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
  const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
};

describe("Connect JSON keeps false and zero", () => {
  it("a denied Check says allowed: false", async () => {
    const r = await post("/authz.v1.PermissionService/Check", {
      subject: { type: "user", id: DEMO.user.dave },
      permission: "billing.manage",
      resource: { type: "organization", id: DEMO.org.eng },
    });
    expect(r.allowed).toBe(false);
    expect(typeof r.reason).toBe("string");
    expect(r.reason).not.toBe("DECISION_REASON_GRANTED");
  });

  it("a denied CheckBulk item says allowed: false", async () => {
    const r = await post("/authz.v1.PermissionService/CheckBulk", {
      items: [{ subject: { type: "user", id: DEMO.user.dave }, permission: "billing.manage", resource: { type: "organization", id: DEMO.org.eng } }],
    });
    expect((r.results as Array<Record<string, unknown>>)[0]?.allowed).toBe(false);
  });

  it("an exhausted limit says allowed: false and remaining: 0", async () => {
    const call = () =>
      post("/authz.v1.RateLimitService/ConsumeRateLimit", { policy: "login-attempts", subject: { type: "key", id: "honest-json@example.com" }, cost: 1 });
    let last: Record<string, unknown> = {};
    for (let i = 0; i < 6; i++) last = await call();
    expect(last.allowed).toBe(false);
    expect(last.remaining).toBe("0");
  });
});
