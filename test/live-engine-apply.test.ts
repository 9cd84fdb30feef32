// A catch-up whose apply fails must not leave the replica stuck or half
// applied: LiveEngine keeps serving the last good snapshot, logs, and
// reloads a snapshot from the database. Real Postgres; the failing change
// is a change-log row no trigger would write (a users image whose id is not
// a UUID), recorded in the same revision as a real write.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { readLatestRevision } from "../src/store/change-feed.js";
import { startLiveEngine } from "../src/store/live-engine.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

let t: TestDatabase;
beforeAll(async () => {
  t = await freshDatabase();
});
afterAll(async () => {
  await t?.drop();
});

const U1 = "f4000000-0000-4000-8000-000000000001";
const U2 = "f4000000-0000-4000-8000-000000000002";
const TENANT = "f4000000-0000-4000-8000-0000000000aa";

describe("LiveEngine catch-up", () => {
  it("an apply that throws keeps the last good snapshot serving, then reloads to the head", async () => {
    let head = await readLatestRevision(t.client);
    // A feed that stays silent: the replica catches up only when asked.
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
      await t.raw`insert into users (id, locked) values (${U1}, true)`;
      const good = await live.fullyConsistent(5000);
      expect(good.check({ type: "user", id: U1 }, "x", { type: "tenant", id: TENANT }, Date.now()).reason).toBe("RESOURCE_NOT_FOUND");
      expect(live.stats.loads).toBe(1);

      await t.raw.begin(async (sql) => {
        await sql`insert into users (id, locked) values (${U2}, true)`;
        await sql`insert into authz_changes (revision, table_name, op, old_row, new_row)
                  values (null, 'users', 'INSERT', null, '{"id": "not-a-uuid", "locked": false, "enabled": true}'::jsonb)`;
      });
      const after = await live.fullyConsistent(5000);
      expect(live.stats.loads).toBe(2);
      expect(after.revision).toBe(await readLatestRevision(t.client));
      expect(after.check({ type: "user", id: U2 }, "x", { type: "tenant", id: TENANT }, Date.now()).reason).toBe("RESOURCE_NOT_FOUND");
      // The snapshot served before is untouched by the failed apply.
      expect(good.check({ type: "user", id: U2 }, "x", { type: "tenant", id: TENANT }, Date.now()).reason).toBe("SUBJECT_NOT_FOUND");
    } finally {
      live.stop();
    }
  });
});
