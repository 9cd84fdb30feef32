// Fault: the connection of a replica's first (cold) engine load is
// terminated while the load runs. Before the fix the load failed once and the
// process exited ("could not start; exiting"): a database failover during a
// rollout put every starting pod into a crash loop. The service promises: the
// load is retried while the database is unavailable, and the replica becomes
// ready by itself once it can load.
//
// Deterministic: another session holds an ACCESS EXCLUSIVE lock on
// role_assignments, so the load's read of it waits; that waiting backend is
// terminated (twice: the retry waits on the lock again), then the lock is
// released.
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type App, createApp } from "../../src/main.js";
import { projectPath } from "../../src/paths.js";
import { importDocument } from "../../src/store/import.js";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { call, until } from "../support/fault.js";
import { client, loadProtos } from "../support/grpc-client.js";

const ENG = "00000002-0000-4000-8000-000000000001";
const ALICE = "00000003-0000-4000-8000-000000000001";

let t: TestDatabase;
let locker: postgres.Sql;
let killer: postgres.Sql;
let app: App | undefined;
const protos = loadProtos();

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  locker = postgres(t.url, { max: 1, onnotice: () => {} });
  killer = postgres(t.url, { max: 1, onnotice: () => {} });
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await locker?.end({ timeout: 2 });
  await killer?.end({ timeout: 2 });
  await t?.drop();
});

/** The backends of this database waiting on a lock (the load's read of role_assignments). */
const waiting = async (): Promise<number[]> =>
  (
    await killer<{ pid: number }[]>`
      select pid from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`
  ).map((r) => r.pid);

describe("a cold load whose connection is terminated", () => {
  it("is retried, and the replica becomes ready and answers once it can load", async () => {
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let locked = () => {};
    const isLocked = new Promise<void>((r) => {
      locked = r;
    });
    const lock = locker.begin(async (sql) => {
      await sql`lock table role_assignments in access exclusive mode`;
      locked();
      await held;
    });
    await isLocked;

    app = createApp(
      loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
      createLogger("silent"),
    );
    const ports = await app.listen();
    let failed: unknown;
    let ready = false;
    app.ready.then(
      () => {
        ready = true;
      },
      (err: unknown) => {
        failed = err;
      },
    );

    for (let kill = 0; kill < 2; kill++) {
      let pids: number[] = [];
      await until(async () => {
        pids = await waiting();
        return pids.length > 0 || failed !== undefined;
      }, 15_000);
      expect(failed).toBeUndefined();
      await killer`select pg_terminate_backend(pid) from unnest(${pids}::int[]) pid`;
    }
    release();
    await lock;

    await until(() => ready || failed !== undefined, 20_000);
    expect(failed).toBeUndefined();
    expect(ready).toBe(true);
    const perms = client(protos, "authz.v1.PermissionService", ports.grpcPort);
    // Alice holds owner on acme-eng, which inherits members.read (the demo's hand-checked decisions).
    const req = { subject: { type: "user", id: ALICE }, permission: "members.read", resource: { type: "organization", id: ENG } };
    const r = await call<{ allowed: boolean }>(perms, "Check", req, 5000);
    expect(r.ok && r.value.allowed).toBe(true);
    perms.close();
  }, 60_000);
});
