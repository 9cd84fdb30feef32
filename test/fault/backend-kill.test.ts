// Fault: every Postgres backend of the database is terminated
// (pg_terminate_backend) right after a write, 30 times, while writes and
// reads run against two replicas running as real processes. Before the
// postgres.js patch (patches/) a replica exited with "Cannot read properties
// of null (reading 'write') at Immediate.nextWrite". The service promises:
// the processes survive, failed calls say UNAVAILABLE (never INTERNAL), and a
// write after the storm is visible on every replica within the staleness bound.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectPath } from "../../src/paths.js";
import { importDocument } from "../../src/store/import.js";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { call, metric, type Outcome, until } from "../support/fault.js";
import { client, loadProtos } from "../support/grpc-client.js";
import { type ServerProcess, startServerProcess } from "../support/server-process.js";

const ENG = "00000002-0000-4000-8000-000000000001";
const CAROL = "00000003-0000-4000-8000-000000000003"; // member of acme-eng
const MEMBER_ROLE = "00000009-0000-4000-8000-000000000013";
const ROUNDS = 30;
const MAX_STALENESS_MS = 2000;
/**
 * Above the server's idle_in_transaction_session_timeout (5 s): a write fails
 * UNAVAILABLE well before it. No write may run out of it: that was the wedged
 * connection the driver patch fixes (docs/faults.md, "Found (2026-11-30)";
 * test/fault/driver-reset.test.ts reproduces it alone).
 */
const WRITE_DEADLINE_MS = 8000;

let t: TestDatabase;
let killer: postgres.Sql;
const servers: ServerProcess[] = [];
const protos = loadProtos();

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  killer = postgres(t.url, { max: 1, onnotice: () => {} });
  for (let i = 0; i < 2; i++) {
    servers.push(
      await startServerProcess({
        DATABASE_URL: t.url,
        AUTHZ_AUTH: "off",
        AUTHZ_LOG_LEVEL: "warn",
        AUTHZ_DATABASE_POOL_MAX: "4",
        AUTHZ_MAX_STALENESS_MS: String(MAX_STALENESS_MS),
      }),
    );
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await killer?.end({ timeout: 2 });
  await t?.drop();
});

const admin = (r: number) => client(protos, "authz.v1.AdminService", (servers[r] as ServerProcess).grpcPort);
const perms = (r: number) => client(protos, "authz.v1.PermissionService", (servers[r] as ServerProcess).grpcPort);

function grantRequest(key: string) {
  return {
    idempotency_key: `storm-${key}`,
    mutations: [
      { upsert_permission: { key: { organization_id: ENG, key } } },
      { grant_permission: { role: { id: MEMBER_ROLE }, permission: { key: { organization_id: ENG, key } } } },
    ],
  };
}

const checkRequest = (key: string, consistency: Record<string, unknown> = {}) => ({
  subject: { type: "user", id: CAROL },
  permission: key,
  resource: { type: "organization", id: ENG },
  consistency,
});

/** Every backend of the test database but the killer's own. */
async function killAllBackends(): Promise<number> {
  const rows = await killer`select pg_terminate_backend(pid) from pg_stat_activity
                            where datname = current_database() and pid <> pg_backend_pid()`;
  return rows.length;
}

describe("pg_terminate_backend storm against two replicas", () => {
  it(`survives ${ROUNDS} rounds, answers UNAVAILABLE (never INTERNAL) meanwhile, and converges`, async () => {
    const writers = [admin(0), admin(1)];
    const readers = [perms(0), perms(1)];
    // Failed calls by kind: a read with a token may run out of its deadline while it waits for
    // freshness (the server answers NOT_FRESH_ENOUGH 5 ms before it); everything else must say UNAVAILABLE.
    const failures: Array<{ kind: "write" | "read" | "token read"; outcome: Outcome<unknown> }> = [];
    let lastToken = "0";
    let stop = false;
    // Reads on both replicas, token-less and with the newest token, until the storm ends (bounded).
    const traffic = (async () => {
      const end = Date.now() + 90_000;
      for (let i = 0; !stop && i < 20_000 && Date.now() < end; i++) {
        const r = i % 2;
        const tokenRead = i % 4 >= 2;
        const consistency = tokenRead ? { at_least_as_fresh: lastToken } : {};
        const res = await call(readers[r] as grpc.Client & Record<string, Function>, "Check", checkRequest("storm.0", consistency), 3000);
        if (!res.ok) failures.push({ kind: tokenRead ? "token read" : "read", outcome: res });
      }
    })();

    let killed = 0;
    let maxStaleness = 0;
    const written: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // A write through one replica (retried with its idempotency key until it lands, bounded) …
      const key = `storm.${round}`;
      let res: Outcome<{ revision: string }> | undefined;
      for (let attempt = 0; attempt < 20 && !res?.ok; attempt++) {
        res = await call<{ revision: string }>(
          writers[round % 2] as grpc.Client & Record<string, Function>,
          "ManageRoles",
          grantRequest(key),
          WRITE_DEADLINE_MS,
        );
        if (!res.ok) failures.push({ kind: "write", outcome: res });
      }
      for (const [i, s] of servers.entries()) expect(s.exited(), `replica ${i} exited in round ${round}:\n${s.output().slice(-3000)}`).toBeUndefined();
      expect(res?.ok, `round ${round}: the write never landed: ${JSON.stringify(res)}`).toBe(true);
      if (res?.ok) lastToken = res.value.revision;
      written.push(key);
      // … and right after it, every backend of the database is terminated.
      killed += await killAllBackends();
      for (const [i, s] of servers.entries()) expect(s.exited(), `replica ${i} exited in round ${round}:\n${s.output().slice(-3000)}`).toBeUndefined();
      for (const s of servers) maxStaleness = Math.max(maxStaleness, (await metric(s.httpPort, "authz_engine_staleness_seconds").catch(() => 0)) ?? 0);
    }
    stop = true;
    await traffic;

    // After the storm: one more write, visible token-less on every replica within the bound.
    let final: Outcome<{ revision: string }> | undefined;
    for (let attempt = 0; attempt < 20 && !final?.ok; attempt++) {
      final = await call<{ revision: string }>(
        writers[0] as grpc.Client & Record<string, Function>,
        "ManageRoles",
        grantRequest("storm.final"),
        WRITE_DEADLINE_MS,
      );
    }
    expect(final?.ok).toBe(true);
    const converge = await Promise.all(
      readers.map((c) =>
        until(
          async () => {
            const r = await call<{ allowed: boolean }>(c as grpc.Client & Record<string, Function>, "Check", checkRequest("storm.final"), 1000);
            return r.ok && r.value.allowed;
          },
          MAX_STALENESS_MS + 1000,
          "the final write visible on the replica",
        ),
      ),
    );
    for (const [i, s] of servers.entries()) expect(s.exited(), `replica ${i} exited:\n${s.output().slice(-3000)}`).toBeUndefined();
    // Every write of the storm is there, on both replicas, without a token.
    for (const c of readers) {
      for (const key of written) {
        const r = await call<{ allowed: boolean }>(c as grpc.Client & Record<string, Function>, "Check", checkRequest(key), 3000);
        expect(r.ok && r.value.allowed, key).toBe(true);
      }
    }
    const described = failures.map(({ kind, outcome }) => `${kind}: ${outcome.ok ? "OK" : grpc.status[outcome.code]}`);
    const allowed = new Set(["write: UNAVAILABLE", "read: UNAVAILABLE", "token read: UNAVAILABLE", "token read: DEADLINE_EXCEEDED"]);
    expect(
      described.filter((d) => !allowed.has(d)),
      "failed calls that should have been UNAVAILABLE",
    ).toEqual([]);
    expect(killed).toBeGreaterThanOrEqual(ROUNDS * 2);
    console.log(
      `backend-kill storm: ${ROUNDS} rounds, ${killed} backends terminated, both replicas alive; ` +
        `${failures.length} calls failed (${[...new Set(described)].join(", ") || "none"}); max staleness sampled ${maxStaleness.toFixed(3)} s; ` +
        `final write visible on every replica after ${converge.map((ms) => ms.toFixed(0)).join(" / ")} ms`,
    );
    for (const c of [...writers, ...readers]) c.close();
  }, 120_000);
});
