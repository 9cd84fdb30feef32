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

// Two replicas of the server, each with its own pool and change listener, on one database.
const ENG = "00000002-0000-4000-8000-000000000001";
const CAROL = "00000003-0000-4000-8000-000000000003"; // member of acme-eng
const MEMBER_ROLE = "00000009-0000-4000-8000-000000000013";

let t: TestDatabase;
const apps: App[] = [];
const ports: Array<{ grpcPort: number; httpPort: number }> = [];
const protos = loadProtos();

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  for (let i = 0; i < 2; i++) {
    const app = createApp(
      loadConfig({
        DATABASE_URL: t.url,
        AUTHZ_AUTH: "off",
        AUTHZ_HOST: "127.0.0.1",
        AUTHZ_GRPC_PORT: "0",
        AUTHZ_HTTP_PORT: "0",
        // Long: freshness must come from notifications and reconnect catch-ups, not the poll.
        AUTHZ_REVISION_POLL_MS: "600000",
      }),
      createLogger("silent"),
    );
    ports.push(await app.listen());
    await app.ready;
    apps.push(app);
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(apps.map((a) => a.stop()));
  await t?.drop();
});

const checkOn = async (replica: number, permission: string, consistency: Record<string, unknown> = {}) => {
  const c = client(protos, "authz.v1.PermissionService", (ports[replica] as { grpcPort: number }).grpcPort);
  try {
    return await unary<{ allowed: boolean; revision: string; reason: string }>(c, "Check", {
      subject: { type: "user", id: CAROL },
      permission,
      resource: { type: "organization", id: ENG },
      consistency,
    });
  } finally {
    c.close();
  }
};

const until = async (cond: () => boolean | Promise<boolean>, ms: number): Promise<void> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`condition not met within ${ms} ms`);
};

describe("two replicas on one database", () => {
  it("a write through one replica is visible on the other with the returned token, at once", async () => {
    const admin = client(protos, "authz.v1.AdminService", (ports[0] as { grpcPort: number }).grpcPort);
    const res = await unary<{ revision: string }>(admin, "ManageRoles", {
      mutations: [
        { upsert_permission: { key: { organization_id: ENG, key: "reports.read" } } },
        { grant_permission: { role: { id: MEMBER_ROLE }, permission: { key: { organization_id: ENG, key: "reports.read" } } } },
      ],
    });
    admin.close();
    // No sleeping: the token makes replica 1 wait for (or fetch) that revision.
    const seen = await checkOn(1, "reports.read", { at_least_as_fresh: res.revision });
    expect(seen).toMatchObject({ allowed: true, reason: "DECISION_REASON_GRANTED" });
    expect(BigInt(seen.revision)).toBeGreaterThanOrEqual(BigInt(res.revision));
  });

  it("without a token the other replica converges through its listener", async () => {
    await t.raw`insert into permissions (organization_id, key) values (${ENG}, 'reports.export')`;
    await t.raw`insert into role_permissions (role_id, permission_id)
                select ${MEMBER_ROLE}, id from permissions where organization_id = ${ENG} and key = 'reports.export'`;
    // Each replica follows its own listener: neither's catch-up implies the other's.
    for (const replica of [0, 1]) await until(async () => (await checkOn(replica, "reports.export")).allowed, 5000);
  });

  it("fully_consistent sees a write made by plain SQL a moment ago", async () => {
    await t.raw`insert into permissions (organization_id, key) values (${ENG}, 'reports.audit')`;
    await t.raw`insert into role_permissions (role_id, permission_id)
                select ${MEMBER_ROLE}, id from permissions where organization_id = ${ENG} and key = 'reports.audit'`;
    expect(await checkOn(1, "reports.audit", { fully_consistent: true })).toMatchObject({ allowed: true });
  });

  it("the pool's sessions run without JIT, whatever the planner thinks of authz_revision", async () => {
    // The catch-up query on a never-analyzed authz_revision (autovacuum off) was JIT-compiled on every write.
    const rows = await t.client.query<{ jit: string }>("show jit");
    expect(rows[0]?.jit).toBe("off");
  });

  it("a token from the future is INVALID_ARGUMENT, not a hang", async () => {
    const err = (await checkOn(0, "reports.read", { at_least_as_fresh: "999999999" }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/newer than this deployment's newest revision/);
  });

  it("killing the listener backends during a stream of writes loses nothing", async () => {
    const N = 120;
    const before = apps.map((a) => a.feed().stats.reconnects);
    for (let i = 0; i < N; i++) {
      await t.raw.begin(async (tx) => {
        await tx`insert into permissions (organization_id, key) values (${ENG}, ${`stream.${i}`})`;
        await tx`insert into role_permissions (role_id, permission_id)
                 select ${MEMBER_ROLE}, id from permissions where organization_id = ${ENG} and key = ${`stream.${i}`}`;
      });
      if (i === 30 || i === 80) {
        const killed = await t.raw`select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`;
        expect(killed.length).toBeGreaterThanOrEqual(2);
      }
    }
    const [head] = await t.raw<{ revision: string }[]>`select authz_stamp()::text as revision`;
    const target = BigInt(head?.revision ?? "0");
    await until(() => apps.every((a) => a.live().current().revision >= target), 10_000);
    apps.forEach((a, i) => expect(a.feed().stats.reconnects, `replica ${i} reconnected`).toBeGreaterThanOrEqual((before[i] ?? 0) + 2));
    for (let r = 0; r < 2; r++) {
      for (let i = 0; i < N; i++) {
        const d = (apps[r] as App).live().current().check({ type: "user", id: CAROL }, `stream.${i}`, { type: "organization", id: ENG }, Date.now());
        expect(d, `replica ${r} stream.${i}`).toEqual({ allowed: true, reason: "GRANTED" });
      }
    }
  });
});
