// The Python client (clients/python) against the real server: generate the
// stubs with protoc + grpc_python_plugin into a temp dir, start createApp on a
// fresh database loaded with examples/demo.json (auth off), and run
// authz_client.py with Debian's /usr/bin/python3. Missing prerequisites fail
// the test with the install command; they never skip it.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { PYTHON, pythonStubs, run } from "./support/python.js";

let t: TestDatabase | undefined;
let app: App | undefined;
let grpcPort = 0;
let stubs = "";

beforeAll(async () => {
  stubs = await pythonStubs();
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
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

describe("Python client (clients/python)", () => {
  it("generate.sh writes importable stubs for every service", () => {
    for (const f of [
      "authz/v1/permission_service_pb2_grpc.py",
      "authz/v1/admin_service_pb2_grpc.py",
      "authz/v1/rate_limit_service_pb2_grpc.py",
      "authz/v1/common_pb2.py",
      "google/rpc/status_pb2.py",
      "google/rpc/error_details_pb2.py",
      "grpc_health/v1/health_pb2_grpc.py",
    ]) {
      expect(() => readFileSync(join(stubs, f)), f).not.toThrow();
    }
  });

  it("authz_client.py passes every check against the real server", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: stubs, PYTHONDONTWRITEBYTECODE: "1" };
    delete env.AUTHZ_ADDR;
    delete env.AUTHZ_API_KEY;
    const r = await run(PYTHON, [projectPath("clients/python/authz_client.py"), `127.0.0.1:${grpcPort}`], { env, timeoutMs: 45_000 });
    expect(r.code, `authz_client.py exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(
      /^Check: alice members\.read allowed \(ASSIGNMENT:.*ROLE:owner.*PERMISSION:members\.read\); bob org\.delete denied \(DECISION_REASON_NO_GRANT\)/m,
    );
    expect(r.stdout).toMatch(/^CheckBulk: 3 items -> GRANTED, SUBJECT_LOCKED, error INVALID_ARGUMENT/m);
    expect(r.stdout).toMatch(/^ListPermissions: alice is owner of acme-eng/m);
    expect(r.stdout).toMatch(/^Errors: a bad revision token is INVALID_ARGUMENT, ErrorInfo authz\/\S+/m);
    expect(r.stdout).toMatch(/^ConsumeRateLimit: login-attempts allowed 5 of 6, then denied \(retry after \d+\.\d s\)/m);
    expect(r.stdout).toMatch(new RegExp(`^OK: 5 checks passed against 127\\.0\\.0\\.1:${grpcPort}$`, "m"));
  }, 60_000);
});
