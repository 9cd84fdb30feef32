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
    "delete from authz_changes where revision is not null and changed_at < now() - make_interval(hours => $1::text::int) returning 1",
    [String(opts.changeLogHours)],
  );
  const idempotency = await db.query("delete from authz_idempotency where created_at < now() - make_interval(hours => $1::text::int) returning 1", [
    String(opts.idempotencyHours),
  ]);
  return { changes: changes.length, idempotency: idempotency.length };
}
