import { AuthzError } from "../errors.js";
import type { SqlClient } from "./sql.js";
import { SqlError } from "./sql.js";

/**
 * A client whose write transactions may only change rows of one tenant: before
 * each commit it asks the database (authz_assert_tenant, migration 0006)
 * whether every row the transaction changed belongs to that tenant, and rolls
 * back with PERMISSION_DENIED otherwise. Reads pass through.
 */
export function confinedToTenant(db: SqlClient, tenantId: string): SqlClient {
  return {
    ...db,
    kind: db.kind,
    query: (text, params) => db.query(text, params),
    exec: (text) => db.exec(text),
    each: (text, batchSize, onBatch) => db.each(text, batchSize, onBatch),
    listen: (channel, onNotify, onListen) => db.listen(channel, onNotify, onListen),
    close: () => db.close(),
    readWriteTx(fn, options) {
      return db.readWriteTx(async (tx) => {
        const result = await fn(tx);
        try {
          await tx.query("select authz_assert_tenant($1::text::uuid)", [tenantId]);
        } catch (err) {
          if (err instanceof SqlError && err.code === "42501") {
            throw new AuthzError("PERMISSION_DENIED", err.message, { reason: "OTHER_TENANT" });
          }
          throw err;
        }
        return result;
      }, options);
    },
  };
}
