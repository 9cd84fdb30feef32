import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { CHANGE_CHANNEL, startChangeFeed } from "../src/store/change-feed.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

let t: TestDatabase;
beforeAll(async () => {
  t = await freshDatabase();
});
afterAll(async () => {
  await t?.drop();
});

const until = async (cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`condition not met within ${ms} ms`);
};

/** Numbers every committed, unnumbered write (what every replica's change feed does on a notification). */
const stamp = async (): Promise<bigint> => BigInt(((await t.raw<{ r: string }[]>`select authz_stamp()::text as r`)[0] as { r: string }).r);
const pending = async (): Promise<number> => Number((await t.raw<{ n: number }[]>`select count(*)::int as n from authz_changes where revision is null`)[0]?.n);

describe("change log", () => {
  it("a plain SQL write from another client produces a change row, a NOTIFY, and a revision once numbered", async () => {
    const payloads: string[] = [];
    const sub = await t.client.listen(
      CHANGE_CHANNEL,
      (p) => payloads.push(p),
      () => {},
    );
    const before = await stamp();
    await t.raw`insert into tenants (id, name, slug) values ('f0000000-0000-4000-8000-000000000001', 'T', 't')`;
    // Committed, logged, not numbered yet; listeners are told a write is pending.
    expect(await pending()).toBe(1);
    await until(() => payloads.includes("pending"));
    const after = await stamp();
    expect(after).toBe(before + 1n);
    const rows = await t.raw`select revision::text, table_name, op, new_row->>'slug' as slug from authz_changes where revision = ${after.toString()}`;
    expect(rows).toEqual([{ revision: after.toString(), table_name: "tenants", op: "INSERT", slug: "t" }]);
    await until(() => payloads.includes(after.toString()));
    await sub.unlisten();
  });

  it("one transaction is one revision; a rolled-back one leaves nothing", async () => {
    const before = await stamp();
    await t.raw.begin(async (tx) => {
      await tx`insert into users (id) values ('f1000000-0000-4000-8000-000000000001'), ('f1000000-0000-4000-8000-000000000002')`;
      await tx`update users set locked = true where id = 'f1000000-0000-4000-8000-000000000001'`;
    });
    await expect(
      t.raw.begin(async (tx) => {
        await tx`insert into users (id) values ('f1000000-0000-4000-8000-000000000003')`;
        throw new Error("roll back");
      }),
    ).rejects.toThrow("roll back");
    expect(await stamp()).toBe(before + 1n);
    const rows = await t.raw<{ revision: string; n: number }[]>`
      select revision::text, count(*)::int as n from authz_changes where revision > ${before.toString()} group by revision`;
    expect(rows).toEqual([{ revision: (before + 1n).toString(), n: 3 }]);
  });

  it("an update that changes nothing is not a change", async () => {
    const before = await stamp();
    await t.raw`update users set locked = locked`;
    await t.raw`update tenants set name = name`;
    expect(await pending()).toBe(0);
    expect(await stamp()).toBe(before);
  });

  it("writers do not wait for each other: two open writing transactions both write", async () => {
    let releaseA!: () => void;
    const holdA = new Promise<void>((r) => (releaseA = r));
    let aWrote!: () => void;
    const aHasWritten = new Promise<void>((r) => (aWrote = r));
    const a = t.raw.begin(async (tx) => {
      await tx`insert into staff (id, logical_key) values ('f2000000-0000-4000-8000-000000000011', 'staff:open-a')`;
      aWrote();
      await holdA;
    });
    await aHasWritten;
    // A is still open with a tracked write; B writes and commits without waiting for it.
    await t.raw`insert into staff (id, logical_key) values ('f2000000-0000-4000-8000-000000000012', 'staff:open-b')`;
    releaseA();
    await a;
  });

  it("a late commit is never numbered below a revision already handed out, so replaying 'revision > R' never skips it", async () => {
    let releaseA!: () => void;
    const holdA = new Promise<void>((r) => (releaseA = r));
    let aWrote!: () => void;
    const aHasWritten = new Promise<void>((r) => (aWrote = r));
    // A begins writing first and commits last.
    const a = t.raw.begin(async (tx) => {
      await tx`insert into staff (id, logical_key) values ('f2000000-0000-4000-8000-000000000001', 'staff:a')`;
      aWrote();
      await holdA;
      return "a";
    });
    await aHasWritten;
    await t.raw`insert into staff (id, logical_key) values ('f2000000-0000-4000-8000-000000000002', 'staff:b')`;
    const revB = await stamp();
    releaseA();
    await a;
    const revA = await stamp();
    expect(revA).toBe(revB + 1n);
    const replay = await t.raw<{ key: string }[]>`
      select new_row->>'logical_key' as key from authz_changes where revision > ${revB.toString()} and table_name = 'staff'
       order by authz_changes.revision, authz_changes.id`;
    expect(replay.map((r) => r.key)).toEqual(["staff:a"]);
  });

  it("a transaction that waited for another's row lock is numbered after it, even when numbered together", async () => {
    const before = await stamp();
    await t.raw`insert into tenants (id, name, slug) values ('f4000000-0000-4000-8000-000000000001', 'Row', 'row')`;
    const afterInsert = await stamp();
    expect(afterInsert).toBe(before + 1n);
    // B starts first (lower transaction id) but its update of the row waits for A's, which commits first.
    let releaseA!: () => void;
    const holdA = new Promise<void>((r) => (releaseA = r));
    let bStarted!: () => void;
    const bHasStarted = new Promise<void>((r) => (bStarted = r));
    let aLocked!: () => void;
    const aHasLocked = new Promise<void>((r) => (aLocked = r));
    const b = t.raw.begin(async (tx) => {
      await tx`insert into staff (logical_key) values ('staff:b-first')`;
      bStarted();
      await aHasLocked;
      await tx`update tenants set name = 'B' where id = 'f4000000-0000-4000-8000-000000000001'`;
    });
    await bHasStarted;
    const a = t.raw.begin(async (tx) => {
      await tx`update tenants set name = 'A' where id = 'f4000000-0000-4000-8000-000000000001'`;
      aLocked();
      await holdA;
    });
    await aHasLocked;
    const other = postgres(t.url, { max: 1, onnotice: () => {} });
    try {
      for (let i = 0; i < 500; i++) {
        const [w] = await other<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = ${t.name} and wait_event_type = 'Lock'`;
        if ((w?.n ?? 0) >= 1) break;
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      await other.end();
    }
    releaseA();
    await Promise.all([a, b]);
    expect(await stamp()).toBe(afterInsert + 2n);
    const names = await t.raw<{ name: string; revision: string }[]>`
      select new_row->>'name' as name, revision::text from authz_changes
       where table_name = 'tenants' and new_row->>'id' = 'f4000000-0000-4000-8000-000000000001' and op = 'UPDATE'
       order by authz_changes.revision, authz_changes.id`;
    expect(names.map((n) => n.name)).toEqual(["A", "B"]);
    expect(BigInt(names[0]?.revision ?? "0")).toBeLessThan(BigInt(names[1]?.revision ?? "0"));
  });

  it("TRUNCATE is logged as one change", async () => {
    await t.raw`truncate ownership_transfers`;
    const rows = await t.raw`select op from authz_changes where table_name = 'ownership_transfers'`;
    expect(rows).toEqual([{ op: "TRUNCATE" }]);
  });
});

describe("change feed", () => {
  it("follows writes through NOTIFY and catches up after its listener connection is killed", async () => {
    const feed = await startChangeFeed(t.client, createLogger("silent"), 60_000);
    try {
      const seen: bigint[] = [];
      feed.onAdvance((r) => seen.push(r));
      await t.raw`insert into staff (logical_key) values ('staff:feed-1')`;
      // The feed numbers the pending write itself, on the notification.
      await until(async () => (await pending()) === 0);
      const [r1] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
      await until(() => feed.revision === BigInt(r1?.revision ?? "-1"));

      // Kill the listening backend; write while it is gone; the feed must reconnect and catch up.
      const killed = await t.raw`
        select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`;
      expect(killed.length).toBeGreaterThanOrEqual(1);
      await t.raw`insert into staff (logical_key) values ('staff:feed-2')`;
      await until(async () => (await pending()) === 0);
      const [r2] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
      await until(() => feed.revision === BigInt(r2?.revision ?? "-1"));
      await until(() => feed.stats.reconnects >= 1);
      expect(seen.at(-1)).toBe(BigInt(r2?.revision ?? "-1"));
      await expect(feed.waitFor(BigInt(r2?.revision ?? "0"), 10)).resolves.toBe(BigInt(r2?.revision ?? "0"));
      await expect(feed.waitFor(BigInt(r2?.revision ?? "0") + 100n, 50)).rejects.toThrow(/not reached/);
    } finally {
      await feed.stop();
    }
  });
});

describe("change-log retention", () => {
  it("a replica the pruned log no longer reaches reloads a snapshot instead of replaying, and loses nothing", async () => {
    const { startLiveEngine } = await import("../src/store/live-engine.js");
    const { readLatestRevision } = await import("../src/store/change-feed.js");
    const { pruneHistory } = await import("../src/store/retention.js");
    // A feed that stays silent: the replica only catches up when asked.
    let head = await readLatestRevision(t.client);
    const quiet = {
      get revision() {
        return head;
      },
      stats: { reconnects: 0, catchUps: 0, notifications: 0, listenerLosses: 0, pollFailures: 0 },
      listening: true,
      stalenessMs: () => 0,
      onAdvance: () => () => {},
      fetchLatest: async () => (head = await readLatestRevision(t.client)),
      waitFor: async () => head,
      stop: async () => {},
    };
    const live = await startLiveEngine(t.client, quiet, createLogger("silent"));
    try {
      expect(live.stats.loads).toBe(1);
      await t.raw`insert into users (id, locked) values ('f3000000-0000-4000-8000-000000000001', true)`;
      await t.raw`insert into staff (logical_key) values ('staff:after-prune')`;
      await readLatestRevision(t.client); // numbered, so the prune below may drop them
      const pruned = await pruneHistory(t.client, { changeLogHours: 0, idempotencyHours: 0 });
      expect(pruned.changes).toBeGreaterThan(0);
      const engine = await live.fullyConsistent(5000);
      expect(live.stats.loads).toBe(2);
      expect(
        engine.check(
          { type: "user", id: "f3000000-0000-4000-8000-000000000001" },
          "x",
          { type: "tenant", id: "f0000000-0000-4000-8000-000000000001" },
          Date.now(),
        ).reason,
      ).toBe("PERMISSION_NOT_FOUND");
      expect(engine.revision).toBe(await readLatestRevision(t.client));
    } finally {
      live.stop();
    }
  });
});
