// Restore mode (src/store/import-restore.ts) writes without foreign keys until its rebuild. A document with
// a dangling reference (refused by a foreign key) followed by a record the importer itself refuses (a role
// that does not exist, found by its lookups) must be refused naming the first, as the usual import does:
// the later refusal must not be reported instead. Real Postgres.
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { projectPath } from "../src/paths.js";
import { ImportError, importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

type Doc = Record<string, Array<Record<string, unknown>>>;
const demo = () => JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as Doc;

const dbs: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

describe("import restore mode, two refusals", () => {
  it("names the first refused record, as the usual import does", async () => {
    const doc = demo();
    // PRINCIPAL (written early) names an account no record holds: only its foreign key refuses it.
    (doc.PRINCIPAL as Array<Record<string, unknown>>)[0] = {
      ...(doc.PRINCIPAL?.[0] as Record<string, unknown>),
      account_id: "00000005-0000-4000-8000-0000000000ff",
    };
    // UserRole (written later) names a role that does not exist: the importer's lookup refuses it.
    (doc.UserRole as Array<Record<string, unknown>>)[0] = {
      ...(doc.UserRole?.[0] as Record<string, unknown>),
      role_id: "00000009-0000-4000-8000-0000000000ff",
    };
    const refusal = async (restore: boolean) => {
      const t = await freshDatabase();
      dbs.push(t);
      const err = await importDocument(t.client, structuredClone(doc), { restore }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImportError);
      return (err as ImportError).problems;
    };
    const usual = await refusal(false);
    expect(usual.join("\n")).toMatch(/^PRINCIPAL\[0\]/);
    expect(await refusal(true)).toEqual(usual);
  });
});
