// authz import: upsert a seed-shaped JSON document into DATABASE_URL, all or
// nothing (database-direct until the service has an import RPC).
import { readFile } from "node:fs/promises";
import { type CliIo, type Command, EXIT, parse, UsageError } from "./common.js";
import { withDatabase } from "./database.js";
import { importProgress } from "./import-progress.js";

export const command: Command = {
  usage: `usage: authz import FILE [--dry-run] [--quiet]

Upserts a seed-shaped JSON document (format: docs/data-model.md) into
DATABASE_URL, all or nothing, records with "$delete": true deleted; --dry-run
reports the changes and writes nothing. Prints a JSON summary on stdout, and
its progress on stderr when it takes more than a second (--quiet: none).
Exit 1 when the file cannot be read or is refused.`,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(args, { "dry-run": { type: "boolean" }, quiet: { type: "boolean" } }, true);
    if (positionals.length !== 1) throw new UsageError("expected exactly one FILE and optionally --dry-run, --quiet");
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
        const progress = importProgress({ write: (l) => io.err(`${l}\n`), now: () => performance.now() });
        const summary = await importDocument(db, doc, { dryRun: values["dry-run"] ?? false, ...(values.quiet ? {} : { onProgress: progress.update }) });
        if (!values.quiet) progress.finish(summary.dryRun);
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
