// `authz export [--tenant UUID] [--counters]`: the directory (or one tenant's
// part) as one import-format JSON document on stdout, written page by page
// as the export reads it (src/store/export.ts), so a large directory never
// sits in memory whole. --counters adds the live rate-limit counters, read
// from the Redis counter store (REDIS_URL); the import refuses them.

import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { counterPage, countersOf } from "../rpc/export-handlers.js";
import { createRateLimitStore } from "../rpc/rate-limit-handlers.js";
import { type ExportPage, exportDirectory } from "../store/export.js";
import type { SqlClient } from "../store/sql.js";
import { UUID } from "../validation.js";

export class ExportUsageError extends Error {}

/** Writes JSON text in order: `{`, then each section's records as they come, then the revision and `}`. */
function documentWriter(out: (s: string) => Promise<void> | void) {
  let section: string | undefined;
  let first = true;
  return {
    async page(p: ExportPage) {
      for (const r of p.records) {
        if (p.section !== section) {
          await out(`${section === undefined ? "{\n" : "\n  ],\n"}  ${JSON.stringify(p.section)}: [\n`);
          section = p.section;
          first = true;
        }
        await out(`${first ? "" : ",\n"}    ${JSON.stringify(r)}`);
        first = false;
      }
    },
    async end(revision: string) {
      await out(`${section === undefined ? "{\n" : "\n  ],\n"}  "$comment": ${JSON.stringify(`authz export at revision ${revision}`)}\n}\n`);
    },
  };
}

/** Runs the export command; returns the exit code. */
export async function exportCommand(db: SqlClient, config: Config, logger: Logger, args: string[], out: (s: string) => Promise<void> | void): Promise<number> {
  const tenantAt = args.indexOf("--tenant");
  const tenant = tenantAt >= 0 ? args[tenantAt + 1] : undefined;
  const unknown = args.filter((a, i) => a !== "--tenant" && a !== "--counters" && i !== tenantAt + 1);
  if ((tenantAt >= 0 && (tenant === undefined || !UUID.test(tenant))) || unknown.length > 0) {
    throw new ExportUsageError("usage: authz export [--tenant UUID] [--counters]");
  }
  const counters = args.includes("--counters");
  if (counters && !config.redisUrl) throw new ExportUsageError("--counters reads the live counters from Redis: set REDIS_URL");
  const w = documentWriter(out);
  const kept: ExportPage[] = [];
  const { revision } = await exportDirectory(db, { tenantId: tenant?.toLowerCase() ?? null }, async (p) => {
    if (counters && (p.section === "RateLimitPolicy" || p.section === "RateLimitAssignment")) kept.push(p);
    await w.page(p);
  });
  if (counters) {
    const store = createRateLimitStore(config, logger);
    try {
      await store.ready(5000);
      await w.page(await counterPage(store, countersOf(kept)));
    } finally {
      await store.close();
    }
  }
  await w.end(revision);
  return 0;
}
