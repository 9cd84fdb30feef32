import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { createPgliteClient } from "./pglite-client.js";
import { createPostgresClient } from "./postgres-client.js";
import type { SqlClient } from "./sql.js";

/** The configured database: Postgres at DATABASE_URL, else embedded PGlite in memory. */
export async function openDatabase(config: Config, logger: Logger): Promise<SqlClient> {
  if (config.databaseUrl) {
    const db = createPostgresClient({ url: config.databaseUrl, poolMax: config.databasePoolMax, logger });
    await db.query("select 1");
    return db;
  }
  return createPgliteClient();
}
