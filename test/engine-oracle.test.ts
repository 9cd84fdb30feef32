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
const LOOKUP_DATASETS = 2;
const LOOKUP_ROUNDS = 3;
const LOOKUPS_PER_ROUND = 150;

const dbs: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

/**
 * "kind|grant id|role id|subject" of every grant in force at `now`, read from the tables: assignments (active,
 * unexpired) of their subject and, for an account's, of each of its principals; memberships (active, accepted,
 * unexpired) of their principal with the member role, and with the owner role when they are owners.
 */
async function grantsInForce(sql: TestDatabase["raw"], now: Date): Promise<Set<string>> {
  const at = now.toISOString();
  const rows = await sql<{ k: string }[]>`
    select 'ASSIGNMENT|' || ra.id || '|' || ra.role_id || '|' || ra.subject_type || ':' || ra.subject_id as k
      from role_assignments ra where ra.active and (ra.valid_until is null or ra.valid_until > ${at}::timestamptz)
    union all
    select 'ASSIGNMENT|' || ra.id || '|' || ra.role_id || '|principal:' || p.id
      from role_assignments ra join principals p on ra.subject_type = 'account' and p.account_id = ra.subject_id
     where ra.active and (ra.valid_until is null or ra.valid_until > ${at}::timestamptz)
    union all
    select 'MEMBERSHIP|' || m.id || '|' || r.id || '|principal:' || m.principal_id
      from memberships m join roles r on r.id = '00000000-0000-4000-8000-00000000a001'::uuid
                                      or (m.owner and r.id = '00000000-0000-4000-8000-00000000a002'::uuid)
     where m.active and m.accepted_at <= ${at}::timestamptz and (m.valid_until is null or m.valid_until > ${at}::timestamptz)`;
  return new Set(rows.map((r) => r.k));
}

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

  it(`both lookups equal the sets the oracle grants, for random (P, R) and (S, P, type) (seed ${SEED})`, async () => {
    const r = rng(SEED ^ 0x5eed);
    const stats = { subjects: 0, resources: 0, mismatches: 0, nonEmpty: 0, grants: 0 };
    const examples: string[] = [];
    const started = Date.now();
    for (let ds = 0; ds < LOOKUP_DATASETS; ds++) {
      const t = await freshDatabase();
      dbs.push(t);
      const data = generateDataset(r);
      await insertDataset(t.raw, data);
      const logger = createLogger("silent");
      const feed = await startChangeFeed(t.client, logger, 60_000);
      const live = await startLiveEngine(t.client, feed, logger);
      try {
        for (let round = 0; round < LOOKUP_ROUNDS; round++) {
          if (round > 0) await randomChanges(r, t.raw, 15, data.now);
          const [head] = await t.raw<{ revision: string }[]>`select authz_stamp()::text as revision`;
          const engine = await live.atLeast(BigInt(head?.revision ?? "0"), 5000);
          const now = new Date(data.now.getTime() + (OFFSETS_MS[round % OFFSETS_MS.length] as number));
          const everyone = await t.raw<{ type: string; id: string }[]>`
            select 'user' as type, id::text from users union all select 'account', id::text from accounts
            union all select 'principal', id::text from principals union all select 'staff', id::text from staff`;
          const places = await t.raw<{ type: string; id: string }[]>`
            select 'tenant' as type, id::text from tenants union all select 'organization', id::text from organizations
            union all select 'avatar', id::text from avatars`;
          const asked = randomChecks(r, data, LOOKUPS_PER_ROUND);
          const report = (what: string, got: string[], want: string[]) => {
            const g = [...got].sort();
            const w = [...want].sort();
            if (g.length !== new Set(g).size || JSON.stringify(g) !== JSON.stringify(w)) {
              stats.mismatches++;
              if (examples.length < 5)
                examples.push(`seed ${SEED} dataset ${ds} round ${round}: ${what}: engine=${JSON.stringify(g)} oracle=${JSON.stringify(w)}`);
            }
            if (w.length > 0) stats.nonEmpty++;
          };
          // LookupSubjects(P, R) against the oracle's Check over every subject.
          const subjectChecks = asked.flatMap((a) =>
            everyone.map((s) => ({ subjectType: s.type, subjectId: s.id, permission: a.permission, resourceType: a.resourceType, resourceId: a.resourceId })),
          );
          const subjectAnswers = await oracleCheck(t.raw, subjectChecks, now);
          const named: Array<{ subject: string; kind: string; id: string; role: string }> = [];
          asked.forEach((a, i) => {
            const want = everyone.filter((_, j) => subjectAnswers[i * everyone.length + j]?.allowed).map((s) => `${s.type}:${s.id}`);
            const resource = { type: a.resourceType, id: a.resourceId } as ResourceRef;
            const grants = [...engine.lookupSubjects(a.permission, resource, now.getTime())];
            for (const g of grants) named.push({ subject: `${g.subject.type}:${g.subject.id}`, kind: g.grant.kind, id: g.grant.id, role: g.grant.roleId });
            stats.subjects++;
            report(
              `LookupSubjects(${a.permission}, ${a.resourceType} ${a.resourceId})`,
              grants.map((g) => `${g.subject.type}:${g.subject.id}`),
              want,
            );
          });
          const held = await grantsInForce(t.raw, now);
          const resourceGrants: typeof named = [];
          // (LookupResources below adds its grants; all are checked at the end of the round.)
          const checkGrants = () => {
            // Every grant named is a grant of that subject (or of a principal's account) in force, with that role.
            stats.grants += named.length + resourceGrants.length;
            for (const g of [...named, ...resourceGrants]) {
              if (held.has(`${g.kind}|${g.id}|${g.role}|${g.subject}`)) continue;
              stats.mismatches++;
              if (examples.length < 5) examples.push(`seed ${SEED} dataset ${ds} round ${round}: grant ${JSON.stringify(g)} is not in force for that subject`);
            }
          };
          // LookupResources(S, P, type) against the oracle's Check over every resource of the type.
          const resourceChecks = asked.flatMap((a) =>
            places.map((p) => ({ subjectType: a.subjectType, subjectId: a.subjectId, permission: a.permission, resourceType: p.type, resourceId: p.id })),
          );
          const resourceAnswers = await oracleCheck(t.raw, resourceChecks, now);
          asked.forEach((a, i) => {
            const type = a.resourceType as ResourceRef["type"];
            const want = places.filter((p, j) => p.type === type && resourceAnswers[i * places.length + j]?.allowed).map((p) => `${p.type}:${p.id}`);
            const subject = { type: a.subjectType, id: a.subjectId } as SubjectRef;
            const found = [...engine.lookupResourceGrants(subject, a.permission, type, now.getTime())];
            for (const g of found) resourceGrants.push({ subject: `${subject.type}:${subject.id}`, kind: g.grant.kind, id: g.grant.id, role: g.grant.roleId });
            const got = found.map((x) => `${x.resource.type}:${x.resource.id}`);
            stats.resources++;
            report(`LookupResources(${a.subjectType} ${a.subjectId}, ${a.permission}, ${type})`, got, want);
          });
          checkGrants();
        }
      } finally {
        live.stop();
        await feed.stop();
      }
    }
    const line = `lookups vs oracle: ${stats.subjects} LookupSubjects + ${stats.resources} LookupResources (${stats.nonEmpty} non-empty, ${stats.grants} grants named), ${stats.mismatches} mismatches (seed ${SEED}, ${Date.now() - started} ms)`;
    console.log(line);
    expect(examples, line).toEqual([]);
    expect(stats.nonEmpty).toBeGreaterThan((stats.subjects + stats.resources) / 10);
  }, 240_000);
});
