// The directory flow of issue 14 from a Python grpcio client
// (clients/python/directory_flow.py) against the real server on a fresh
// database, over a real socket, with API keys: sign-up → organization →
// membership invite → accept → Check GRANTED → lock → Check SUBJECT_LOCKED →
// off-boarding → Check SUBJECT_NOT_FOUND, each step read back through the
// DirectoryService reads.
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintApiKey } from "../src/auth/api-keys.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { PYTHON, pythonStubs, run } from "./support/python.js";

let t: TestDatabase | undefined;
let app: App | undefined;
let grpcPort = 0;
let stubs = "";
let key = "";

beforeAll(async () => {
  stubs = await pythonStubs();
  t = await freshDatabase();
  // The directory scope for the flow, check for Check, admin for the one ManageRoles call (the avatar_member grant).
  const minted = mintApiKey("python-directory", ["directory", "check", "admin"], null);
  key = minted.key;
  const r = minted.record;
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id) values (${r.id}, ${r.name}, ${r.secretSha256}, ${r.scopes}, ${null})`;
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ({ grpcPort } = await app.listen());
  await app.ready;
}, 90_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
  if (stubs) rmSync(stubs, { recursive: true, force: true });
});

describe("Python client: the directory flow", () => {
  it("directory_flow.py passes every step against the real server", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: stubs, PYTHONDONTWRITEBYTECODE: "1", AUTHZ_API_KEY: key };
    delete env.AUTHZ_ADDR;
    const r = await run(PYTHON, [projectPath("clients/python/directory_flow.py"), `127.0.0.1:${grpcPort}`], { env, timeoutMs: 45_000 });
    expect(r.code, `directory_flow.py exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^Sign-up: user Carol Danvers <carol@example\.com> at revision \d+$/m);
    expect(r.stdout).toMatch(/^Organization: Carol Eng \(org-[0-9a-f]{8}\) with avatar carol-bot owned by principal [0-9a-f]{8}$/m);
    expect(r.stdout).toMatch(/^Invite: membership [0-9a-f]{8} accepted -> Check DECISION_REASON_GRANTED$/m);
    expect(r.stdout).toMatch(/^Lock: Check DECISION_REASON_SUBJECT_LOCKED; off-boarding: GetUser NOT_FOUND, Check DECISION_REASON_SUBJECT_NOT_FOUND$/m);
    expect(r.stdout).toMatch(new RegExp(`^OK: directory flow passed against 127\\.0\\.0\\.1:${grpcPort}$`, "m"));
  }, 60_000);
});
