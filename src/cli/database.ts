// The database-direct commands (migrate, import, bootstrap API keys) open
// DATABASE_URL themselves; everything else goes through a server.
import type { SqlClient } from "../store/sql.js";
import { type CliIo, UsageError } from "./common.js";

/** Opens DATABASE_URL for fn and closes it afterwards; a usage error when it is unset. */
export async function withDatabase<T>(command: string, io: CliIo, fn: (db: SqlClient) => Promise<T>): Promise<T> {
  const [{ loadConfig }, { createLogger }, { openDatabase }] = await Promise.all([import("../config.js"), import("../logger.js"), import("../store/open.js")]);
  const config = loadConfig(io.env as NodeJS.ProcessEnv);
  if (!config.databaseUrl) {
    throw new UsageError(`${command} works on DATABASE_URL directly, and it is not set (the embedded database lives only inside a running server)`);
  }
  const logger = createLogger(config.logLevel === "info" ? "warn" : config.logLevel);
  const db = await openDatabase(config, logger);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
