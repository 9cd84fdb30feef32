import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { ServingStatus } from "../src/rpc/health.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const protos = loadProtos();

beforeAll(async () => {
  t = await freshDatabase({ empty: true });
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
});
afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

describe("health over a real socket", () => {
  it("gRPC (grpc-js loading the .proto dynamically): Check is SERVING for the server and each service", async () => {
    const health = client(protos, "grpc.health.v1.Health", ports.grpcPort);
    try {
      for (const service of ["", "authz.v1.PermissionService", "authz.v1.AdminService", "authz.v1.RateLimitService"]) {
        await expect(unary(health, "Check", { service })).resolves.toEqual({ status: "SERVING" });
      }
      await expect(unary(health, "Check", { service: "no.such.Service" })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      health.close();
    }
  });

  it("gRPC Watch streams the current status, then changes", async () => {
    const health = client(protos, "grpc.health.v1.Health", ports.grpcPort);
    const call = (health.Watch as Function).call(health, { service: "" }) as grpc.ClientReadableStream<{ status: string }>;
    const first = await new Promise((resolve, reject) => {
      call.once("data", resolve);
      call.once("error", reject);
    });
    expect(first).toEqual({ status: "SERVING" });
    const next = new Promise((resolve) => call.once("data", resolve));
    app.health.setAll(ServingStatus.NOT_SERVING);
    try {
      expect(await next).toEqual({ status: "NOT_SERVING" });
    } finally {
      app.health.setAll(ServingStatus.SERVING);
    }
    call.cancel();
    health.close();
  });

  it("Connect JSON over HTTP/1.1 (curl-able) and gRPC-Web answer SERVING; /readyz is 200", async () => {
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "SERVING" });

    // gRPC-Web, binary: an empty request frame; the reply frame holds status=1 (field 1, varint).
    const web = await fetch(`http://127.0.0.1:${ports.httpPort}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: new Uint8Array([0, 0, 0, 0, 0]),
    });
    const body = new Uint8Array(await web.arrayBuffer());
    expect(Array.from(body.subarray(0, 7))).toEqual([0, 0, 0, 0, 2, 0x08, 0x01]);
    expect(new TextDecoder().decode(body.subarray(7))).toMatch(/grpc-status: ?0/);

    expect((await fetch(`http://127.0.0.1:${ports.httpPort}/readyz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ports.httpPort}/healthz`)).status).toBe(200);
  });
});

describe("the HTTP port speaks HTTP/1.1 and cleartext HTTP/2 on one socket", () => {
  it("does not serve the web console with DATABASE_URL unless AUTHZ_CONSOLE=on", async () => {
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/console/`);
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain("authz console");
  });

  it("serves /healthz over h2c and gRPC over the HTTP port", async () => {
    const http2 = await import("node:http2");
    const session = http2.connect(`http://127.0.0.1:${ports.httpPort}`);
    const body = await new Promise<string>((resolve, reject) => {
      const st = session.request({ ":path": "/healthz" });
      let d = "";
      st.on("data", (x: Buffer) => {
        d += x.toString();
      });
      st.on("end", () => resolve(d));
      st.on("error", reject);
    });
    session.close();
    expect(body.trim()).toBe("ok");
    const health = client(protos, "grpc.health.v1.Health", ports.httpPort);
    await expect(unary(health, "Check", { service: "" })).resolves.toEqual({ status: "SERVING" });
    health.close();
  });
});

describe("the authz.v1 contract", () => {
  it("errors carry a google.rpc.ErrorInfo with a stable reason, on gRPC and on Connect", async () => {
    const calls: Array<[string, string]> = [
      ["authz.v1.AdminService", "TransferOwnership"],
      ["authz.v1.AdminService", "ManageRoles"],
      ["authz.v1.RateLimitService", "ConsumeRateLimit"],
      ["authz.v1.PermissionService", "Check"],
    ];
    for (const [service, method] of calls) {
      const c = client(protos, service, ports.grpcPort);
      const err = (await unary(c, method, {}).catch((e: unknown) => e)) as grpc.ServiceError;
      c.close();
      expect(err.code, `${service}/${method}`).toBe(grpc.status.INVALID_ARGUMENT);
      const bin = err.metadata.get("grpc-status-details-bin")[0] as Buffer;
      const status = fromBinary(StatusSchema, bin);
      expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status.message).toBe(err.details);
      expect(status.details[0]?.typeUrl).toBe("type.googleapis.com/google.rpc.ErrorInfo");
      const info = fromBinary(ErrorInfoSchema, status.details[0]?.value ?? new Uint8Array());
      expect(info.domain).toBe("authz");
      expect(info.reason).toMatch(/^[A-Z_]+$/);

      const res = await fetch(`http://127.0.0.1:${ports.httpPort}/${service}/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: "invalid_argument", details: [{ type: "google.rpc.ErrorInfo" }] });
    }
  });

  it("a request that is not a valid protobuf message is INVALID_ARGUMENT, not INTERNAL", async () => {
    const raw = new grpc.Client(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      raw.makeUnaryRequest(
        "/authz.v1.PermissionService/Check",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0xff, 0xff, 0xff]), // field 1, length-delimited, truncated length
        (e) => resolve(e as grpc.ServiceError),
      );
    });
    raw.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/not a valid authz\.v1\.CheckRequest message/);
  });

  it("a Check with a malformed subject is INVALID_ARGUMENT naming the field, on both protocols", async () => {
    const c = client(protos, "authz.v1.PermissionService", ports.grpcPort);
    const err = (await unary(c, "Check", {
      subject: { type: "robot", id: "x" },
      permission: "p",
      resource: { type: "organization", id: "00000000-0000-4000-8000-000000000001" },
    }).catch((e: unknown) => e)) as grpc.ServiceError;
    c.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/subject\.type must be one of user, account, principal, staff/);
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.PermissionService/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ subject: { type: "user", id: "not-a-uuid" }, permission: "p", resource: { type: "tenant", id: "x" } }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/subject\.id must be a UUID/) });
  });

  it("malformed Connect JSON is a clear invalid_argument", async () => {
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.PermissionService/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"subject": 42}',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument" });
  });
});

describe("start-up and shutdown", () => {
  it("stays NOT_SERVING (and /readyz 503) while the database is unreachable, and stops cleanly", async () => {
    const down = createApp(
      loadConfig({
        DATABASE_URL: "postgres://postgres@127.0.0.1:1/none",
        AUTHZ_HOST: "127.0.0.1",
        AUTHZ_GRPC_PORT: "0",
        AUTHZ_HTTP_PORT: "0",
      }),
      createLogger("silent"),
    );
    const p = await down.listen();
    const health = client(protos, "grpc.health.v1.Health", p.grpcPort);
    try {
      await expect(unary(health, "Check", { service: "" })).resolves.toEqual({ status: "NOT_SERVING" });
      expect((await fetch(`http://127.0.0.1:${p.httpPort}/readyz`)).status).toBe(503);
    } finally {
      health.close();
      await down.stop();
    }
  });
});

describe("gRPC server reflection", () => {
  for (const version of ["v1", "v1alpha"]) {
    it(`lists every service and serves descriptors (${version})`, async () => {
      const protoLoader = await import("@grpc/proto-loader");
      const { projectPath } = await import("../src/paths.js");
      const dir = projectPath(`node_modules/@grpc/reflection/build/proto`);
      const def = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [dir], keepCase: true, longs: String, defaults: true });
      const tree = grpc.loadPackageDefinition(def);
      const Ctor = ((tree.grpc as grpc.GrpcObject).reflection as grpc.GrpcObject)[version] as grpc.GrpcObject;
      const C = Ctor.ServerReflection as unknown as new (a: string, c: grpc.ChannelCredentials) => grpc.Client & Record<string, Function>;
      const c = new C(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure());
      const call = (c.ServerReflectionInfo as Function).call(c) as grpc.ClientDuplexStream<unknown, Record<string, any>>;
      const ask = (req: unknown) =>
        new Promise<Record<string, any>>((resolve, reject) => {
          call.once("data", resolve);
          call.once("error", reject);
          call.write(req);
        });
      const list = await ask({ list_services: "" });
      const names = (list.list_services_response.service as Array<{ name: string }>).map((s) => s.name);
      expect(names).toEqual(
        expect.arrayContaining(["authz.v1.PermissionService", "authz.v1.AdminService", "authz.v1.RateLimitService", "grpc.health.v1.Health"]),
      );
      const file = await ask({ file_containing_symbol: "authz.v1.PermissionService" });
      expect(file.file_descriptor_response.file_descriptor_proto.length).toBeGreaterThan(0);
      call.end();
      c.close();
    });
  }
});
