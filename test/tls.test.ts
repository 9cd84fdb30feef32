// TLS on both listeners, and mutual TLS: a client certificate whose common
// name is in the identities file authenticates the caller without any header.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { loadProtos } from "./support/grpc-client.js";

const dir = mkdtempSync(join(tmpdir(), "authz-tls-"));
const pem = (name: string) => readFileSync(join(dir, name));

/** A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate. */
function makeCertificates(): void {
  execFileSync(
    "bash",
    [
      "-c",
      `set -e; cd "${dir}"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=authz-test-ca 2>/dev/null
      for who in server:localhost client:svc-checker stranger:svc-unknown; do
        name=\${who%%:*}; cn=\${who#*:}
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $name.key -out $name.csr -subj /CN=$cn 2>/dev/null
        printf "subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n" > $name.ext
        openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $name.pem -days 1 -extfile $name.ext 2>/dev/null
      done`,
    ],
    { stdio: "pipe" },
  );
}

let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const protos = loadProtos();
const ALICE = "00000003-0000-4000-8000-000000000001";
const ENG = "00000002-0000-4000-8000-000000000001";
const checkReq = { subject: { type: "user", id: ALICE }, permission: "members.read", resource: { type: "organization", id: ENG } };

beforeAll(async () => {
  makeCertificates();
  writeFileSync(join(dir, "identities.json"), JSON.stringify({ "svc-checker": { scopes: ["check"] } }));
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_TLS_CERT_FILE: join(dir, "server.pem"),
      AUTHZ_TLS_KEY_FILE: join(dir, "server.key"),
      AUTHZ_TLS_CLIENT_CA_FILE: join(dir, "ca.pem"),
      AUTHZ_MTLS_IDENTITIES_FILE: join(dir, "identities.json"),
    }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

function grpcCheck(creds: grpc.ChannelCredentials): Promise<{ code: number; allowed?: boolean }> {
  const tree = protos as unknown as {
    authz: { v1: { PermissionService: new (a: string, c: grpc.ChannelCredentials) => grpc.Client & Record<string, Function> } };
  };
  const c = new tree.authz.v1.PermissionService(`localhost:${ports.grpcPort}`, creds);
  return new Promise((resolve) => {
    (c.Check as Function).call(c, checkReq, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, res: { allowed: boolean }) => {
      c.close();
      resolve(err ? { code: err.code } : { code: 0, allowed: res.allowed });
    });
  });
}

function httpsCheck(clientName?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port: ports.httpPort,
        path: "/authz.v1.PermissionService/Check",
        method: "POST",
        headers: { "content-type": "application/json" },
        ca: pem("ca.pem"),
        servername: "localhost",
        ...(clientName ? { cert: pem(`${clientName}.pem`), key: pem(`${clientName}.key`) } : {}),
      },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(checkReq));
  });
}

describe("TLS and mutual TLS", () => {
  it("gRPC: a known client certificate authenticates the caller with its scopes", async () => {
    const lean = app.grpcLean()?.calls ?? Number.NaN;
    const res = await grpcCheck(grpc.credentials.createSsl(pem("ca.pem"), pem("client.key"), pem("client.pem")));
    expect(res).toEqual({ code: 0, allowed: true });
    // Check is answered on the lean gRPC path (AUTHZ_GRPC_LEAN): the peer identity comes from its TLS socket.
    expect(app.grpcLean()?.calls).toBe(lean + 1);
  });

  it("gRPC: a verified but unknown certificate has no identity (UNAUTHENTICATED); no certificate fails the handshake", async () => {
    expect((await grpcCheck(grpc.credentials.createSsl(pem("ca.pem"), pem("stranger.key"), pem("stranger.pem")))).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await grpcCheck(grpc.credentials.createSsl(pem("ca.pem")))).code).toBe(grpc.status.UNAVAILABLE);
  });

  it("HTTPS (Connect over HTTP/1.1 with ALPN): the same rules", async () => {
    const ok = await httpsCheck("client");
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ allowed: true });
    const stranger = await httpsCheck("stranger");
    expect(stranger.status).toBe(401);
    await expect(httpsCheck()).rejects.toThrow();
  });

  it("the CLI against a server it cannot verify: UNAVAILABLE naming the TLS failure, exit 3 (not INTERNAL, exit 1)", async () => {
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          projectPath("dist/src/cli.js"),
          "check",
          "--server",
          `https://localhost:${ports.grpcPort}`,
          "--subject",
          `user:${ALICE}`,
          "--permission",
          "members.read",
          "--resource",
          `organization:${ENG}`,
        ],
        // No NODE_EXTRA_CA_CERTS: the test CA is unknown to the CLI.
        { env: { PATH: process.env.PATH ?? "" }, timeout: 20_000 },
        (err, _stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code) : 0, stderr }),
      );
    });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/^authz check: UNAVAILABLE: TLS with the server failed \([A-Z_]+\)/);
    expect(r.stderr).toContain("NODE_EXTRA_CA_CERTS");
  });
});
