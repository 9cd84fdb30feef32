// The build's PGlite snapshots (dist/embedded, written by npm run build): the
// embedded mode starts from the one that fits its seed file, and a seed file
// the build did not import gets the migrated schema only.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { projectPath } from "../src/paths.js";
import { readSnapshot } from "../src/store/embedded-snapshot.js";
import { migrate } from "../src/store/migrate.js";
import { createPgliteClient } from "../src/store/pglite-client.js";

const demo = projectPath("examples/demo.json");

describe("embedded snapshots", () => {
  it("the demo seed gets the seeded snapshot: migrated, holding the demo's users", async () => {
    const snap = await readSnapshot(demo);
    expect(snap?.seeded).toBe(true);
    const db = await createPgliteClient({ loadDataDir: snap?.archive as Blob });
    try {
      expect((await migrate(db)).applied).toEqual([]);
      const users = JSON.parse(readFileSync(demo, "utf8")).User as unknown[];
      const [row] = await db.query<{ n: number }>("select count(*)::int as n from users");
      expect(row?.n).toBe(users.length);
    } finally {
      await db.close();
    }
  }, 60_000);

  it("no seed, or a seed with other content, gets the migrated schema without data", async () => {
    const other = join(mkdtempSync(join(tmpdir(), "authz-seed-")), "demo.json");
    writeFileSync(other, `${readFileSync(demo, "utf8")}\n`);
    expect((await readSnapshot(other))?.seeded).toBe(false);
    const snap = await readSnapshot(undefined);
    expect(snap?.seeded).toBe(false);
    const db = await createPgliteClient({ loadDataDir: snap?.archive as Blob });
    try {
      expect((await migrate(db)).applied).toEqual([]);
      const [row] = await db.query<{ n: number }>("select count(*)::int as n from users");
      expect(row?.n).toBe(0);
    } finally {
      await db.close();
    }
  }, 60_000);
});
