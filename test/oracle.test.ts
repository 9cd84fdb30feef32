// The SQL oracle of the decision rules: hand-checked decisions on the demo
// directory, and a smoke run of the random dataset, change and check generators.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO_DECISIONS, DEMO_NOW } from "./support/demo-decisions.js";
import { oracleCheck } from "./support/oracle.js";
import { generateDataset, insertDataset, randomChanges, randomChecks, rng } from "./support/random-data.js";

describe("oracle on the demo directory", () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase();
    await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("covers every reason", () => {
    const reasons = new Set(DEMO_DECISIONS.map((d) => d.reason));
    expect([...reasons].sort()).toEqual([
      "ACCOUNT_INACTIVE",
      "GRANTED",
      "NOT_ACCEPTED",
      "NO_GRANT",
      "PERMISSION_NOT_FOUND",
      "PRINCIPAL_EXPIRED",
      "PRINCIPAL_INACTIVE",
      "RESOURCE_INACTIVE",
      "RESOURCE_NOT_FOUND",
      "SUBJECT_DISABLED",
      "SUBJECT_LOCKED",
      "SUBJECT_NOT_FOUND",
    ]);
  });

  it("answers each hand-checked decision", async () => {
    const answers = await oracleCheck(
      t.raw,
      DEMO_DECISIONS.map((d) => ({
        subjectType: d.subject.type,
        subjectId: d.subject.id,
        permission: d.permission,
        resourceType: d.resource.type,
        resourceId: d.resource.id,
      })),
      DEMO_NOW,
    );
    const got = DEMO_DECISIONS.map((d, i) => ({ why: d.why, allowed: answers[i]?.allowed, reason: answers[i]?.reason }));
    expect(got).toEqual(DEMO_DECISIONS.map((d) => ({ why: d.why, allowed: d.allowed, reason: d.reason })));
  });
});

describe("random datasets, changes and checks", () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase();
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("a seed determines the dataset and the checks", () => {
    const a = rng(42);
    const b = rng(42);
    const da = generateDataset(a);
    expect(da).toEqual(generateDataset(b));
    expect(randomChecks(a, da, 100)).toEqual(randomChecks(b, da, 100));
  });

  it("generate, insert, change and check 10k random checks with a mix of answers", async () => {
    const r = rng(20260601);
    const d = generateDataset(r);
    let t0 = performance.now();
    await insertDataset(t.raw, d);
    const changes = await randomChanges(r, t.raw, 50, d.now);
    const setupMs = performance.now() - t0;
    expect(changes).toHaveLength(50);

    const checks = randomChecks(r, d, 10_000);
    t0 = performance.now();
    const answers = await oracleCheck(t.raw, checks, d.now);
    const checkMs = performance.now() - t0;
    expect(answers).toHaveLength(checks.length);

    const byReason = new Map<string, number>();
    for (const a of answers) byReason.set(a.reason, (byReason.get(a.reason) ?? 0) + 1);
    console.log(`oracle smoke: insert + 50 changes ${setupMs.toFixed(0)} ms, 10k checks ${checkMs.toFixed(0)} ms;`, Object.fromEntries([...byReason].sort()));
    expect(byReason.size).toBeGreaterThanOrEqual(6);
    expect(answers.some((a) => a.allowed)).toBe(true);
    expect(answers.some((a) => !a.allowed)).toBe(true);
  });
});
