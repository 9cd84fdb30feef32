// Fault: `authz export --counters` while the counter store (a Redis this file
// starts itself) is down. The export must fail before it writes anything:
// a directory cut off before its counters section, on stdout redirected to a
// file, would look like a (broken) export. Real Postgres, real Redis, the
// real CLI over a real gRPC socket.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type App, createApp } from "../../src/main.js";
import { projectPath } from "../../src/paths.js";
import { importDocument } from "../../src/store/import.js";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { until } from "../support/fault.js";
import { type RedisProcess, startRedisServer } from "../support/redis.js";

const run = promisify(execFile);
const cli = projectPath("dist/src/cli.js");

let db: TestDatabase;
let redis: RedisProcess;
let app: App;
let server: string;

beforeAll(async () => {
  db = await freshDatabase();
  await importDocument(db.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  redis = await startRedisServer();
  app = createApp(
    loadConfig({ DATABASE_URL: db.url, REDIS_URL: redis.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  server = `127.0.0.1:${(await app.listen()).grpcPort}`;
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await redis?.kill();
  await db?.drop();
});

const exportCounters = () =>
  run("node", [cli, "export", "--server", server, "--counters"], { env: { ...process.env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

describe("authz export --counters with the counter store down", () => {
  it("writes nothing on stdout and exits UNAVAILABLE; with the store back, the whole export", async () => {
    const up = await exportCounters();
    expect(up.code).toBe(0);
    expect(Object.keys(JSON.parse(up.stdout) as object)).toContain("RateLimitPolicy");

    await redis.kill();
    // The server's client notices the lost connection; the export must not stream the directory first.
    const down = await exportCounters();
    expect(down.code).not.toBe(0);
    expect(down.stdout).toBe("");
    expect(down.stderr).toMatch(/UNAVAILABLE/);
    expect(down.stderr).toMatch(/counter store cannot be reached/);

    await redis.restart();
    await until(async () => (await exportCounters()).code === 0, 15_000, "export --counters after Redis is back");
  }, 60_000);
});

describe("authz export --counters with the counter store hung (SIGSTOP: connections stay open)", () => {
  it("once a counter read has failed, the next export writes nothing on stdout; with the store answering again, the whole export", async () => {
    await until(async () => (await exportCounters()).code === 0, 15_000, "export --counters with Redis up");
    redis.pause();
    try {
      // The first export cannot know yet: the connection is open and the last command succeeded. Its counter read fails.
      const first = await exportCounters();
      expect(first.code).not.toBe(0);
      // Now the store is known to be down (its last command failed), though its connection is still open.
      const down = await exportCounters();
      expect(down.code).not.toBe(0);
      expect(down.stdout).toBe("");
      expect(down.stderr).toMatch(/counter store cannot be reached/);
    } finally {
      redis.resume();
    }
    await until(async () => (await exportCounters()).code === 0, 15_000, "export --counters after Redis answers again");
  }, 60_000);
});
