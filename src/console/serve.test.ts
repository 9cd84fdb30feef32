import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../logger.js";
import { consoleRoutes } from "./serve.js";

const dir = mkdtempSync(join(tmpdir(), "authz-console-assets-"));
mkdirSync(join(dir, "pages"));
writeFileSync(join(dir, "index.html"), "<title>authz console</title>");
writeFileSync(join(dir, "main.js"), "export {};");
writeFileSync(join(dir, "pages", "decision.js"), "export {};");
writeFileSync(join(dir, "notes.txt"), "not an asset type");

let server: http.Server;
let base = "";
beforeAll(async () => {
  const routes = consoleRoutes({ methods: ["/authz.v1.PermissionService/Check"], logger: createLogger("silent"), dir });
  server = http.createServer((req, res) => {
    if (!routes(req, res)) {
      res.writeHead(418);
      res.end("not the console");
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("consoleRoutes", () => {
  it("serves the built files by exact name with their types, and leaves other paths alone", async () => {
    const index = await fetch(`${base}/console/`);
    expect([index.status, index.headers.get("content-type")]).toEqual([200, "text/html; charset=utf-8"]);
    const mod = await fetch(`${base}/console/pages/decision.js`);
    expect([mod.status, mod.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
    expect((await fetch(`${base}/console/notes.txt`)).status).toBe(404);
    expect((await fetch(`${base}/console/..%2foutside.js`)).status).toBe(404);
    expect((await fetch(`${base}/consoles`)).status).toBe(418);
    expect((await fetch(`${base}/authz.v1.PermissionService/Check`, { method: "POST" })).status).toBe(418);
  });

  it("publishes the bound RPC paths and refuses anything but GET and HEAD", async () => {
    expect(await (await fetch(`${base}/console/methods.json?x=1`)).json()).toEqual({ methods: ["/authz.v1.PermissionService/Check"] });
    const post = await fetch(`${base}/console/index.html`, { method: "POST", body: "{}" });
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
  });

  it("answers 503 when the console was never built", async () => {
    const missing = consoleRoutes({ methods: [], logger: createLogger("silent"), dir: join(dir, "absent") });
    const s = http.createServer((req, res) => void missing(req, res));
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const res = await fetch(`http://127.0.0.1:${(s.address() as AddressInfo).port}/console/`);
    await new Promise<void>((r) => s.close(() => r()));
    expect(res.status).toBe(503);
  });
});
