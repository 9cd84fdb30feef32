// authz migrate: apply pending migrations to DATABASE_URL (database-direct).
import { type CliIo, type Command, EXIT, parse } from "./common.js";
import { withDatabase } from "./database.js";

export const command: Command = {
  usage: `usage: authz migrate

Applies pending migrations (migrations/) to DATABASE_URL in one transaction
under an advisory lock, and prints what it applied.`,
  async run(args: string[], io: CliIo): Promise<number> {
    parse(args, {});
    const { migrate } = await import("../store/migrate.js");
    return withDatabase("migrate", io, async (db) => {
      const r = await migrate(db);
      io.out(`${JSON.stringify({ applied: r.applied, version: r.current, newer: r.newer })}\n`);
      return EXIT.OK;
    });
  },
};
