import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { createPostgresClient } from "./postgres-client.js";
import type { SqlClient } from "./sql.js";

/** The configured database: Postgres at DATABASE_URL, else embedded PGlite in memory. */
export async function openDatabase(config: Config, logger: Logger): Promise<SqlClient> {
  if (config.databaseUrl) {
    const db = createPostgresClient({ url: config.databaseUrl, poolMax: config.databasePoolMax, logger });
    await db.query("select 1");
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
