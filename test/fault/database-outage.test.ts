// Fault: the database goes away (pg_ctl stop -m fast on a Postgres this file
// started itself) and comes back. The service promises: AdminService turns
// NOT_SERVING as soon as the database is unreachable and writes fail fast
// with UNAVAILABLE (DATABASE_UNAVAILABLE); decisions go on from the engine
// while it is within AUTHZ_MAX_STALENESS_MS, then PermissionService, the
// overall status and /readyz turn NOT_SERVING; all return to SERVING once the
// database answers and the engine caught up, and a write is visible.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type App, createApp } from "../../src/main.js";
import { projectPath } from "../../src/paths.js";
import { importDocument } from "../../src/store/import.js";
import { migrate } from "../../src/store/migrate.js";
import { createPostgresClient } from "../../src/store/postgres-client.js";
import { call, type Outcome, until } from "../support/fault.js";
import { client, loadProtos } from "../support/grpc-client.js";
import { type PostgresServer, startPostgresServer } from "../support/postgres.js";

const ENG = "00000002-0000-4000-8000-000000000001";
const CAROL = "00000003-0000-4000-8000-000000000003";
const MEMBER_ROLE = "00000009-0000-4000-8000-000000000013";
const MAX_STALENESS_MS = 1500;
const WRITE_DEADLINE_MS = 2000;

let pg: PostgresServer;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const protos = loadProtos();

beforeAll(async () => {
  pg = await startPostgresServer();
  const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
  await admin.unsafe("create database authz");
  await admin.end();
  const db = createPostgresClient({ url: pg.urlFor("authz"), poolMax: 2, logger: createLogger("silent") });
  await migrate(db);
  await importDocument(db, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  await db.close();
  app = createApp(
    loadConfig({
      DATABASE_URL: pg.urlFor("authz"),
      AUTHZ_AUTH: "off",
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_MAX_STALENESS_MS: String(MAX_STALENESS_MS),
    }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await pg?.destroy();
});

type Client = grpc.Client & Record<string, Function>;

/** Timestamps of each status a Health.Watch stream reports for one service. */
function watch(service: string): { events: Array<{ status: string; at: number }>; cancel(): void; c: Client } {
  const c = client(protos, "grpc.health.v1.Health", ports.grpcPort);
  const events: Array<{ status: string; at: number }> = [];
  const stream = (c.Watch as Function).call(c, { service }) as grpc.ClientReadableStream<{ status: string }>;
  stream.on("data", (m: { status: string }) => events.push({ status: m.status, at: performance.now() }));
  stream.on("error", () => {});
  return {
    events,
    c,
    cancel: () => {
      stream.cancel();
      c.close();
    },
  };
}

const firstAfter = (events: Array<{ status: string; at: number }>, status: string, t: number) => events.find((e) => e.status === status && e.at >= t);

const grant = (key: string) => ({
  idempotency_key: `outage-${key}`,
  mutations: [
    { upsert_permission: { key: { organization_id: ENG, key } } },
    { grant_permission: { role: { id: MEMBER_ROLE }, permission: { key: { organization_id: ENG, key } } } },
  ],
});

const check = (key: string, consistency: Record<string, unknown> = {}) => ({
  subject: { type: "user", id: CAROL },
  permission: key,
  resource: { type: "organization", id: ENG },
  consistency,
});

/** /readyz's status, or 0 when it did not answer within 2 s (a loaded machine), so the caller asks again. */
const readyz = () =>
  fetch(`http://127.0.0.1:${ports.httpPort}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
    (r) => r.status,
    () => 0,
  );

describe("Postgres stopped for a few seconds, then started again", () => {
  it("health follows the data path, writes fail fast with UNAVAILABLE, and everything recovers", async () => {
    const overall = watch("");
    const adminHealth = watch("authz.v1.AdminService");
    const admin = client(protos, "authz.v1.AdminService", ports.grpcPort);
    const perms = client(protos, "authz.v1.PermissionService", ports.grpcPort);
    const directory = client(protos, "authz.v1.DirectoryService", ports.grpcPort);
    try {
      await until(() => overall.events.at(-1)?.status === "SERVING" && adminHealth.events.at(-1)?.status === "SERVING", 5000, "SERVING before the outage");
      const before = await call<{ revision: string }>(admin, "ManageRoles", grant("before"), WRITE_DEADLINE_MS);
      expect(before.ok).toBe(true);
      // The engine must hold the write before the database goes away: the decisions below are answered from memory.
      const held = await call<{ allowed: boolean }>(perms, "Check", check("before", before.ok ? { at_least_as_fresh: before.value.revision } : {}), 5000);
      expect(held.ok && held.value.allowed).toBe(true);

      const stopped = performance.now();
      await pg.stop();
      // Writes during the outage: every one answered, UNAVAILABLE, within the deadline (a slower one would be DEADLINE_EXCEEDED).
      const writes: Array<Outcome<unknown>> = [];
      const decisions: Array<Outcome<{ allowed: boolean }>> = [];
      await until(() => firstAfter(adminHealth.events, "NOT_SERVING", stopped) !== undefined, 5000, "AdminService NOT_SERVING");
      for (let i = 0; i < 10; i++) {
        writes.push(await call(admin, "ManageRoles", grant(`during.${i}`), WRITE_DEADLINE_MS));
        decisions.push(await call<{ allowed: boolean }>(perms, "Check", check("before"), WRITE_DEADLINE_MS));
      }
      // A read that needs the database fails the same way, without the write's hint about idempotency keys.
      const read = await call(directory, "GetUser", { id: CAROL }, WRITE_DEADLINE_MS);
      await until(() => firstAfter(overall.events, "NOT_SERVING", stopped) !== undefined, MAX_STALENESS_MS + 5000, "overall NOT_SERVING");
      await until(async () => (await readyz()) === 503, 5000, "/readyz 503");
      const readyz503 = performance.now();
      // Past the staleness bound, a write still fails fast, and a decision is still answered (counted as stale).
      writes.push(await call(admin, "ManageRoles", grant("during.late"), WRITE_DEADLINE_MS));
      decisions.push(await call<{ allowed: boolean }>(perms, "Check", check("before"), WRITE_DEADLINE_MS));

      const restarted = performance.now();
      await pg.start();
      await until(() => firstAfter(overall.events, "SERVING", restarted) !== undefined, 15_000, "overall SERVING again");
      await until(() => firstAfter(adminHealth.events, "SERVING", restarted) !== undefined, 15_000, "AdminService SERVING again");
      const serving = performance.now();
      await until(async () => (await readyz()) === 200, 5000, "/readyz 200");
      const after = await call<{ revision: string }>(admin, "ManageRoles", grant("after"), WRITE_DEADLINE_MS);
      expect(after.ok).toBe(true);
      const seen = await call<{ allowed: boolean }>(perms, "Check", check("after", after.ok ? { at_least_as_fresh: after.value.revision } : {}), 5000);
      expect(seen.ok && seen.value.allowed).toBe(true);

      expect(writes.map((w) => (w.ok ? "OK" : `${grpc.status[w.code]}/${w.reason}`))).toEqual(writes.map(() => "UNAVAILABLE/DATABASE_UNAVAILABLE"));
      // A write's outcome is unknown when the database goes away mid-call: its message says so, and (it was
      // sent with an idempotency key) that a retry with the same key returns it.
      expect(writes.every((w) => !w.ok && w.details.includes("may have been applied; a retry with the same idempotency_key"))).toBe(true);
      expect(read.ok ? "OK" : `${grpc.status[read.code]}/${read.reason}`).toBe("UNAVAILABLE/DATABASE_UNAVAILABLE");
      expect(!read.ok && read.details).toBe("the database cannot be reached; retry with backoff");
      expect(decisions.map((d) => d.ok && d.value.allowed)).toEqual(decisions.map(() => true));
      const adminDown = (firstAfter(adminHealth.events, "NOT_SERVING", stopped)?.at ?? 0) - stopped;
      const overallDown = (firstAfter(overall.events, "NOT_SERVING", stopped)?.at ?? 0) - stopped;
      console.log(
        `database outage: AdminService NOT_SERVING ${adminDown.toFixed(0)} ms after pg_ctl stop began, overall NOT_SERVING after ${overallDown.toFixed(0)} ms ` +
          `(bound ${MAX_STALENESS_MS} ms), /readyz 503 seen after ${(readyz503 - stopped).toFixed(0)} ms; ` +
          `writes meanwhile: ${writes.length}, slowest ${Math.max(...writes.map((w) => w.ms)).toFixed(0)} ms; ` +
          `SERVING ${(serving - restarted).toFixed(0)} ms after pg_ctl start began`,
      );
    } finally {
      overall.cancel();
      adminHealth.cancel();
      admin.close();
      perms.close();
      directory.close();
    }
  }, 60_000);
});
