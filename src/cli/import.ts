// authz import: upsert a seed-shaped JSON document into DATABASE_URL, all or
// nothing (database-direct until the service has an import RPC).
import { readFile } from "node:fs/promises";
import { type CliIo, type Command, EXIT, parse, UsageError } from "./common.js";
import { withDatabase } from "./database.js";

export const command: Command = {
  usage: `usage: authz import FILE [--dry-run]

Upserts a seed-shaped JSON document (format: docs/data-model.md) into
DATABASE_URL, all or nothing; --dry-run reports the changes and writes nothing.
Prints a JSON summary. Exit 1 when the file cannot be read or is refused.`,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(args, { "dry-run": { type: "boolean" } }, true);
    if (positionals.length !== 1) throw new UsageError("expected exactly one FILE and optionally --dry-run");
    const file = positionals[0] as string;
    const { ImportError, importDocument } = await import("../store/import.js");
    return withDatabase("import", io, async (db) => {
      let doc: unknown;
      try {
        doc = JSON.parse(await readFile(file, "utf8"));
      } catch (err) {
        io.err(`authz import: cannot read ${file} as JSON: ${(err as Error).message}\n`);
        return EXIT.DENIED;
      }
      try {
        const summary = await importDocument(db, doc, { dryRun: values["dry-run"] ?? false });
        io.out(`${JSON.stringify(summary, null, 2)}\n`);
        return EXIT.OK;
      } catch (err) {
        if (!(err instanceof ImportError)) throw err;
        io.err(`authz import: ${err.message}\n`);
        return EXIT.DENIED;
      }
    });
  },
};
