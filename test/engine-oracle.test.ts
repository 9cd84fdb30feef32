// The engine against an independent evaluator of the same rules in plain SQL
// (test/support/oracle.ts), on random datasets and random change sequences
// (raw SQL and ManageDirectory mutations) that the engine follows
// incrementally through the change log, exactly as a running server does.
// Seeded: set ORACLE_SEED to replay a run.
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import type { ResourceRef, SubjectRef } from "../src/engine/types.js";
import { createLogger } from "../src/logger.js";
import { projectPath } from "../src/paths.js";
import { startChangeFeed } from "../src/store/change-feed.js";
import { importDocument } from "../src/store/import.js";
import { loadSnapshot, startLiveEngine } from "../src/store/live-engine.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO_DECISIONS, DEMO_NOW } from "./support/demo-decisions.js";
import { type OracleCheck, oracleCheck } from "./support/oracle.js";
import { generateDataset, insertDataset, randomChanges, randomChecks, rng } from "./support/random-data.js";

const SEED = Number(process.env.ORACLE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const DATASETS = 3;
const ROUNDS = 6;
const CHECKS_PER_ROUND = 6000; // 3 datasets x 6 rounds x 6000 = 108k checks
const OFFSETS_MS = [0, -90_000, 90_000]; // decision times around the dataset's "now"

const dbs: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

describe("engine vs oracle", () => {
  it("agrees on the hand-checked demo decisions", async () => {
    const t = await freshDatabase();
    dbs.push(t);
    await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
    const engine = await loadSnapshot(t.client);
    for (const d of DEMO_DECISIONS) {
      const got = engine.check(d.subject as SubjectRef, d.permission, d.resource as ResourceRef, DEMO_NOW.getTime());
      expect({ allowed: got.allowed, reason: got.reason }, d.why).toEqual({ allowed: d.allowed, reason: d.reason });
    }
  });

  it(`agrees on 100k+ random checks over random datasets and change sequences (seed ${SEED})`, async () => {
    const r = rng(SEED);
    let total = 0;
    let mismatches = 0;
    let directoryWrites = 0;
    const examples: string[] = [];
    const started = Date.now();
    for (let ds = 0; ds < DATASETS; ds++) {
      const t = await freshDatabase();
      dbs.push(t);
      const data = generateDataset(r);
      await insertDataset(t.raw, data);
      const logger = createLogger("silent");
      const feed = await startChangeFeed(t.client, logger, 60_000);
      const live = await startLiveEngine(t.client, feed, logger);
      try {
        for (let round = 0; round < ROUNDS; round++) {
          // Raw SQL (as any client) and ManageDirectory mutations (as a calling service) alike.
          const changes = round === 0 ? [] : await randomChanges(r, t.raw, 15, data.now, t.client);
          directoryWrites += changes.filter((c) => c.startsWith("ManageDirectory") && !c.includes("skipped")).length;
          const [head] = await t.raw<{ revision: string }[]>`select authz_stamp()::text as revision`;
          // Follow the change log as a server does (notifications, with a bounded wait).
          const engine = await live.atLeast(BigInt(head?.revision ?? "0"), 5000);
          // Every other round decides exactly at a timestamp the data holds (an
          // expiry or acceptance instant), where off-by-one comparisons show.
          const instants = await t.raw<{ t: Date }[]>`
            select distinct t from (
              select valid_until as t from role_assignments union all select valid_until from memberships
              union all select accepted_at from memberships union all select valid_until from principals
              union all select accepted_at from principals) x where t is not null`;
          const now =
            round % 2 === 1 && instants.length > 0
              ? new Date((instants[r.int(0, instants.length - 1)] as { t: Date }).t)
              : new Date(data.now.getTime() + (OFFSETS_MS[round % OFFSETS_MS.length] as number));
          const checks: OracleCheck[] = randomChecks(r, data, CHECKS_PER_ROUND);
          const expected = await oracleCheck(t.raw, checks, now);
          checks.forEach((c, i) => {
            const got = engine.check(
              { type: c.subjectType as SubjectRef["type"], id: c.subjectId },
              c.permission,
              { type: c.resourceType as ResourceRef["type"], id: c.resourceId },
              now.getTime(),
            );
            const want = expected[i] as { allowed: boolean; reason: string };
            total++;
            if (got.allowed !== want.allowed || got.reason !== want.reason) {
              mismatches++;
              if (examples.length < 10) {
                examples.push(
                  `seed ${SEED} dataset ${ds} round ${round} now ${now.toISOString()}: ${JSON.stringify(c)} engine=${got.reason} oracle=${want.reason}` +
                    (examples.length === 0 ? `\n  changes this round:\n    ${changes.join("\n    ")}` : ""),
                );
              }
            }
          });
        }
      } finally {
        live.stop();
        await feed.stop();
      }
    }
    const line = `engine vs oracle: ${total} checks, ${mismatches} mismatches (seed ${SEED}, ${DATASETS} datasets x ${ROUNDS} rounds, ${directoryWrites} ManageDirectory writes among the changes, ${Date.now() - started} ms)`;
    console.log(line);
    expect(examples, line).toEqual([]);
    expect(total).toBeGreaterThanOrEqual(100_000);
    expect(directoryWrites, line).toBeGreaterThan(0);
  }, 240_000);
});
