import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { createPostgresClient } from "./postgres-client.js";
import { AuthzError } from "../errors.js";
import { bounded, type SqlClient } from "./sql.js";

/** How long opening the database may take before it counts as unreachable (the driver's connect timeout twice). */
const OPEN_TIMEOUT_MS = 10_000;

/** The configured database: Postgres at DATABASE_URL, else embedded PGlite in memory. */
export async function openDatabase(config: Config, logger: Logger): Promise<SqlClient> {
  if (config.databaseUrl) {
    const db = createPostgresClient({ url: config.databaseUrl, poolMax: config.databasePoolMax, logger });
    try {
      // Bounded: a server that is not PostgreSQL (one that answers the start-up packet and hangs up) made the
      // driver reconnect in a tight loop with the query waiting forever.
      await bounded(db.query("select 1"), OPEN_TIMEOUT_MS);
    } catch (err) {
      void bounded(db.close(), 1000).catch(() => {});
      if (err instanceof AuthzError) throw err;
      throw new AuthzError("UNAVAILABLE", `the database did not answer as PostgreSQL within ${OPEN_TIMEOUT_MS / 1000} s (is DATABASE_URL right?)`, {
        reason: "DATABASE_UNAVAILABLE",
        cause: err,
      });
    }
    return db;
  }
  return (await openEmbedded(undefined, logger)).db;
}

/**
 * The embedded PGlite, from the build's snapshot when one fits (seeded: it
 * already holds seedFile, the import is done), else initialized from nothing.
 */
export async function openEmbedded(seedFile: string | undefined, logger: Logger): Promise<{ db: SqlClient; seeded: boolean }> {
  // Loaded here, not at the top: a server on PostgreSQL never loads PGlite (0.8 MiB of heap its
  // collector would trace for nothing, and 55 ms of start).
  const [{ readSnapshot }, { createPgliteClient }] = await Promise.all([import("./embedded-snapshot.js"), import("./pglite-client.js")]);
  const snapshot = await readSnapshot(seedFile);
  if (!snapshot) return { db: await createPgliteClient(), seeded: false };
  logger.info({ seeded: snapshot.seeded }, "embedded database: starting from the build's snapshot (dist/embedded) instead of initdb");
  return { db: await createPgliteClient({ loadDataDir: snapshot.archive }), seeded: snapshot.seeded };
}
