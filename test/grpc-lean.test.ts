// The lean gRPC path (src/rpc/grpc-lean.ts) over real sockets: the hot RPCs
// through @grpc/grpc-js and Python grpcio clients, the protocol's edges
// through raw node:http2 (deadlines, metadata, status details, compression,
// sizes, content type, cancellation), grpc-js still serving the other RPCs on
// the same connection, and the switch off. The server's lean-call counter
// (app.grpcLean()) proves which path answered.
import { randomUUID } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import { Writable } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckRequestSchema, CheckResponseSchema } from "../gen/authz/v1/permission_service_pb.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { checkRequest, descriptor, loadEnvoyProtos } from "./support/envoy.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";
import { PYTHON, pythonStubs, run } from "./support/python.js";

const ENG = { type: "organization", id: "00000002-0000-4000-8000-000000000001" };
const ALICE = { type: "user", id: "00000003-0000-4000-8000-000000000001" };
const CHECK = "/authz.v1.PermissionService/Check";
const MAX_MESSAGE = 65_536;

let t: TestDatabase;
let app: App;
let grpcPort = 0;
let key = "";
let stubs = "";
const logLines: string[] = [];
const protos = loadProtos();

beforeAll(async () => {
  stubs = await pythonStubs();
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  const minted = mintApiKey("lean", ["check", "ratelimit"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${minted.record.id}, 'lean', ${minted.record.secretSha256}, ${minted.record.scopes}, null)`;
  key = minted.key;
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logLines.push(String(chunk));
      cb();
    },
  });
  app = createApp(
    loadConfig({
      DATABASE_URL: t.url,
      REDIS_URL: process.env.REDIS_URL,
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_MAX_MESSAGE_BYTES: String(MAX_MESSAGE),
      AUTHZ_RPC_LOG_SAMPLE: "1",
    }),
    createLogger("info", sink),
  );
  ({ grpcPort } = await app.listen());
  await app.ready;
}, 90_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
  if (stubs) rmSync(stubs, { recursive: true, force: true });
});

const leanCalls = (): number => app.grpcLean()?.calls ?? Number.NaN;

function keyed(extra: Record<string, string | Buffer> = {}): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  for (const [k, v] of Object.entries(extra)) md.set(k, v);
  return md;
}

const frame = (body: Uint8Array, flag = 0): Buffer => {
  const f = Buffer.alloc(5 + body.length);
  f[0] = flag;
  f.writeUInt32BE(body.length, 1);
  f.set(body, 5);
  return f;
};
const checkBytes = (extra: Record<string, unknown> = {}) =>
  toBinary(CheckRequestSchema, create(CheckRequestSchema, { subject: ALICE, permission: "members.read", resource: ENG, ...extra }));

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
  /** grpc-status from the trailers, or from the headers of a trailers-only answer. */
  status: string | undefined;
  message: string | undefined;
}

/** One call over raw node:http2: headers, then the body chunks (the stream is left open when `end` is false). */
function raw(
  session: http2.ClientHttp2Session,
  headers: Record<string, string>,
  chunks: Buffer[],
  end = true,
): { stream: http2.ClientHttp2Stream; answer: Promise<RawAnswer> } {
  const stream = session.request({ ":method": "POST", ":path": CHECK, "content-type": "application/grpc", te: "trailers", "x-api-key": key, ...headers });
  const answer = new Promise<RawAnswer>((resolve, reject) => {
    let h: http2.IncomingHttpHeaders = {};
    let tr: http2.IncomingHttpHeaders = {};
    const body: Buffer[] = [];
    stream.on("response", (x) => {
      h = x;
    });
    stream.on("trailers", (x) => {
      tr = x;
    });
    stream.on("data", (c: Buffer) => body.push(c));
    stream.on("error", reject);
    const done = () => {
      const all = { ...h, ...tr };
      resolve({
        headers: h,
        trailers: tr,
        body: Buffer.concat(body),
        status: all["grpc-status"] as string | undefined,
        message: all["grpc-message"] as string | undefined,
      });
    };
    // The server's side has ended (a trailers-only answer may come while ours is still open), or the stream is gone.
    stream.on("end", done);
    stream.on("close", done);
  });
  for (const c of chunks) stream.write(c);
  if (end) stream.end();
  return { stream, answer };
}

function errorInfo(a: RawAnswer) {
  const bin = (a.trailers["grpc-status-details-bin"] ?? a.headers["grpc-status-details-bin"]) as string;
  const status = fromBinary(StatusSchema, Buffer.from(bin, "base64"));
  const any = status.details[0];
  return { status, info: any ? fromBinary(ErrorInfoSchema, any.value) : undefined };
}

describe("the hot RPCs through @grpc/grpc-js", () => {
  it("Check, CheckBulk and ConsumeRateLimit are answered on the lean path, with the call log and metrics", async () => {
    const perms = client(protos, "authz.v1.PermissionService", grpcPort);
    const limits = client(protos, "authz.v1.RateLimitService", grpcPort);
    const before = leanCalls();
    const rid = `lean-${randomUUID()}`;
    const allow = await unary<{ allowed: boolean; reason: string }>(
      perms,
      "Check",
      { subject: ALICE, permission: "members.read", resource: ENG },
      keyed({ "x-request-id": rid }),
    );
    expect(allow).toMatchObject({ allowed: true, reason: "DECISION_REASON_GRANTED" });
    const bulk = await unary<{ results: unknown[] }>(
      perms,
      "CheckBulk",
      { items: [{ correlation_id: "a", subject: ALICE, permission: "members.read", resource: ENG }] },
      keyed(),
    );
    expect(bulk.results).toHaveLength(1);
    const consumed = await unary<{ allowed: boolean }>(
      limits,
      "ConsumeRateLimit",
      { policy: "login-attempts", subject: { type: "key", id: randomUUID() }, cost: 1 },
      keyed(),
    );
    expect(consumed.allowed).toBe(true);
    expect(leanCalls() - before).toBe(3);
    // The call log line (AUTHZ_RPC_LOG_SAMPLE=1 logs every call) carries the caller's request id; the metrics count the call.
    expect(logLines.some((l) => l.includes(rid) && l.includes(CHECK) && l.includes('"code":"OK"'))).toBe(true);
    const metrics = await app.metrics.registry.metrics();
    expect(metrics).toMatch(/authz_rpc[a-z_]*\{[^}]*authz\.v1\.PermissionService\/Check[^}]*\} [1-9]/);
    perms.close();
    limits.close();
  });

  it("Envoy Check and ShouldRateLimit are answered on the lean path", async () => {
    const envoy = loadEnvoyProtos();
    const authz = client(envoy, "envoy.service.auth.v3.Authorization", grpcPort);
    const rls = client(envoy, "envoy.service.ratelimit.v3.RateLimitService", grpcPort);
    const before = leanCalls();
    const checked = await unary<{ status: { code: number } }>(authz, "Check", checkRequest({ path: "/healthz" }), keyed());
    expect(typeof checked.status.code).toBe("number");
    const limited = await unary<{ overall_code: string }>(
      rls,
      "ShouldRateLimit",
      {
        domain: "authz",
        descriptors: [
          descriptor([
            ["policy", "login-attempts"],
            ["remote_address", randomUUID()],
          ]),
        ],
        hits_addend: 1,
      },
      keyed(),
    );
    expect(["OK", "OVER_LIMIT"]).toContain(limited.overall_code);
    expect(leanCalls() - before).toBe(2);
    authz.close();
    rls.close();
  });

  it("errors carry the code, the message and google.rpc.Status details; -bin metadata is accepted", async () => {
    const perms = client(protos, "authz.v1.PermissionService", grpcPort);
    const before = leanCalls();
    const err = await unary(
      perms,
      "Check",
      { subject: ALICE, permission: "members.read", resource: ENG, consistency: { at_least_as_fresh: "nöt-a-revision %41" } },
      keyed(),
    ).catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const details = (err as grpc.ServiceError).metadata.get("grpc-status-details-bin")[0] as Buffer;
    const status = fromBinary(StatusSchema, details);
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(fromBinary(ErrorInfoSchema, status.details[0]?.value ?? new Uint8Array())).toMatchObject({ domain: "authz" });
    expect((err as grpc.ServiceError).details).toBe(status.message);
    const noKey = await unary(perms, "Check", { subject: ALICE, permission: "members.read", resource: ENG }).catch((e: grpc.ServiceError) => e);
    expect(noKey).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    const bin = await unary<{ allowed: boolean }>(
      perms,
      "Check",
      { subject: ALICE, permission: "members.read", resource: ENG },
      keyed({ "x-trace-bin": Buffer.from([0, 1, 2, 255]) }),
    );
    expect(bin.allowed).toBe(true);
    expect(leanCalls() - before).toBe(3);
    perms.close();
  });

  it("a gzip-compressed request is handed to grpc-js, which decompresses and answers it", async () => {
    const perms = client(protos, "authz.v1.PermissionService", grpcPort);
    const C = perms.constructor as new (a: string, c: grpc.ChannelCredentials, o: grpc.ChannelOptions) => grpc.Client & Record<string, Function>;
    const gz = new C(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure(), { "grpc.default_compression_algorithm": 2 });
    const before = leanCalls();
    await expect(unary(gz, "Check", { subject: ALICE, permission: "members.read", resource: ENG }, keyed())).resolves.toMatchObject({ allowed: true });
    expect(leanCalls()).toBe(before);
    gz.close();
    perms.close();
  });

  it("the other RPCs are still served by grpc-js on the same connection", async () => {
    const perms = client(protos, "authz.v1.PermissionService", grpcPort);
    const before = leanCalls();
    await unary(perms, "Check", { subject: ALICE, permission: "members.read", resource: ENG }, keyed());
    const listing = await unary<{ scopes: unknown[] }>(perms, "ListPermissions", { subject: ALICE }, keyed());
    expect(listing.scopes.length).toBeGreaterThan(0);
    await unary(perms, "Check", { subject: ALICE, permission: "members.read", resource: ENG }, keyed());
    expect(leanCalls() - before).toBe(2);
    perms.close();
  });
});

describe("the hot RPCs through Python grpcio", () => {
  it("authz_client.py (Check, CheckBulk, status details, ConsumeRateLimit, deadlines, metadata) passes", async () => {
    const before = leanCalls();
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: stubs, PYTHONDONTWRITEBYTECODE: "1", AUTHZ_API_KEY: key };
    delete env.AUTHZ_ADDR;
    const r = await run(PYTHON, [projectPath("clients/python/authz_client.py"), `127.0.0.1:${grpcPort}`], { env, timeoutMs: 45_000 });
    expect(r.code, `authz_client.py exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    // Check x3, CheckBulk, ConsumeRateLimit x6 at least: the hot ones went the lean way.
    expect(leanCalls() - before).toBeGreaterThanOrEqual(10);
  }, 60_000);
});

describe("the protocol's edges over raw node:http2", () => {
  let session: http2.ClientHttp2Session;
  beforeAll(() => {
    session = http2.connect(`http://127.0.0.1:${grpcPort}`);
    session.on("error", () => {});
  });
  afterAll(() => session?.close());

  it("answers headers 200 application/grpc, one message and grpc-status 0 in the trailers", async () => {
    const a = await raw(session, {}, [frame(checkBytes())]).answer;
    expect(a.headers[":status"]).toBe(200);
    expect(a.headers["content-type"]).toBe("application/grpc");
    expect(a.trailers["grpc-status"]).toBe("0");
    expect(a.body.readUInt32BE(1)).toBe(a.body.length - 5);
    expect(fromBinary(CheckResponseSchema, a.body.subarray(5)).allowed).toBe(true);
  });

  it("a message chopped into many DATA frames is put back together", async () => {
    const whole = frame(checkBytes());
    const chunks = Array.from({ length: whole.length }, (_, i) => whole.subarray(i, i + 1));
    const a = await raw(session, {}, chunks).answer;
    expect(a.status).toBe("0");
  });

  it("grpc-timeout in every unit; a deadline that passes before the request is complete is DEADLINE_EXCEEDED", async () => {
    for (const timeout of ["1H", "10M", "30S", "20000m", "20000000u", "99999999n"]) {
      expect((await raw(session, { "grpc-timeout": timeout }, [frame(checkBytes())]).answer).status, timeout).toBe("0");
    }
    for (const timeout of ["1m", "1n"]) {
      const { stream, answer } = raw(session, { "grpc-timeout": timeout }, [], false);
      const a = await answer;
      stream.close();
      expect(a.status, timeout).toBe(String(grpc.status.DEADLINE_EXCEEDED));
      expect(errorInfo(a).info?.reason).toBe("DEADLINE_EXCEEDED");
    }
    const bad = await raw(session, { "grpc-timeout": "soon" }, [frame(checkBytes())]).answer;
    expect(bad.status).toBe(String(grpc.status.INVALID_ARGUMENT));
    expect(bad.message).toContain("grpc-timeout");
  });

  it("grpc-message is percent-encoded as the spec says, and status details are there", async () => {
    const a = await raw(session, {}, [frame(checkBytes({ consistency: { requirement: { case: "atLeastAsFresh", value: "nöt-%-a-revision" } } }))]).answer;
    expect(a.status).toBe(String(grpc.status.INVALID_ARGUMENT));
    expect(a.message).toMatch(/^[\x20-\x7e]*$/);
    const decoded = decodeURIComponent(a.message as string);
    const { status, info } = errorInfo(a);
    expect(decoded).toBe(status.message);
    expect(info?.domain).toBe("authz");
  });

  it("a message marked compressed without a grpc-encoding is UNIMPLEMENTED; an unknown encoding too (grpc-js answers it)", async () => {
    const before = leanCalls();
    const a = await raw(session, {}, [frame(checkBytes(), 1)]).answer;
    expect(a.status).toBe(String(grpc.status.UNIMPLEMENTED));
    expect(decodeURIComponent(a.message as string)).toContain("compressed");
    expect(a.headers["grpc-accept-encoding"]).toContain("identity");
    const snappy = await raw(session, { "grpc-encoding": "snappy" }, [frame(checkBytes(), 1)]).answer;
    expect(snappy.status).toBe(String(grpc.status.UNIMPLEMENTED));
    expect(leanCalls() - before).toBe(1);
  });

  it("sizes and framing: too large is RESOURCE_EXHAUSTED before the body arrives; none, two or a cut message are refused", async () => {
    const big = Buffer.alloc(5);
    big.writeUInt32BE(MAX_MESSAGE + 1, 1);
    const { stream, answer } = raw(session, {}, [big], false);
    const a = await answer;
    expect(a.status).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    expect(errorInfo(a).info?.reason).toBe("MESSAGE_TOO_LARGE");
    stream.close();
    expect((await raw(session, {}, []).answer).status).toBe(String(grpc.status.UNIMPLEMENTED));
    expect((await raw(session, {}, [frame(checkBytes()), frame(checkBytes())]).answer).status).toBe(String(grpc.status.UNIMPLEMENTED));
    expect((await raw(session, {}, [frame(checkBytes()).subarray(0, 8)]).answer).status).toBe(String(grpc.status.INVALID_ARGUMENT));
    const garbage = await raw(session, {}, [frame(Uint8Array.from([0xff, 0xff, 0xff]))]).answer;
    expect(garbage.status).toBe(String(grpc.status.INVALID_ARGUMENT));
    expect(errorInfo(garbage).info?.reason).toBe("MALFORMED_MESSAGE");
  });

  it("a wrong content type gets 415, as grpc-js answers it", async () => {
    const a = await raw(session, { "content-type": "application/json" }, [Buffer.from("{}")]).answer;
    expect(a.headers[":status"]).toBe(415);
  });

  it("a client that cancels mid-call leaves the server and the connection serving", async () => {
    const before = leanCalls();
    const { stream } = raw(session, { "grpc-timeout": "10S" }, [frame(checkBytes()).subarray(0, 3)], false);
    const closed = new Promise((resolve) => stream.on("close", resolve));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await closed;
    const after = await raw(session, {}, [frame(checkBytes())]).answer;
    expect(after.status).toBe("0");
    expect(leanCalls() - before).toBe(2);
  });

  it("a client that cancels while its answer is awaited (a fully consistent Check reads the database) leaves the server serving", async () => {
    const before = leanCalls();
    const body = frame(checkBytes({ consistency: { requirement: { case: "fullyConsistent", value: true } } }));
    for (let i = 0; i < 20; i++) {
      const { stream } = raw(session, {}, [body]);
      const closed = new Promise((resolve) => stream.on("close", resolve));
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await closed;
    }
    const after = await raw(session, {}, [body]).answer;
    expect(after.status).toBe("0");
    expect(leanCalls() - before).toBeGreaterThanOrEqual(1);
  });

  it("non-hot RPCs on the same raw connection go to grpc-js", async () => {
    const before = leanCalls();
    const stream = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
    const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on("trailers", resolve));
    stream.resume();
    stream.end(frame(new Uint8Array()));
    expect((await trailers)["grpc-status"]).toBe("0");
    expect(leanCalls()).toBe(before);
  });
});

describe("AUTHZ_GRPC_LEAN=off", () => {
  it("grpc-js answers every call; the lean path is not installed", async () => {
    const own = await freshDatabase();
    await importDocument(own.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
    const off = createApp(
      loadConfig({ DATABASE_URL: own.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0", AUTHZ_GRPC_LEAN: "off" }),
      createLogger("silent"),
    );
    try {
      const { grpcPort: port } = await off.listen();
      await off.ready;
      const perms = client(protos, "authz.v1.PermissionService", port);
      await expect(unary(perms, "Check", { subject: ALICE, permission: "members.read", resource: ENG })).resolves.toMatchObject({ allowed: true });
      perms.close();
      expect(off.grpcLean()).toBeUndefined();
    } finally {
      await off.stop();
      await own.drop();
    }
  }, 60_000);
});
