// A lock held by a transaction of its own until the test lets it go: to make
// another session wait at a known point (a lock wait, a row it must queue for).
import type postgres from "postgres";

/** Opens a transaction on `sql`, runs `take` (which takes a lock) and holds it; resolves once taken. */
export async function holdInTransaction(sql: postgres.Sql, take: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<{ release(): Promise<void> }> {
  let release = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  let taken = () => {};
  const isTaken = new Promise<void>((r) => {
    taken = r;
  });
  const tx = sql.begin(async (q) => {
    await take(q);
    taken();
    await held;
  });
  await Promise.race([isTaken, tx]);
  return {
    async release() {
      release();
      await tx;
    },
  };
}
