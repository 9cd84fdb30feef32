// Watch over real sockets (gRPC and Connect) against the change log itself:
// every change in revision order, also while the listener's backend is killed
// mid-stream; filters and tenancy; heartbeats; resuming; a pruned log.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchService } from "../gen/authz/v1/watch_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos } from "./support/grpc-client.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const [TA, TB, OA, OB] = [id("a001", 1), id("b001", 1), id("a002", 1), id("b002", 1)];
const DATA = {
  TENANT: [
    { id: TA, name: "Alpha", slug: "alpha" },
    { id: TB, name: "Beta", slug: "beta" },
  ],
  ORGANIZATION: [
    { id: OA, tenant_id: TA, name: "Alpha Org", slug: "alpha-org" },
    { id: OB, tenant_id: TB, name: "Beta Org", slug: "beta-org" },
  ],
};

let t: TestDatabase;
let app: App;
let port = 0;
let httpPort = 0;
const protos = loadProtos();
const keys: Record<string, string> = {};

type Change = { revision: string; table: string; operation: string; ids: Record<string, string>; tenant_id: string; organization_id: string };
type Msg = { changes: Change[]; revision: string };

async function addKey(name: string, scopes: Scope[], tenant: string | null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  return key;
}

/** A gRPC Watch stream whose messages are collected; wait() resolves when a condition on them holds. */
function watch(req: Record<string, unknown>, key = keys.root as string, onPort = port) {
  const c = client(protos, "authz.v1.WatchService", onPort);
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  const msgs: Msg[] = [];
  let error: grpc.ServiceError | undefined;
  const waiters = new Set<() => void>();
  const s = (c.Watch as Function).call(c, req, md) as grpc.ClientReadableStream<Msg>;
  const poke = () => {
    for (const w of [...waiters]) w();
  };
  s.on("data", (m: Msg) => {
    msgs.push(m);
    poke();
  });
  s.on("error", (e: grpc.ServiceError) => {
    error = e;
    poke();
  });
  return {
    msgs,
    get error() {
      return error;
    },
    changes: () => msgs.flatMap((m) => m.changes),
    /** Resolves once `cond` holds (checked on every message), rejects on a stream error or after 20 s. */
    wait(cond: () => boolean, what: string): Promise<void> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${what}`));
        }, 20_000);
        const check = () => {
          if (error && error.code !== grpc.status.CANCELLED) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(error);
          } else if (cond()) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
        check();
      });
    },
    close() {
      s.cancel();
      c.close();
    },
  };
}

const head = async () => BigInt((await t.raw<{ r: string }[]>`select authz_stamp()::text as r`)[0]?.r ?? "0");
const reached = (w: ReturnType<typeof watch>, r: bigint) => () => w.msgs.length > 0 && BigInt(w.msgs.at(-1)?.revision ?? "0") >= r;

/** The change log after `from` (through `to`), as Watch sends it. */
async function logAfter(from: bigint, to: bigint) {
  const rows = await t.raw<{ revision: string; table_name: string; op: string; row_id: string | null }[]>`
    select revision::text, table_name, op, coalesce(new_row, old_row)->>'id' as row_id from authz_changes
     where revision > ${from.toString()}::bigint and revision <= ${to.toString()}::bigint order by authz_changes.revision, authz_changes.id`;
  return rows.map((r) => `${r.revision} ${r.table_name} ${r.op} ${r.row_id ?? ""}`);
}
const asLog = (cs: Change[]) => cs.map((c) => `${c.revision} ${c.table} ${c.operation.replace("WATCH_OPERATION_", "")} ${c.ids.id ?? ""}`);

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, DATA);
  keys.root = await addKey("root", ["check", "admin"], null);
  keys.alpha = await addKey("alpha", ["check"], TA);
  keys.writer = await addKey("writer", ["admin"], null);
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ({ grpcPort: port, httpPort } = await app.listen());
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

describe("Watch", () => {
  it("sends every change after from_revision in log order, with tenant and organization", async () => {
    const from = await head();
    const w = watch({ from_revision: from.toString() });
    try {
      await t.raw`insert into staff (logical_key) values ('staff:w1')`;
      await t.raw`insert into accounts (organization_id, email, active) values (${OA}, 'w@alpha.example', true)`;
      await t.raw.begin(async (tx) => {
        await tx`insert into accounts (organization_id, email, active) values (${OB}, 'w@beta.example', true)`;
        await tx`update organizations set name = 'Beta Org 2' where id = ${OB}`;
      });
      const to = await head();
      await w.wait(reached(w, to), `revision ${to}`);
      expect(asLog(w.changes())).toEqual(await logAfter(from, to));
      const acc = w.changes().filter((c) => c.table === "accounts");
      expect(acc.map((c) => [c.tenant_id, c.organization_id])).toEqual([
        [TA, OA],
        [TB, OB],
      ]);
      expect(w.changes().find((c) => c.table === "staff")).toMatchObject({ tenant_id: "", organization_id: "", operation: "WATCH_OPERATION_INSERT" });
      // Revisions never go back.
      const revs = w.msgs.map((m) => BigInt(m.revision));
      expect(revs).toEqual([...revs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    } finally {
      w.close();
    }
  });

  it("never skips or reorders while the listener's backend is killed mid-stream", async () => {
    const from = await head();
    const w = watch({ from_revision: from.toString(), heartbeat_ms: 200 });
    const lossesBefore = app.feed().stats.listenerLosses;
    try {
      await w.wait(() => w.msgs.length > 0, "the opening message");
      for (let i = 0; i < 40; i++) {
        await t.raw`insert into staff (logical_key) values (${`staff:kill-${i}`})`;
        if (i === 10 || i === 25) {
          // The second kill may come before the listener is back from the first: wait for its LISTEN (bounded).
          let killed = 0;
          for (const end = Date.now() + 10_000; killed === 0 && Date.now() < end; ) {
            killed = (
              await t.raw`select pg_terminate_backend(pid) from pg_stat_activity
                 where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`
            ).length;
            if (killed === 0) await new Promise((r) => setTimeout(r, 20));
          }
          expect(killed).toBeGreaterThanOrEqual(1);
        }
      }
      const to = await head();
      await w.wait(reached(w, to), `revision ${to}`);
      expect(app.feed().stats.listenerLosses).toBeGreaterThan(lossesBefore);
      const streamed = asLog(w.changes());
      const log = await logAfter(from, to);
      expect(streamed).toEqual(log);
      expect(log.length).toBe(40);
    } finally {
      w.close();
    }
  });

  it("a revision of 2,500 rows spans messages, in order; the messages before its end carry the revision before it", async () => {
    const from = await head();
    const w = watch({ from_revision: from.toString() });
    try {
      await t.raw`insert into staff (logical_key) select 'staff:bulk-' || g from generate_series(1, 2500) g`;
      await t.raw`insert into staff (logical_key) values ('staff:after-bulk')`;
      const to = await head();
      await w.wait(reached(w, to), `revision ${to}`);
      expect(asLog(w.changes())).toEqual(await logAfter(from, to));
      const bulk = from + 1n;
      const carrying = w.msgs.filter((m) => m.changes.some((c) => c.revision === bulk.toString()));
      expect(carrying.length).toBeGreaterThanOrEqual(3);
      expect(carrying.every((m) => m.changes.length <= 1000)).toBe(true);
      // Until the revision is complete, a message claims only the revision before it.
      expect(carrying.slice(0, -1).every((m) => BigInt(m.revision) === from)).toBe(true);
    } finally {
      w.close();
    }
  });

  it("filters by table, tenant and organization; a tenant-bound key sees only its tenant", async () => {
    const from = await head();
    const hb = { from_revision: from.toString(), heartbeat_ms: 200 };
    const all = watch(hb);
    const beta = watch({ ...hb, tenant_id: TB, tables: ["accounts"] });
    const org = watch({ ...hb, organization_id: OA });
    const alpha = watch(hb, keys.alpha);
    try {
      await t.raw`insert into accounts (organization_id, email, active) values (${OA}, 'f@alpha.example', true)`;
      await t.raw`insert into accounts (organization_id, email, active) values (${OB}, 'f@beta.example', true)`;
      await t.raw`insert into roles (organization_id, key, name) values (${OB}, 'f-beta', 'F beta')`;
      await t.raw`insert into users (logical_key) values ('user:f')`;
      const to = await head();
      for (const w of [all, beta, org, alpha]) await w.wait(reached(w, to), `revision ${to}`);
      expect(all.changes()).toHaveLength(4);
      expect(beta.changes().map((c) => [c.table, c.tenant_id])).toEqual([["accounts", TB]]);
      expect(org.changes().map((c) => [c.table, c.organization_id])).toEqual([["accounts", OA]]);
      expect(alpha.changes().map((c) => [c.table, c.tenant_id])).toEqual([["accounts", TA]]);
    } finally {
      for (const w of [all, beta, org, alpha]) w.close();
    }
  });

  it("a tenant-bound key naming another tenant or its organization: PERMISSION_DENIED", async () => {
    for (const req of [{ tenant_id: TB }, { organization_id: OB }]) {
      const w = watch(req, keys.alpha);
      await w.wait(() => w.error !== undefined, "the error").catch(() => {});
      expect(w.error?.code).toBe(grpc.status.PERMISSION_DENIED);
      w.close();
    }
  });

  it("heartbeats carry the revision while nothing matches, and a resume from the last revision loses nothing", async () => {
    const from = await head();
    const w = watch({ from_revision: from.toString(), tables: ["role_assignments"], heartbeat_ms: 100 });
    try {
      await t.raw`insert into staff (logical_key) values ('staff:hb')`;
      const to = await head();
      // Nothing matches, but heartbeats move on to the new revision.
      await w.wait(reached(w, to), `a heartbeat at ${to}`);
      expect(w.changes()).toEqual([]);
      expect(w.msgs.length).toBeGreaterThanOrEqual(2);
    } finally {
      w.close();
    }
    const resumeFrom = await head();
    await t.raw`insert into staff (logical_key) values ('staff:resume')`;
    const to = await head();
    const r = watch({ from_revision: resumeFrom.toString() });
    try {
      await r.wait(reached(r, to), `revision ${to}`);
      expect(asLog(r.changes())).toEqual(await logAfter(resumeFrom, to));
    } finally {
      r.close();
    }
  });

  it("on Connect too: the same changes as the log", async () => {
    const from = await head();
    await t.raw`insert into staff (logical_key) values ('staff:connect')`;
    // A row with a null *_id column (legacy_user_id): its id map leaves it out (JSON has no null map values).
    await t.raw`insert into users (email) values ('connect@example.test')`;
    const to = await head();
    const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${httpPort}`, httpVersion: "1.1" });
    const watcher = createClient(WatchService, transport);
    const abort = new AbortController();
    const got: string[] = [];
    try {
      for await (const m of watcher.watch({ fromRevision: from.toString() }, { headers: { "x-api-key": keys.root as string }, signal: abort.signal })) {
        got.push(...m.changes.map((c) => `${c.revision} ${c.table} ${["", "INSERT", "UPDATE", "DELETE", "TRUNCATE"][c.operation]} ${c.ids.id ?? ""}`));
        for (const c of m.changes) expect(Object.entries(c.ids).filter(([, v]) => v === "null" || v === null)).toEqual([]);
        if (BigInt(m.revision) >= to) break;
      }
    } finally {
      abort.abort();
    }
    expect(got).toEqual(await logAfter(from, to));
  });

  it("an open stream ends with UNAVAILABLE and its revision when the server shuts down (the drain does not wait for it)", async () => {
    const other = createApp(
      loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
      createLogger("silent"),
    );
    const { grpcPort } = await other.listen();
    await other.ready;
    const w = watch({ heartbeat_ms: 60_000 }, keys.root, grpcPort);
    await w.wait(() => w.msgs.length > 0, "the opening message");
    const stopped = other.stop();
    await w.wait(() => w.error !== undefined, "the end of the stream").catch(() => {});
    await stopped;
    expect(w.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(w.error?.details).toMatch(/resume the watch from revision \d+/);
    w.close();
  });

  it("malformed requests are INVALID_ARGUMENT; a revision beyond the newest too", async () => {
    const future = (await head()) + 1000n;
    for (const req of [{ from_revision: "abc" }, { tables: ["api_keys"] }, { heartbeat_ms: 5 }, { tenant_id: "x" }, { from_revision: future.toString() }]) {
      const w = watch(req);
      await w.wait(() => w.error !== undefined, "the error").catch(() => {});
      expect(w.error?.code, JSON.stringify(req)).toBe(grpc.status.INVALID_ARGUMENT);
      w.close();
    }
  });

  it("FAILED_PRECONDITION (CHANGES_PRUNED) when the log no longer holds from_revision's successors", async () => {
    await t.raw`insert into staff (logical_key) values ('staff:prune')`;
    const to = await head();
    // What retention does to old rows (src/store/retention.ts), here to everything up to `to`.
    await t.raw`delete from authz_changes where revision <= ${to.toString()}::bigint`;
    await t.raw`insert into staff (logical_key) values ('staff:after-prune')`;
    const latest = await head();
    const w = watch({ from_revision: (to - 2n).toString() });
    await w.wait(() => w.error !== undefined, "the error").catch(() => {});
    expect(w.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(w.error?.details).toMatch(/no longer holds/);
    w.close();
    // From a revision the log still continues from, it works.
    const ok = watch({ from_revision: to.toString() });
    try {
      await ok.wait(reached(ok, latest), `revision ${latest}`);
      expect(asLog(ok.changes())).toEqual(await logAfter(to, latest));
    } finally {
      ok.close();
    }
  });
});
