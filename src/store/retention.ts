import type { SqlClient } from "./sql.js";

/**
 * Drops change-log rows and idempotency records older than their retention.
 * A replica that was away longer than the change-log retention reloads a
 * snapshot instead of replaying (see live-engine), so nothing is lost.
 */
export async function pruneHistory(
  db: SqlClient,
  opts: { changeLogHours: number; idempotencyHours: number },
): Promise<{ changes: number; idempotency: number }> {
  const changes = await db.query(
    // Unnumbered rows are kept whatever their age: their writes have no revision yet.
    // Only a prefix of whole revisions goes: every revision below the first one
    // holding a row younger than the retention. A row's changed_at is when its
    // transaction wrote it, and transactions are numbered after they commit, so
    // a later revision can hold older rows than an earlier one (or a revision
    // rows on both sides of the cutoff); deleting by age alone left holes in the
    // log that readers, which check only where they resume, stepped over.
    `delete from authz_changes
      where revision is not null
        and revision < coalesce(
          (select min(revision) from authz_changes
            where revision is not null and changed_at >= now() - make_interval(hours => $1::text::int)),
          9223372036854775807)
      returning 1`,
    [String(opts.changeLogHours)],
  );
  const idempotency = await db.query("delete from authz_idempotency where created_at < now() - make_interval(hours => $1::text::int) returning 1", [
    String(opts.idempotencyHours),
  ]);
  return { changes: changes.length, idempotency: idempotency.length };
}
