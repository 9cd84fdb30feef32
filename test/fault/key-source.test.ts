// Fault: the api_keys table cannot be read when a replica starts. The
// service promises: the replica is not ready (NOT_SERVING, /readyz 503)
// until its keys are loaded, answers a key it does not know yet with
// UNAVAILABLE (API_KEYS_NOT_LOADED), never UNAUTHENTICATED, retries with
// backoff, and serves the key once the table is readable. Reloads run one
// at a time, so a read that started before a revocation never lands after it.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintApiKey } from "../../src/auth/api-keys.js";
import { KeySource } from "../../src/auth/key-source.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type App, createApp } from "../../src/main.js";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { call, until } from "../support/fault.js";
import { client, loadProtos } from "../support/grpc-client.js";

const protos = loadProtos();
let t: TestDatabase;

beforeAll(async () => {
  t = await freshDatabase();
}, 60_000);

afterAll(async () => {
  await t?.drop();
});

async function insertKey(scopes: string[]): Promise<{ key: string; id: string }> {
  const { key, record } = mintApiKey("fault-test", scopes as never, null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes) values (${record.id}, ${record.name}, ${record.secretSha256}, ${scopes})`;
  return { key, id: record.id };
}

const md = (key: string) => {
  const m = new grpc.Metadata();
  m.set("x-api-key", key);
  return m;
};

describe("a replica whose api_keys read fails at start", () => {
  it("is NOT_SERVING and answers UNAVAILABLE (not UNAUTHENTICATED) until the table is readable, then serves the key", async () => {
    const { key } = await insertKey(["check"]);
    await t.raw`alter table api_keys rename to api_keys_unreadable`;
    let app: App | undefined;
    try {
      app = createApp(
        loadConfig({ DATABASE_URL: t.url, AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0", AUTHZ_MIGRATE: "false" }),
        createLogger("silent"),
      );
      const ports = await app.listen();
      const a = app;
      // Everything else is up: the engine is loaded.
      await until(
        () => {
          try {
            a.live();
            return true;
          } catch {
            return false;
          }
        },
        20_000,
        "engine loaded",
      );
      const health = client(protos, "grpc.health.v1.Health", ports.grpcPort);
      const perms = client(protos, "authz.v1.PermissionService", ports.grpcPort);
      const checkReq = {
        subject: { type: "user", id: "00000003-0000-4000-8000-000000000003" },
        permission: "x",
        resource: { type: "organization", id: "00000002-0000-4000-8000-000000000001" },
      };
      try {
        const h = await call<{ status: string }>(health, "Check", { service: "" }, 2000);
        expect(h.ok && h.value.status).toBe("NOT_SERVING");
        expect((await fetch(`http://127.0.0.1:${ports.httpPort}/readyz`)).status).toBe(503);
        const refused = await call(perms, "Check", checkReq, 2000, md(key));
        expect(refused.ok ? "OK" : `${grpc.status[refused.code]}/${refused.reason}`).toBe("UNAVAILABLE/API_KEYS_NOT_LOADED");

        const fixed = performance.now();
        await t.raw`alter table api_keys_unreadable rename to api_keys`;
        await until(
          async () => {
            const r = await call<{ status: string }>(health, "Check", { service: "" }, 1000);
            return r.ok && r.value.status === "SERVING";
          },
          10_000,
          "SERVING once the table is readable",
        );
        const served = await call<{ allowed: boolean }>(perms, "Check", checkReq, 2000, md(key));
        expect(served.ok, JSON.stringify(served)).toBe(true);
        console.log(`key source: SERVING and the key accepted ${(performance.now() - fixed).toFixed(0)} ms after the table became readable`);
      } finally {
        health.close();
        perms.close();
      }
    } finally {
      await app?.stop();
      await t.raw`alter table if exists api_keys_unreadable rename to api_keys`;
    }
  }, 60_000);
});

describe("concurrent reloads of the key source", () => {
  it("run one at a time and never bring a revoked key back", async () => {
    const source = new KeySource(undefined, createLogger("silent"));
    await source.start();
    source.attach(t.client);
    try {
      await until(() => source.loaded, 5000, "keys loaded");
      for (let round = 0; round < 5; round++) {
        const { key, id } = await insertKey(["check"]);
        await source.reload();
        expect(source.ring.verify(key)?.id).toBe(`key:${id}`);
        const readsBefore = source.stats.reads;
        // A burst of reloads (as notifications and polls cause them), the revocation in the middle.
        const burst: Array<Promise<void>> = [];
        for (let i = 0; i < 10; i++) burst.push(source.reload());
        await t.raw`update api_keys set revoked_at = now() where id = ${id}`;
        for (let i = 0; i < 10; i++) burst.push(source.reload());
        await Promise.all(burst);
        expect(source.ring.verify(key), `round ${round}: the revoked key is back`).toBeUndefined();
        // Twenty requests, coalesced: at most one run in flight and one queued at any time.
        expect(source.stats.reads - readsBefore).toBeLessThanOrEqual(4);
      }
    } finally {
      await source.stop();
    }
  }, 30_000);
});
