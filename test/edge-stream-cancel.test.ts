// Two answers at the HTTP listener's edge, over real sockets:
// - a Connect server stream whose caller disconnects mid-stream is a cancel,
//   not an internal error: connect-node reports the failed write
//   (ERR_STREAM_DESTROYED) to the handler, which logged it at level 50 with its
//   stack and counted the call as INTERNAL;
// - a Connect JSON body with a duplicate key (valid otherwise) is
//   INVALID_ARGUMENT with the reason MALFORMED_MESSAGE, like every other
//   undecodable body (the check used JSON.parse, which keeps the last key, and
//   connect-node's own refusal carried no ErrorInfo).
import * as http from "node:http";
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExportDirectoryRequestSchema } from "../gen/authz/v1/admin_service_pb.js";
import { WatchRequestSchema } from "../gen/authz/v1/watch_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import { connectUnary, frame } from "./support/edge-calls.js";

let t: TestDatabase;
let app: App;
let httpPort = 0;
let key = "";
const lines: Array<{ level: number; msg?: string; path?: string }> = [];

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  const minted = mintApiKey("edge-admin", ["check", "admin"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes) values (${minted.record.id}, 'edge-admin', ${minted.record.secretSha256}, ${minted.record.scopes})`;
  key = minted.key;
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("info", sink),
  );
  ({ httpPort } = await app.listen());
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

/** Opens a Connect server stream over HTTP/1.1 and destroys the socket once the first bytes of the answer arrive. */
function openAndDrop(path: string, body: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: httpPort,
        path,
        method: "POST",
        agent: false,
        headers: { "content-type": "application/connect+proto", "connect-protocol-version": "1", "x-api-key": key },
      },
      (res) => {
        res.once("data", () => {
          req.destroy();
          resolve();
        });
        res.on("end", resolve);
      },
    );
    req.on("error", () => resolve());
    setTimeout(() => reject(new Error("no answer in 5 s")), 5_000);
    req.end(frame(0, body));
  });
}

const errorLines = () => lines.filter((l) => l.level >= 50);

describe("a Connect stream whose caller disconnects", () => {
  it("is a cancel: nothing at error level in the log (Watch and ExportDirectory)", async () => {
    const watch = toBinary(WatchRequestSchema, create(WatchRequestSchema, { heartbeatMs: 100 }));
    const exp = toBinary(ExportDirectoryRequestSchema, create(ExportDirectoryRequestSchema, { tenantId: DEMO.tenant.acme }));
    for (let i = 0; i < 5; i++) await openAndDrop("/authz.v1.WatchService/Watch", watch);
    for (let i = 0; i < 20; i++) await openAndDrop("/authz.v1.AdminService/ExportDirectory", exp);
    // Watch's next heartbeat (100 ms) is the write that fails.
    await new Promise((r) => setTimeout(r, 500));
    expect(errorLines()).toEqual([]);
  }, 30_000);
});

describe("a Connect JSON body with a duplicate key", () => {
  it("is INVALID_ARGUMENT with the reason MALFORMED_MESSAGE", async () => {
    const body = JSON.stringify({
      subject: { type: "user", id: DEMO.user.alice },
      resource: { type: "organization", id: DEMO.org.eng },
    }).replace("{", '{"permission":"members.read","permission":"members.invite",');
    const a = await connectUnary(`http://127.0.0.1:${httpPort}/authz.v1.PermissionService/Check`, body, "application/json", { "x-api-key": key });
    expect(a.code).toBe("INVALID_ARGUMENT");
    expect(a.reason).toBe("MALFORMED_MESSAGE");
    expect(a.message).toMatch(/duplicate/);
  });
});
