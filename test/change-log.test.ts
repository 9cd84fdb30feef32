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

describe("change log", () => {
  it("a plain SQL write from another client produces a change row and a NOTIFY with its revision", async () => {
    const payloads: string[] = [];
    const sub = await t.client.listen(CHANGE_CHANNEL, (p) => payloads.push(p), () => {});
    const [before] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
    await t.raw`insert into tenants (id, name, slug) values ('f0000000-0000-4000-8000-000000000001', 'T', 't')`;
    const [after] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
    expect(BigInt(after?.revision ?? "0")).toBe(BigInt(before?.revision ?? "0") + 1n);
    const rows = await t.raw`select revision::text, table_name, op, new_row->>'slug' as slug from authz_changes where revision = ${after?.revision ?? ""}`;
    expect(rows).toEqual([{ revision: after?.revision, table_name: "tenants", op: "INSERT", slug: "t" }]);
    await until(() => payloads.includes(after?.revision ?? "?"));
    await sub.unlisten();
  });

  it("one transaction is one revision; a rolled-back one leaves nothing", async () => {
    const [before] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
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
    const rows = await t.raw<{ revision: string; n: number }[]>`
      select revision::text, count(*)::int as n from authz_changes where revision > ${before?.revision ?? "0"} group by revision`;
    expect(rows).toEqual([{ revision: (BigInt(before?.revision ?? "0") + 1n).toString(), n: 3 }]);
  });

  it("an update that changes nothing is not a change", async () => {
    const [before] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
    await t.raw`update users set locked = locked`;
    await t.raw`update tenants set name = name`;
    const [after] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
    expect(after?.revision).toBe(before?.revision);
  });

  it("revisions follow commit order, so replaying 'revision > R' never skips a late commit", async () => {
    // A begins writing first but commits last; B must get the higher revision.
    let aWrote!: () => void;
    const aHasWritten = new Promise<void>((r) => {
      aWrote = r;
    });
    const a = t.raw.begin(async (tx) => {
      await tx`insert into staff (id, logical_key) values ('f2000000-0000-4000-8000-000000000001', 'staff:a')`;
      aWrote();
      await new Promise((r) => setTimeout(r, 300));
      return "a";
    });
    await aHasWritten;
    const b = t.raw.begin(async (tx) => {
      await tx`insert into staff (id, logical_key) values ('f2000000-0000-4000-8000-000000000002', 'staff:b')`;
      return "b";
    });
    await Promise.all([a, b]);
    const rows = await t.raw<{ key: string; revision: string }[]>`
      select new_row->>'logical_key' as key, revision::text from authz_changes where table_name = 'staff' order by id`;
    const revA = BigInt(rows.find((r) => r.key === "staff:a")?.revision ?? "0");
    const revB = BigInt(rows.find((r) => r.key === "staff:b")?.revision ?? "0");
    expect(revB).toBe(revA + 1n);
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
      const [r1] = await t.raw<{ revision: string }[]>`select revision::text from authz_revision`;
      await until(() => feed.revision === BigInt(r1?.revision ?? "-1"));

      // Kill the listening backend; write while it is gone; the feed must reconnect and catch up.
      const killed = await t.raw`
        select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`;
      expect(killed.length).toBeGreaterThanOrEqual(1);
      await t.raw`insert into staff (logical_key) values ('staff:feed-2')`;
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
      const pruned = await pruneHistory(t.client, { changeLogHours: 0, idempotencyHours: 0 });
      expect(pruned.changes).toBeGreaterThan(0);
      const engine = await live.fullyConsistent(5000);
      expect(live.stats.loads).toBe(2);
      expect(engine.check({ type: "user", id: "f3000000-0000-4000-8000-000000000001" }, "x", { type: "tenant", id: "f0000000-0000-4000-8000-000000000001" }, Date.now()).reason).toBe(
        "PERMISSION_NOT_FOUND",
      );
      expect(engine.revision).toBe(await readLatestRevision(t.client));
    } finally {
      live.stop();
    }
  });
});
