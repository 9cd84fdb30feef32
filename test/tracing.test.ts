// With an OTLP endpoint configured, every call becomes a server span, parented
// to the caller's W3C traceparent, exported over OTLP/HTTP.
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

let t: TestDatabase;
let app: App;
let collector: Server;
const received: string[] = [];
let ports: { grpcPort: number; httpPort: number };

beforeAll(async () => {
  collector = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString("latin1");
    });
    req.on("end", () => {
      received.push(`${req.url} ${body}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
  const port = (collector.address() as { port: number }).port;
  t = await freshDatabase();
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      AUTHZ_AUTH: "off",
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_OTLP_ENDPOINT: `http://127.0.0.1:${port}/v1/traces`,
    }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
});

afterAll(async () => {
  await app?.stop();
  await new Promise((r) => collector.close(r));
  await t?.drop();
});

describe("tracing", () => {
  it("exports a server span per call, in the caller's trace", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body: "{}",
    });
    expect(res.status).toBe(200);
    await app.stop(); // flushes the batch exporter
    const all = received.join("\n");
    expect(all).toMatch(/^\/v1\/traces /);
    expect(all).toContain("grpc.health.v1.Health/Check");
    const b64 = Buffer.from(traceId, "hex").toString("base64");
    expect(all.includes(traceId) || all.includes(b64)).toBe(true);
  });
});
