// Hostile input at the RPC edge, case by case, against the real server
// (createApp on a fresh database with the demo data, authentication on):
// bodies that do not decode, strings Postgres cannot store, requests of
// millions of tiny elements, a 64 KB health service name, bodies the server
// answers before reading them, and the AuthZEN routes. Each case names the
// protocol; test/fuzz.test.ts does the same at random.
import * as http from "node:http";
import * as http2 from "node:http2";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManageRolesRequestSchema } from "../gen/authz/v1/admin_service_pb.js";
import { CheckRequestSchema } from "../gen/authz/v1/permission_service_pb.js";
import { RateLimitRequestSchema } from "../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { HealthCheckRequestSchema } from "../gen/grpc/health/v1/health_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import { type Answer, connectUnary, frame, grpcCall, grpcWeb } from "./support/edge-calls.js";

const { user: U, org: O } = DEMO;
let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
let base = "";
let key = "";
let onGrpcPort: grpc.Client;
let onHttpPort: grpc.Client;
const auth = () => ({ "x-api-key": key });

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  const minted = mintApiKey("edge-admin", ["check", "ratelimit", "admin"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes) values (${minted.record.id}, 'edge-admin', ${minted.record.secretSha256}, ${minted.record.scopes})`;
  key = minted.key;
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
  base = `http://127.0.0.1:${ports.httpPort}`;
  onGrpcPort = new grpc.Client(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure());
  onHttpPort = new grpc.Client(`127.0.0.1:${ports.httpPort}`, grpc.credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  onGrpcPort?.close();
  onHttpPort?.close();
  await app?.stop();
  await t?.drop();
});

const CHECK = "/authz.v1.PermissionService/Check";

/** The same raw body over each protocol that carries protobuf binary. */
async function everywhere(path: string, body: Uint8Array): Promise<Record<string, Answer>> {
  return {
    grpc: await grpcCall(onGrpcPort, path, body, auth()),
    "grpc on the HTTP port": await grpcCall(onHttpPort, path, body, auth()),
    connect: await connectUnary(`${base}${path}`, body, "application/proto", auth()),
    "grpc-web": await grpcWeb(`${base}${path}`, frame(0, body), auth()),
  };
}

describe("bodies that do not decode", () => {
  it("are INVALID_ARGUMENT (MALFORMED_MESSAGE) on gRPC, Connect and gRPC-Web, never INTERNAL", async () => {
    const bodies: Record<string, number[]> = {
      "a length past the end": [0x0a, 0x05, 0x0a],
      "a truncated number": [0x0a, 0xff],
      "field number 0": [0x00, 0x01],
      "a group": [0x0b, 0x0c],
      "invalid UTF-8 in a string": [0x12, 0x02, 0xff, 0xfe],
      "a string field sent as a number": [0x10, 0x01],
    };
    for (const [what, bytes] of Object.entries(bodies)) {
      for (const [protocol, a] of Object.entries(await everywhere(CHECK, Uint8Array.from(bytes)))) {
        expect({ what, protocol, code: a.code, reason: a.reason }).toEqual({ what, protocol, code: "INVALID_ARGUMENT", reason: "MALFORMED_MESSAGE" });
        expect(a.message).toMatch(/^the request is not a valid authz\.v1\.CheckRequest message: /);
      }
    }
  });

  it("JSON with an unknown field, an unknown enum name or a value of the wrong type is INVALID_ARGUMENT (MALFORMED_MESSAGE), not dropped", async () => {
    const mr = "/authz.v1.AdminService/ManageRoles";
    const upsert = `{"upsertRole":{"key":{"organizationId":"${O.eng}","key":"json-strict"},"name":"Strict"}}`;
    const cases: Array<[string, string, string]> = [
      // A misspelt expected_revision must not skip the revision check and write.
      ["an unknown field", mr, `{"mutations":[${upsert}],"expectedRevison":"1"}`],
      // A misspelt enum name must not become the enum's default (an immediate transfer, a fail-open policy).
      [
        "an unknown enum name",
        "/authz.v1.AdminService/TransferOwnership",
        `{"avatarId":"${O.eng}","fromMembershipId":"${O.eng}","toMembershipId":"${O.eng}","mode":"TRANSFER_MODE_REQEST"}`,
      ],
      ["a string field sent as a number", CHECK, `{"permission":123}`],
      ["a bool sent as a string", CHECK, `{"explain":"yes"}`],
      ["a body that is not an object", CHECK, "[]"],
    ];
    for (const [what, path, body] of cases) {
      const answers = {
        connect: await connectUnary(`${base}${path}`, body, "application/json", auth()),
        "grpc-web+json": await grpcWeb(`${base}${path}`, frame(0, new TextEncoder().encode(body)), { ...auth(), "content-type": "application/grpc-web+json" }),
      };
      for (const [protocol, a] of Object.entries(answers)) {
        expect({ what, protocol, code: a.code, reason: a.reason }).toEqual({ what, protocol, code: "INVALID_ARGUMENT", reason: "MALFORMED_MESSAGE" });
      }
    }
    const roles = await t.raw`select 1 from roles where key = 'json-strict'`;
    expect(roles.length).toBe(0);
  });

  it("a unary Connect body that inflates past the message limit is RESOURCE_EXHAUSTED (MESSAGE_TOO_LARGE), JSON or binary", async () => {
    const json = Buffer.from(JSON.stringify({ permission: "a".repeat(5 << 20) }));
    const binary = toBinary(CheckRequestSchema, create(CheckRequestSchema, { permission: "a".repeat(5 << 20) }));
    for (const [type, body] of [
      ["application/json", json],
      ["application/proto", binary],
    ] as const) {
      const a = await connectUnary(`${base}${CHECK}`, gzipSync(body), type, { ...auth(), "content-encoding": "gzip" });
      expect({ type, code: a.code, reason: a.reason }).toEqual({ type, code: "RESOURCE_EXHAUSTED", reason: "MESSAGE_TOO_LARGE" });
    }
  });

  it("a gRPC-Web frame marked compressed with no compression named, or no frame at all, is INVALID_ARGUMENT", async () => {
    const compressed = await grpcWeb(`${base}${CHECK}`, frame(1, Uint8Array.from([0x12, 0x01, 0x61])), auth());
    expect(compressed).toMatchObject({ code: "INVALID_ARGUMENT", reason: "MALFORMED_MESSAGE" });
    expect(await grpcWeb(`${base}${CHECK}`, new Uint8Array(0), auth())).toMatchObject({ code: "INVALID_ARGUMENT", reason: "MALFORMED_MESSAGE" });
    const two = Uint8Array.from([...frame(0, new Uint8Array(0)), ...frame(0, new Uint8Array(0))]);
    expect(await grpcWeb(`${base}${CHECK}`, two, auth())).toMatchObject({ code: "INVALID_ARGUMENT", reason: "MALFORMED_MESSAGE" });
  });

  it("are answered after authentication: without a credential the answer is UNAUTHENTICATED", async () => {
    expect((await grpcCall(onGrpcPort, CHECK, Uint8Array.from([0x0a, 0xff]))).code).toBe("UNAUTHENTICATED");
    expect((await connectUnary(`${base}${CHECK}`, Uint8Array.from([0x0a, 0xff]), "application/proto")).code).toBe("UNAUTHENTICATED");
  });

  it("a request of millions of tiny elements is refused before it is decoded (TOO_MANY_ELEMENTS)", async () => {
    // 2 million empty descriptors: 4 MB that take seconds of CPU to decode.
    const bomb = new Uint8Array(4_000_000).fill(0).map((_, i) => (i % 2 === 0 ? 0x12 : 0x00));
    for (const [protocol, a] of Object.entries(await everywhere("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", bomb))) {
      expect({ protocol, code: a.code, reason: a.reason }).toEqual({ protocol, code: "INVALID_ARGUMENT", reason: "TOO_MANY_ELEMENTS" });
    }
    const json = `{"descriptors":[${Array.from({ length: 60_000 }, () => "{}").join(",")}]}`;
    const viaJson = await connectUnary(`${base}/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, json, "application/json", auth());
    expect(viaJson).toMatchObject({ code: "INVALID_ARGUMENT", reason: "TOO_MANY_ELEMENTS" });
    // A real call with the most descriptors ShouldRateLimit takes (64, src/mesh/rate-limit.ts) is far under the element limit.
    const fine = toBinary(
      RateLimitRequestSchema,
      create(RateLimitRequestSchema, { domain: "none", descriptors: Array.from({ length: 64 }, () => ({ entries: [{ key: "k", value: "v" }] })) }),
    );
    expect((await grpcCall(onGrpcPort, "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", fine, auth())).code).toBe("OK");
  });
});

describe("strings and lists past the bounds", () => {
  const manageRoles = (description: string) =>
    toBinary(
      ManageRolesRequestSchema,
      create(ManageRolesRequestSchema, {
        mutations: [0, 1, 2, 3].map((i) => ({
          mutation: {
            case: "upsertRole" as const,
            value: { key: { organizationId: O.eng, key: `edge-${i}` }, name: `Edge ${i}`, description: i === 3 ? description : "ok" },
          },
        })),
      }),
    );

  it("a NUL in any string is INVALID_ARGUMENT (INVALID_STRING) naming the field path, before Postgres sees it", async () => {
    for (const [protocol, a] of Object.entries(await everywhere("/authz.v1.AdminService/ManageRoles", manageRoles("bad\u0000text")))) {
      expect({ protocol, code: a.code, reason: a.reason, field: a.metadata?.["field"] }).toEqual({
        protocol,
        code: "INVALID_ARGUMENT",
        reason: "INVALID_STRING",
        field: "mutations[3].upsert_role.description",
      });
      expect(a.message).toBe("mutations[3].upsert_role.description contains a NUL character (U+0000), which is not allowed");
    }
    const json = JSON.stringify({ transferId: U.alice, idempotencyKey: "k\u0000" });
    const viaJson = await connectUnary(`${base}/authz.v1.AdminService/CancelOwnershipTransfer`, json, "application/json", auth());
    expect(viaJson).toMatchObject({ code: "INVALID_ARGUMENT", reason: "INVALID_STRING", metadata: { field: "idempotency_key" } });
    // Nothing was written.
    const [row] = await t.raw<{ n: number }[]>`select count(*)::int as n from roles where key like 'edge-%'`;
    expect(row?.n).toBe(0);
  });

  it("a string over its byte limit is FIELD_TOO_LONG; the message never quotes it", async () => {
    const long = "é".repeat(2100); // 4200 bytes, 2100 characters
    const a = await grpcCall(onGrpcPort, "/authz.v1.AdminService/ManageRoles", manageRoles(long), auth());
    expect(a).toMatchObject({ code: "INVALID_ARGUMENT", reason: "FIELD_TOO_LONG", metadata: { field: "mutations[3].upsert_role.description" } });
    expect(a.message).not.toContain("é");
    const check = toBinary(CheckRequestSchema, create(CheckRequestSchema, { subject: { type: "user", id: U.alice }, permission: "p".repeat(70_000) }));
    expect(await grpcCall(onGrpcPort, CHECK, check, auth())).toMatchObject({
      code: "INVALID_ARGUMENT",
      reason: "FIELD_TOO_LONG",
      message: "permission is longer than 4096 bytes",
    });
  });
});

describe("health, public and bounded", () => {
  it("a 64 KB service name is INVALID_ARGUMENT at once, and 50 calls sharing the connection all succeed", async () => {
    const c = new grpc.Client(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure());
    const huge = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "s".repeat(64 * 1024) }));
    const empty = new Uint8Array(0);
    const [first, ...rest] = await Promise.all([
      grpcCall(c, "/grpc.health.v1.Health/Check", huge),
      ...Array.from({ length: 50 }, () => grpcCall(c, "/grpc.health.v1.Health/Check", empty)),
    ]);
    c.close();
    expect(first).toMatchObject({ code: "INVALID_ARGUMENT", reason: "FIELD_TOO_LONG", message: "service is longer than 4096 bytes" });
    expect(rest.map((a) => a.code)).toEqual(Array.from({ length: 50 }, () => "OK"));
  });

  it("an unknown service is NOT_FOUND with at most a short prefix of its name", async () => {
    const name = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: `no.such.${"x".repeat(4000)}` }));
    const a = await grpcCall(onGrpcPort, "/grpc.health.v1.Health/Check", name);
    expect(a.code).toBe("NOT_FOUND");
    expect(a.message.length).toBeLessThan(100);
  });
});

describe("a body the server answers without reading it all", () => {
  // A gRPC-Web request of 6 MB: refused (over AUTHZ_MAX_MESSAGE_BYTES) from its frame header.
  const big = frame(0, new Uint8Array(6 * 1024 * 1024));

  it("HTTP/1.1: the answer arrives while the client is still sending, and the next request is answered", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (body: Uint8Array) =>
      new Promise<{ status: number; grpcStatus: string | undefined }>((resolve, reject) => {
        const req = http.request(
          `${base}${CHECK}`,
          { method: "POST", agent, headers: { "content-type": "application/grpc-web+proto", "content-length": body.length, ...auth() } },
          (res) => {
            let text = "";
            res.on("data", (d: Buffer) => {
              text += d.toString("latin1");
            });
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, grpcStatus: /grpc-status: ?(\d+)/.exec(text)?.[1] ?? res.headers["grpc-status"]?.toString() }),
            );
          },
        );
        req.setTimeout(10_000, () => req.destroy(new Error("no answer within 10 s")));
        req.on("error", reject);
        req.end(body);
      });
    const first = await post(big);
    expect(first.grpcStatus).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    const second = await post(frame(0, new Uint8Array(0)));
    expect(second).toMatchObject({ status: 200, grpcStatus: String(grpc.status.INVALID_ARGUMENT) });
    agent.destroy();
  });

  it("HTTP/2: the stream ends, and the session carries the next request", async () => {
    const session = http2.connect(base);
    const post = (body: Uint8Array) =>
      new Promise<string | undefined>((resolve, reject) => {
        const st = session.request({ ":method": "POST", ":path": CHECK, "content-type": "application/grpc-web+proto", ...auth() });
        let text = "";
        let stuck = false;
        st.setTimeout(10_000, () => {
          stuck = true;
          st.close(http2.constants.NGHTTP2_CANCEL);
        });
        st.on("data", (d: Buffer) => {
          text += d.toString("latin1");
        });
        st.on("close", () => (stuck ? reject(new Error("the stream did not end within 10 s")) : resolve(/grpc-status: ?(\d+)/.exec(text)?.[1])));
        st.on("error", () => {});
        st.end(body);
      });
    expect(await post(big)).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    expect(await post(frame(0, new Uint8Array(0)))).toBe(String(grpc.status.INVALID_ARGUMENT));
    session.close();
  });
});

describe("AuthZEN", () => {
  const evaluate = (path: string, body: unknown, headers: Record<string, string> = auth()) =>
    fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const tuple = { subject: { type: "user", id: U.alice }, action: { name: "members.read" }, resource: { type: "organization", id: O.eng } };

  it("strings past the bounds are 400 naming the field", async () => {
    const nul = await evaluate("/access/v1/evaluation", { ...tuple, subject: { type: "user", id: `${U.alice}\u0000` } });
    expect(nul.status).toBe(400);
    expect(((await nul.json()) as { error: { message: string } }).error.message).toBe("subject.id contains a NUL character (U+0000), which is not allowed");
    const long = await evaluate("/access/v1/evaluations", { ...tuple, evaluations: [{}, {}, { action: { name: "x".repeat(5000) } }] });
    expect(long.status).toBe(400);
    expect(((await long.json()) as { error: { message: string } }).error.message).toBe("evaluations[2].action.name is longer than 4096 bytes");
    // context is JSON-ish: larger strings are fine there.
    expect((await evaluate("/access/v1/evaluation", { ...tuple, context: { note: "y".repeat(10_000) } })).status).toBe(200);
  });

  it("an unknown /access/v1/ path needs a credential, is 404 without echoing the path, and adds no metric series of its own", async () => {
    const path = `/access/v1/probe-${Date.now()}`;
    expect((await evaluate(path, {}, {})).status).toBe(401);
    const found = await evaluate(path, {});
    expect(found.status).toBe(404);
    expect(await found.text()).not.toContain("probe-");
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).not.toContain("probe-");
    expect(metrics).toMatch(/authz_rpc_requests_total\{method="unknown",code="NOT_FOUND"\} 1/);
  });
});
