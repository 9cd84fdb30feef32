import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, inject } from "vitest";
import { createLogger } from "../../src/logger.js";
import { createPostgresClient } from "../../src/store/postgres-client.js";
import type { SqlClient } from "../../src/store/sql.js";

export interface TestDatabase {
  /** Connection string of this file's own database. */
  url: string;
  name: string;
  /** A pooled client through the service's own adapter. */
  client: SqlClient;
  /** A raw postgres.js connection, as psql or another service would write. */
  raw: postgres.Sql;
  drop(): Promise<void>;
}

function urlFor(dbName: string): string {
  const u = new URL(inject("adminUrl"));
  u.pathname = `/${dbName}`;
  return u.toString();
}

/**
 * A fresh database for one test file: cloned from the migrated template, or
 * empty with { empty: true } (or { icuLocale }). The global setup's pid keeps concurrent runs apart.
 */
export async function freshDatabase(opts: { empty?: boolean; icuLocale?: string } = {}): Promise<TestDatabase> {
  const tpl = inject("templateDb");
  const pid = tpl.replace(/^authz_tpl_/, "");
  const name = `authz_t_${pid}_${randomBytes(5).toString("hex")}`;
  const admin = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
  try {
    // icuLocale: an empty database whose default collation is that ICU locale's (not byte order).
    const icu = opts.icuLocale ? ` template template0 locale_provider icu icu_locale '${opts.icuLocale.replace(/[^A-Za-z0-9_-]/g, "")}'` : "";
    await admin.unsafe(opts.empty || icu ? `create database ${name}${icu}` : `create database ${name} template ${tpl}`);
  } finally {
    await admin.end();
  }
  const url = urlFor(name);
  const client = createPostgresClient({ url, poolMax: 4, logger: createLogger("silent") });
  const raw = postgres(url, { max: 2, onnotice: () => {} });
  return {
    url,
    name,
    client,
    raw,
    async drop() {
      await client.close();
      await raw.end({ timeout: 2 });
      const a = postgres(inject("adminUrl"), { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await a.end();
      }
    },
  };
}

/** Fresh databases for one test file, each dropped when the file's tests are done. */
export function databasesOfThisFile(opts: { empty?: boolean } = {}): () => Promise<TestDatabase> {
  const made: TestDatabase[] = [];
  afterAll(async () => {
    await Promise.all(made.map((d) => d.drop()));
  });
  return async () => {
    const t = await freshDatabase(opts);
    made.push(t);
    return t;
  };
}
