// The command line against a real server process over gRPC: one scenario run
// against the embedded default (PGlite, authentication off) and against a real
// Postgres (authentication on, the key created database-direct as a first
// admin would). Exit codes and JSON are the documented contract.
import { execFile } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectPath } from "../src/paths.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import { freePort } from "./support/redis.js";
import { type ServerProcess, startServerProcess } from "./support/server-process.js";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const CLI = projectPath("dist/src/cli.js");

/** Runs the built CLI; resolves with its exit code and output whatever the code. */
function authz(env: Record<string, string>, ...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number) : 0;
      resolve({ code: typeof code === "number" ? code : -1, stdout, stderr });
    });
  });
}

const ORG = `organization:${DEMO.org.eng}`;
const alice = `user:${DEMO.user.alice}`;
const carol = `user:${DEMO.user.carol}`;
// Carol holds the member role (…0013) in eng; billing.manage (…0015) belongs to owners only.
const GRANT = {
  mutations: [{ grantPermission: { role: { id: "00000009-0000-4000-8000-000000000013" }, permission: { id: "00000010-0000-4000-8000-000000000015" } } }],
};

interface Target {
  server: ServerProcess;
  /** What every call of the scenario runs with: AUTHZ_SERVER and, with authentication on, AUTHZ_API_KEY. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** The same calls against one kind of server; more adds what only that kind has. */
function scenario(name: string, start: () => Promise<Target>, more?: (target: () => Target) => void): void {
  describe(name, () => {
    let t: Target;
    beforeAll(async () => {
      t = await start();
    }, 90_000);
    afterAll(async () => {
      await t?.stop();
    });

    it("check: allowed exits 0, denied exits 1, with every decision field and the API's reason names", async () => {
      const yes = await authz(t.env, "check", "--subject", alice, "--permission", "billing.manage", "--resource", ORG);
      expect(yes).toMatchObject({ code: 0, stderr: "" });
      expect(JSON.parse(yes.stdout)).toMatchObject({ allowed: true, reason: "DECISION_REASON_GRANTED", revision: expect.stringMatching(/^\d+$/) });
      const no = await authz(t.env, "check", "--subject", carol, "--permission", "billing.manage", "--resource", ORG);
      expect(no.code).toBe(1);
      expect(JSON.parse(no.stdout)).toMatchObject({ allowed: false, reason: "DECISION_REASON_NO_GRANT" });
      const table = await authz(t.env, "check", "--subject", alice, "--permission", "billing.manage", "--resource", ORG, "--explain", "--output", "table");
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/^ALLOWED\s+REASON\s+REVISION\ntrue\s+DECISION_REASON_GRANTED\s+\d+\n/);
      expect(table.stdout).toMatch(/ROLE\s+\S+\s+owner/);
    });

    it("manage applies a batch from a file; a check at its revision and list see it", async () => {
      const file = join(mkdtempSync(join(tmpdir(), "authz-cli-")), "grant.json");
      writeFileSync(file, JSON.stringify(GRANT));
      const applied = await authz(t.env, "manage", file, "--idempotency-key", "cli-test-grant");
      expect(applied).toMatchObject({ code: 0 });
      const res = JSON.parse(applied.stdout) as { revision: string; results: { changed: boolean }[] };
      expect(res.results).toEqual([{ id: "", changed: true }]);
      const now = await authz(t.env, "check", "--subject", carol, "--permission", "billing.manage", "--resource", ORG, "--at-least-as-fresh", res.revision);
      expect(now.code).toBe(0);
      expect(JSON.parse(now.stdout)).toMatchObject({ allowed: true, reason: "DECISION_REASON_GRANTED" });
      const listed = await authz(t.env, "list", "--subject", carol, "--at-least-as-fresh", res.revision, "--page-size", "1");
      expect(listed.code).toBe(0);
      const scopes = (JSON.parse(listed.stdout) as { scopes: { orgId: string; userPermissions: string[] }[] }).scopes;
      expect(scopes.find((s) => s.orgId === DEMO.org.eng)?.userPermissions).toContain("billing.manage");
      const table = await authz(t.env, "list", "--subject", carol, "-o", "table");
      expect(table.stdout).toMatch(/^ORGANIZATION\s+SCOPE\s+ROLE\s+PERMISSIONS$/m);
      expect(table.stdout).toMatch(/billing\.manage/);
    });

    it("lookup finds who may and where; watch prints a committed change", async () => {
      const who = await authz(t.env, "lookup", "subjects", "--permission", "billing.manage", "--resource", ORG, "--page-size", "1");
      expect(who.code, who.stderr).toBe(0);
      expect((JSON.parse(who.stdout) as { subjects: { subject: { id: string } }[] }).subjects.map((s) => s.subject.id)).toContain(DEMO.user.alice);
      const where = await authz(
        t.env,
        "lookup",
        "resources",
        "--subject",
        alice,
        "--permission",
        "billing.manage",
        "--resource-type",
        "organization",
        "-o",
        "table",
      );
      expect(where.code, where.stderr).toBe(0);
      expect(where.stdout).toContain(ORG);
      const file = join(mkdtempSync(join(tmpdir(), "authz-cli-")), "revoke.json");
      writeFileSync(file, JSON.stringify({ mutations: [{ revokePermission: GRANT.mutations[0]?.grantPermission }] }));
      const revoked = await authz(t.env, "manage", file);
      expect(revoked.code, revoked.stderr).toBe(0);
      const revision = BigInt((JSON.parse(revoked.stdout) as { revision: string }).revision);
      const watched = await authz(t.env, "watch", "--from-revision", String(revision - 1n), "--table", "role_permissions", "--max-changes", "1", "-o", "table");
      expect(watched.code, watched.stderr).toBe(0);
      expect(watched.stdout).toMatch(new RegExp(`^${revision}\\tDELETE\\trole_permissions\\t`, "m"));
    });

    it("usage mistakes and INVALID_ARGUMENT exit 2; an unreachable server exits 3", async () => {
      const flag = await authz(t.env, "check", "--subject", alice, "--bogus");
      expect(flag.code).toBe(2);
      expect(flag.stderr).toMatch(/Unknown option '--bogus'[\s\S]*usage: authz check/);
      const missing = await authz(t.env, "check", "--subject", alice, "--resource", ORG);
      expect(missing).toMatchObject({ code: 2, stdout: "" });
      const invalid = await authz(t.env, "check", "--subject", "user:nope", "--permission", "x", "--resource", ORG);
      expect(invalid.code).toBe(2);
      expect(invalid.stderr).toMatch(/^authz check: INVALID_ARGUMENT: subject\.id must be a UUID/);
      const unknown = await authz(t.env, "frobnicate");
      expect(unknown.code).toBe(2);
      const down = await authz(
        { ...t.env, AUTHZ_SERVER: `127.0.0.1:${await freePort()}` },
        "check",
        "--subject",
        alice,
        "--permission",
        "x",
        "--resource",
        ORG,
      );
      expect(down.code).toBe(3);
      expect(down.stderr).toMatch(/^authz check: UNAVAILABLE/);
    });

    more?.(() => t);
  });
}

scenario("the CLI against the embedded default (PGlite, a built server process)", async () => {
  const server = await startServerProcess({ AUTHZ_HOST: undefined }, { readyMs: 60_000 });
  return { server, env: { AUTHZ_SERVER: `127.0.0.1:${server.grpcPort}` }, stop: () => server.stop() };
});

let db: TestDatabase;
let checkKey = "";

scenario(
  "the CLI against a real Postgres (authentication on)",
  async () => {
    db = await freshDatabase();
    const direct = { DATABASE_URL: db.url };
    const imported = await authz(direct, "import", projectPath("examples/demo.json"));
    expect(imported.code, imported.stderr).toBe(0);
    const key = async (scopes: string) => {
      const r = await authz(direct, "api-key", "create", "--bootstrap", "--name", `cli-${scopes}`, "--scopes", scopes);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { key: string }).key;
    };
    const adminKey = await key("check,admin");
    checkKey = await key("check");
    const server = await startServerProcess({ DATABASE_URL: db.url, AUTHZ_AUTH: "on" });
    return {
      server,
      env: { AUTHZ_SERVER: `127.0.0.1:${server.grpcPort}`, AUTHZ_API_KEY: adminKey },
      async stop() {
        await server.stop();
        await db.drop();
      },
    };
  },
  (target) => {
    it("a database-direct command whose database cannot be reached exits 3", async () => {
      const down = { DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/none` };
      const imported = await authz(down, "import", projectPath("examples/demo.json"));
      expect(imported.code, imported.stderr).toBe(3);
      expect(imported.stderr).toMatch(/database/);
    });

    it("a DATABASE_URL naming a server that is not PostgreSQL exits 3 within the open bound, not never", async () => {
      // Answers the start-up packet like an HTTP server would, and hangs up (the driver used to retry forever).
      const notPostgres = createServer((socket) => {
        socket.once("data", () => socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"));
        socket.on("error", () => {});
      });
      await new Promise<void>((resolve) => notPostgres.listen(0, "127.0.0.1", resolve));
      try {
        const port = (notPostgres.address() as AddressInfo).port;
        const migrated = await authz({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/x` }, "migrate");
        expect(migrated.code, migrated.stderr).toBe(3);
        expect(migrated.stderr).toMatch(/did not answer as PostgreSQL/);
      } finally {
        notPostgres.close();
      }
    }, 40_000);

    it("no credential is UNAUTHENTICATED and a check-only key may not manage: both exit 1 naming the code", async () => {
      const env = { AUTHZ_SERVER: `127.0.0.1:${target().server.grpcPort}` };
      const anonymous = await authz(env, "check", "--subject", alice, "--permission", "billing.manage", "--resource", ORG);
      expect(anonymous.code).toBe(1);
      expect(anonymous.stderr).toMatch(/^authz check: UNAUTHENTICATED/);
      const viaFlag = await authz(env, "check", "--api-key", checkKey, "--subject", alice, "--permission", "billing.manage", "--resource", ORG);
      expect(viaFlag.code).toBe(0);
      const file = join(mkdtempSync(join(tmpdir(), "authz-cli-")), "grant.json");
      writeFileSync(file, JSON.stringify(GRANT));
      const refused = await authz({ ...env, AUTHZ_API_KEY: checkKey }, "manage", file);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^authz manage: PERMISSION_DENIED/);
    });

    it("api-key create, list and revoke go over gRPC; the new key works until it is revoked", async () => {
      const env = target().env;
      const made = await authz(env, "api-key", "create", "--name", "cli-made", "--scopes", "check");
      expect(made.code, made.stderr).toBe(0);
      const { apiKey, key } = JSON.parse(made.stdout) as { apiKey: { id: string }; key: string };
      const listed = await authz(env, "api-key", "list", "-o", "table");
      expect(listed.stdout).toMatch(new RegExp(`^${apiKey.id}\\s+cli-made\\s+check\\s`, "m"));
      const withNew = { AUTHZ_SERVER: env.AUTHZ_SERVER as string, AUTHZ_API_KEY: key };
      const checkWith = () => authz(withNew, "check", "--subject", alice, "--permission", "billing.manage", "--resource", ORG);
      // The server learns of the key through NOTIFY: bounded polling, no fixed sleep.
      const until = async (want: number) => {
        const end = Date.now() + 10_000;
        let r = await checkWith();
        while (r.code !== want && Date.now() < end) r = await checkWith();
        return r.code;
      };
      expect(await until(0)).toBe(0);
      const revoked = await authz(env, "api-key", "revoke", apiKey.id);
      expect(revoked).toMatchObject({ code: 0 });
      expect(JSON.parse(revoked.stdout)).toEqual({ revoked: true });
      expect(await until(1)).toBe(1);
      const missing = await authz(env, "api-key", "revoke", "0123456789abcdef");
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/NOT_FOUND \(API_KEY_NOT_FOUND\)/);
    });
  },
);

describe("the embedded default's address", () => {
  it("binds loopback unless AUTHZ_HOST says otherwise, and its start-up line says so", async () => {
    const server = await startServerProcess({ AUTHZ_HOST: undefined, AUTHZ_EMBEDDED_IMPORT: "none" }, { readyMs: 60_000 });
    try {
      await server.waitForLog(/"host":"127\.0\.0\.1","msg":"listening on 127\.0\.0\.1 \(loopback\) only/, 5000);
    } finally {
      await server.stop();
    }
    const open = await startServerProcess({ AUTHZ_HOST: "0.0.0.0", AUTHZ_EMBEDDED_IMPORT: "none" }, { readyMs: 60_000 });
    try {
      await open.waitForLog(/listening on 0\.0\.0\.0 with authentication OFF/, 5000);
    } finally {
      await open.stop();
    }
  }, 130_000);
});
