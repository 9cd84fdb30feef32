// Export → import: a random directory exported in the import format and
// imported into an empty database decides every random check the same way;
// importing the export again changes nothing; one tenant's export holds
// nothing of another tenant. Seeded: set EXPORT_SEED to replay a run.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import type { ResourceRef, SubjectRef } from "../src/engine/types.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { exportDirectory } from "../src/store/export.js";
import { importDocument } from "../src/store/import.js";
import { loadSnapshot } from "../src/store/live-engine.js";
import type { SqlClient } from "../src/store/sql.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { generateDataset, insertDataset, randomChanges, randomChecks, rng } from "./support/random-data.js";

const run = promisify(execFile);
const SEED = Number(process.env.EXPORT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CHECKS = 5000;

const dbs: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

async function exported(db: SqlClient, tenantId?: string): Promise<{ doc: Record<string, unknown[]>; revision: string }> {
  const doc: Record<string, unknown[]> = {};
  const { revision } = await exportDirectory(db, { pageRows: 37, ...(tenantId ? { tenantId } : {}) }, (p) => {
    doc[p.section] = [...(doc[p.section] ?? []), ...p.records];
  });
  return { doc, revision };
}

describe(`export (seed ${SEED})`, () => {
  it("export → import into an empty database decides every random check the same; a second import changes nothing", async () => {
    const r = rng(SEED);
    const [source, target] = [await freshDatabase(), await freshDatabase()];
    dbs.push(source, target);
    const data = generateDataset(r, { users: 60, assignments: 400 });
    await insertDataset(source.raw, data);
    await randomChanges(r, source.raw, 20, data.now);
    const { doc } = await exported(source.client);
    expect(Object.keys(doc)).toEqual(expect.arrayContaining(["TENANT", "ORGANIZATION", "User", "PRINCIPAL", "MEMBERSHIP", "Role", "ROLE_ASSIGNMENT"]));

    const first = await importDocument(target.client, JSON.parse(JSON.stringify(doc)));
    expect(BigInt(first.revisionAfter)).toBeGreaterThan(BigInt(first.revisionBefore));
    const [a, b] = [await loadSnapshot(source.client), await loadSnapshot(target.client)];
    const checks = randomChecks(r, data, CHECKS);
    let mismatches = 0;
    const examples: string[] = [];
    for (const c of checks) {
      const subject = { type: c.subjectType as SubjectRef["type"], id: c.subjectId };
      const resource = { type: c.resourceType as ResourceRef["type"], id: c.resourceId };
      const x = a.check(subject, c.permission, resource, data.now.getTime());
      const y = b.check(subject, c.permission, resource, data.now.getTime());
      if (x.allowed !== y.allowed || x.reason !== y.reason) {
        mismatches++;
        if (examples.length < 5) examples.push(`${c.subjectType}:${c.subjectId} ${c.permission} ${c.resourceType}:${c.resourceId}: ${x.reason} vs ${y.reason}`);
      }
    }
    expect({ mismatches, examples }).toEqual({ mismatches: 0, examples: [] });
    expect(
      checks.filter(
        (c) =>
          a.check(
            { type: c.subjectType as SubjectRef["type"], id: c.subjectId },
            c.permission,
            { type: c.resourceType as ResourceRef["type"], id: c.resourceId },
            data.now.getTime(),
          ).allowed,
      ).length,
    ).toBeGreaterThan(0);

    // The same rows on both sides, table by table.
    const counts = async (t: TestDatabase) =>
      t.raw`select (select count(*) from users)::int as users, (select count(*) from role_assignments)::int as assignments,
                   (select count(*) from memberships)::int as memberships, (select count(*) from role_permissions)::int as grants,
                   (select count(*) from user_organizations)::int as places, (select count(*) from roles)::int as roles`;
    expect(await counts(target)).toEqual(await counts(source));

    const again = await importDocument(target.client, JSON.parse(JSON.stringify((await exported(target.client)).doc)));
    expect(again.revisionAfter).toBe(again.revisionBefore);
    for (const [section, c] of Object.entries(again.sections)) expect({ section, ...c }).toMatchObject({ section, inserted: 0, updated: 0, deleted: 0 });
  });

  it("one tenant's export holds its rows and the global vocabulary, nothing of the other tenant", async () => {
    const r = rng(SEED + 1);
    const t = await freshDatabase();
    dbs.push(t);
    const data = generateDataset(r, { tenants: 2, orgs: 5 });
    await insertDataset(t.raw, data);
    const [mine, other] = data.tenants as unknown as [{ id: string }, { id: string }];
    const { doc } = await exported(t.client, mine.id);
    const text = JSON.stringify(doc);
    const otherOrgs = data.organizations.filter((o) => o.tenant_id === other.id).map((o) => o.id);
    expect(otherOrgs.length).toBeGreaterThan(0);
    for (const id of [other.id, ...otherOrgs]) expect(text).not.toContain(id);
    expect(doc.TENANT).toEqual([expect.objectContaining({ id: mine.id })]);
    const orgs = (doc.ORGANIZATION ?? []) as Array<{ tenant_id: string }>;
    expect(orgs.length).toBeGreaterThan(0);
    expect(orgs.every((o) => o.tenant_id === mine.id)).toBe(true);
    // Every principal its memberships name is its own (a membership of another tenant's principal is left out).
    const principals = new Set(((doc.PRINCIPAL ?? []) as Array<{ id: string }>).map((p) => p.id));
    for (const m of (doc.MEMBERSHIP ?? []) as Array<{ principal_id: string }>) expect(principals).toContain(m.principal_id);
  });
});

/** An authz server (authentication off) over a fresh database holding the seed's generated dataset; stopped after `fn`. */
async function withServer<T>(seed: number, fn: (server: string, source: TestDatabase) => Promise<T>): Promise<T> {
  const source = await freshDatabase();
  dbs.push(source);
  await insertDataset(source.raw, generateDataset(rng(seed)));
  const app = createApp(
    loadConfig({ DATABASE_URL: source.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  try {
    const server = `127.0.0.1:${(await app.listen()).grpcPort}`;
    await app.ready;
    return await fn(server, source);
  } finally {
    await app.stop();
  }
}

describe("authz export and import (CLI)", () => {
  it("export over gRPC to stdout, import of that file with --quiet: nothing on stderr, the JSON summary on stdout; without --quiet stderr holds only progress lines", async () => {
    const target = await freshDatabase();
    dbs.push(target);
    await withServer(SEED + 2, async (server) => {
      const cli = projectPath("dist/src/cli.js");
      const out = await run("node", [cli, "export", "--server", server], { env: { ...process.env }, maxBuffer: 64 << 20 });
      const doc = JSON.parse(out.stdout) as Record<string, unknown>;
      expect(doc.$comment).toMatch(/^authz export at revision \d+$/);
      const file = join(mkdtempSync(join(tmpdir(), "authz-export-")), "export.json");
      writeFileSync(file, out.stdout);
      const quiet = await run("node", [cli, "import", file, "--quiet"], { env: { ...process.env, DATABASE_URL: target.url } });
      expect(quiet.stderr).toBe("");
      expect(JSON.parse(quiet.stdout)).toMatchObject({ dryRun: false, sections: { ROLE_ASSIGNMENT: { updated: 0, deleted: 0 } } });
      const loud = await run("node", [cli, "import", file], { env: { ...process.env, DATABASE_URL: target.url } });
      for (const line of loud.stderr.split("\n").filter(Boolean))
        expect(line).toMatch(/^authz import: (writing|deleting) .* records\/s|^authz import: \d[\d,]* records imported in/);
      expect(JSON.parse(loud.stdout)).toMatchObject({ revisionBefore: JSON.parse(loud.stdout).revisionAfter });

      const bad = await run("node", [cli, "export", "--server", server, "--tenant", "nope"], { env: { ...process.env } }).catch(
        (e: { code: number; stderr: string }) => e,
      );
      expect(bad).toMatchObject({ code: 2 });
      const counters = await run("node", [cli, "export", "--server", server, "--counters"], { env: { ...process.env }, maxBuffer: 64 << 20 });
      expect(Object.keys(JSON.parse(counters.stdout))).toEqual(Object.keys(doc));
    });
  });
});

describe("authz export to a slow reader", () => {
  it("writes the whole document before it exits, however slowly its stdout is read", async () => {
    await withServer(SEED + 3, async (server) => {
      const child = spawn("node", [projectPath("dist/src/cli.js"), "export", "--server", server], { stdio: ["ignore", "pipe", "pipe"] });
      // Nothing is read until the command has had time to finish its work: a pipe's 64 KiB fill, the
      // rest waits in the command. Before the fix it exited meanwhile (code 0) and dropped that rest.
      child.stdout.pause();
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      const early = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
      const chunks: Buffer[] = [];
      child.stdout.on("data", (c: Buffer) => chunks.push(c));
      child.stdout.resume();
      const ended = new Promise<void>((resolve) => child.stdout.once("end", () => resolve()));
      const [code] = await Promise.all([exited, ended]);
      const text = Buffer.concat(chunks).toString("utf8");
      expect(early, "the command exited while its output was unread").toBe(false);
      expect(code).toBe(0);
      expect(text.length, "the document is larger than a pipe's buffer").toBeGreaterThan(128 << 10);
      expect((JSON.parse(text) as { $comment: string }).$comment).toMatch(/^authz export at revision \d+$/);
    });
  }, 60_000);
});
