// The change feed while its catch-ups keep failing (the database down, or
// its revision table unreadable): it retries every poll, but warns once per
// ten seconds with the count of failures since, not once per poll (which was
// every 200 ms per replica for a whole outage), and says when it works again.
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { type ChangeFeedFollower, startChangeFeed } from "../src/store/change-feed.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { until } from "./support/fault.js";

let t: TestDatabase;
let feed: ChangeFeedFollower | undefined;
const lines: Array<{ level: number; msg: string; failures?: number }> = [];

beforeAll(async () => {
  t = await freshDatabase();
});

afterAll(async () => {
  await feed?.stop();
  await t?.drop();
});

describe("change feed catch-up failures", () => {
  it("are retried every poll but logged once per interval, and the recovery is logged", async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    feed = await startChangeFeed(t.client, createLogger("info", sink), 50);
    const failed = () => lines.filter((l) => l.msg === "change feed catch-up failed; will retry");
    await t.raw`alter table authz_revision rename to authz_revision_away`;
    try {
      await until(() => (feed as ChangeFeedFollower).stats.pollFailures >= 8, 15_000, "eight failed polls");
    } finally {
      await t.raw`alter table authz_revision_away rename to authz_revision`;
    }
    expect(failed().length).toBe(1);
    await until(() => lines.some((l) => l.msg === "change feed catch-up works again"), 15_000, "the recovery line");
    const again = lines.find((l) => l.msg === "change feed catch-up works again");
    expect(again?.failures).toBeGreaterThanOrEqual(8);
  }, 40_000);
});
