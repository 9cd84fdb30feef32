// Retention must prune only a prefix of whole revisions (found by a black-box
// audit, 2026-11-30). A change row's changed_at is when its transaction wrote
// it, and transactions are numbered after they commit, so under concurrent
// writes a later revision often holds older rows than an earlier one (27 of 60
// concurrent writes in the audit). Deleting by age alone then cut a hole in the
// log: a Watch resuming before the hole, or a replica catching up across it,
// checked only the first row and stepped over the missing revision silently.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readChanges } from "../src/store/change-stream.js";
import { pruneHistory } from "../src/store/retention.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

let t: TestDatabase;
beforeAll(async () => {
  t = await freshDatabase();
});
afterAll(async () => {
  await t?.drop();
});

const stamp = async (): Promise<bigint> => BigInt(((await t.raw<{ r: string }[]>`select authz_stamp()::text as r`)[0] as { r: string }).r);
const revisions = async (from: bigint): Promise<bigint[]> =>
  (await t.raw<{ r: string }[]>`select distinct revision::text as r from authz_changes where revision > ${from.toString()}::bigint order by 1`).map((x) =>
    BigInt(x.r),
  );

/** Three numbered writes, r1 < r2 < r3; the middle one's rows look old (written before the others, numbered between them). */
async function threeWrites(tag: string): Promise<[bigint, bigint, bigint]> {
  const out: bigint[] = [];
  for (const n of [1, 2, 3]) {
    await t.raw`insert into staff (logical_key) values (${`staff:${tag}-${n}`})`;
    out.push(await stamp());
  }
  const [r1, r2, r3] = out as [bigint, bigint, bigint];
  expect(r1 < r2 && r2 < r3).toBe(true);
  await t.raw`update authz_changes set changed_at = now() - interval '200 hours' where revision = ${r2.toString()}::bigint`;
  return [r1, r2, r3];
}

describe("change-log retention keeps the log without holes", () => {
  it("does not delete an old-looking revision while an earlier revision is kept", async () => {
    const [r1, r2, r3] = await threeWrites("prefix");
    await pruneHistory(t.client, { changeLogHours: 168, idempotencyHours: 24 });
    const left = await revisions(r1 - 1n);
    expect(left).toEqual([r1, r2, r3]);
  });

  it("a reader meeting a hole beyond its first row fails with CHANGES_PRUNED instead of skipping the revision", async () => {
    const [r1, r2, r3] = await threeWrites("hole");
    // A log pruned by age alone (as before the fix): the middle revision is gone.
    await t.raw`delete from authz_changes where revision = ${r2.toString()}::bigint`;
    const read = readChanges(t.client, { revision: r1 - 1n }, r3, 1001);
    await expect(read).rejects.toMatchObject({ reason: "CHANGES_PRUNED" });
  });
});
