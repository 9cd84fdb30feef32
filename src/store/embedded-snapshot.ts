// The embedded mode's head start: PGlite's initdb and the demo import take
// most of an embedded start (seconds of WASM work), so the build keeps two
// data directories (dist/embedded/): one initialized and migrated, one that
// also holds examples/demo.json imported. The embedded server loads the one
// that fits instead of starting from nothing. Each carries a key: the PGlite
// version, every migration's checksum and, for the seeded one, the SHA-256 of
// the seed file. A snapshot whose key does not match the installed PGlite,
// migrations/ and the configured seed file is ignored (a fresh initdb, as
// without one), and the start-up migration step runs either way, so a
// snapshot can only save time, never change the schema or the data.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { projectPath } from "../paths.js";
import { importDocument } from "./import.js";
import { loadMigrations, migrate } from "./migrate.js";
import { createPgliteClient } from "./pglite-client.js";

type Variant = "schema" | "seeded";

/** Where the build writes a snapshot, and its key beside it. */
function files(variant: Variant): { archive: string; key: string } {
  const dir = join(dirname(projectPath("package.json")), "dist", "embedded");
  return { archive: join(dir, `${variant}.tar.gz`), key: join(dir, `${variant}.key`) };
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/** What a snapshot must match: the PGlite build, the migrations by content and, when seeded, the seed file's content. */
async function snapshotKey(seedFile: string | undefined): Promise<string> {
  const pglite = JSON.parse(await readFile(projectPath("node_modules/@electric-sql/pglite/package.json"), "utf8")) as { version: string };
  const parts = [`pglite ${pglite.version}`, ...(await loadMigrations()).map((m) => `${m.name}:${m.checksum}`)];
  if (seedFile !== undefined) parts.push(`seed ${sha256(await readFile(seedFile))}`);
  return sha256(parts.join("\n"));
}

async function matches(variant: Variant, seedFile: string | undefined): Promise<boolean> {
  const f = files(variant);
  return existsSync(f.archive) && existsSync(f.key) && (await readFile(f.key, "utf8")).trim() === (await snapshotKey(seedFile));
}

/**
 * The snapshot that fits this installation and seed file (undefined: no
 * import), seeded when it already holds that file; undefined when none fits.
 * Never an error: it is only a shortcut.
 */
export async function readSnapshot(seedFile: string | undefined): Promise<{ archive: Blob; seeded: boolean } | undefined> {
  try {
    for (const variant of seedFile === undefined ? (["schema"] as const) : (["seeded", "schema"] as const)) {
      if (await matches(variant, variant === "seeded" ? seedFile : undefined)) {
        return { archive: new Blob([await readFile(files(variant).archive)]), seeded: variant === "seeded" };
      }
    }
  } catch {
    // An unreadable snapshot is no snapshot.
  }
  return undefined;
}

/** Builds one snapshot unless a matching one exists; true when it wrote one. */
async function write(variant: Variant, seedFile: string | undefined): Promise<boolean> {
  if (await matches(variant, seedFile)) return false;
  const f = files(variant);
  const db = await createPgliteClient();
  let archive: Blob;
  try {
    await migrate(db);
    if (seedFile !== undefined) await importDocument(db, JSON.parse(await readFile(seedFile, "utf8")));
    archive = await db.dumpDataDir();
  } finally {
    await db.close();
  }
  await mkdir(dirname(f.archive), { recursive: true });
  // Archive first, key last, each by rename: a reader never pairs a key with a half-written archive.
  await writeFile(`${f.archive}.tmp`, Buffer.from(await archive.arrayBuffer()));
  await rename(`${f.archive}.tmp`, f.archive);
  await writeFile(`${f.key}.tmp`, `${await snapshotKey(seedFile)}\n`);
  await rename(`${f.key}.tmp`, f.key);
  return true;
}

/** Builds both snapshots (the seeded one from examples/demo.json) unless matching ones exist; how many it wrote. */
export async function writeSnapshots(): Promise<number> {
  const schema = await write("schema", undefined);
  const seeded = await write("seeded", projectPath("examples/demo.json"));
  return Number(schema) + Number(seeded);
}
