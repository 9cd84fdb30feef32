// Hostile input at the RPC edge, black box: the built server runs as its own
// process on a real Postgres (the demo data) and Redis, authentication on,
// and ~3,000 seeded random requests reach it over real sockets: every unary
// RPC of every service on gRPC (grpc-js, raw bytes), Connect (binary and
// JSON over HTTP/1.1) and gRPC-Web, the Envoy services over gRPC, and the
// AuthZEN HTTP JSON endpoints. Messages come from the schemas with plausible
// and hostile values (NUL, lone surrogates, invalid UTF-8, huge strings and
// lists, extreme numbers) and are sometimes damaged on the wire.
//
// The promise checked: no INTERNAL or UNKNOWN, every call answered, none
// slower than 2 s, the process alive and serving afterwards, and no error in
// its log. AUTHZ_FUZZ_SEED=<n> replays a run (the seed is printed).
import { type ChildProcess, spawn } from "node:child_process";
import { randomInt, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { AdminService } from "../gen/authz/v1/admin_service_pb.js";
import { DirectoryService } from "../gen/authz/v1/directory_service_pb.js";
import { PermissionService } from "../gen/authz/v1/permission_service_pb.js";
import { RateLimitService } from "../gen/authz/v1/rate_limit_service_pb.js";
import { Authorization } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { RateLimitService as EnvoyRateLimitService } from "../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { binaryBody, jsonBody, randomMessage } from "./support/fuzz-messages.js";
import { AUTHZEN_POOLS, FUZZ_MESH, FUZZ_POOLS } from "./support/fuzz-pools.js";
import { createRand, hostileString, hostileStrings, type Rand } from "./support/fuzz-random.js";
import { connectCall, envelope, type GrpcRaw, grpcRaw, grpcWebCall, httpCall, type Outcome } from "./support/fuzz-wire.js";

const SEED = process.env.AUTHZ_FUZZ_SEED ? Number(process.env.AUTHZ_FUZZ_SEED) : randomInt(2 ** 31);
const TOTAL = 3000;
/** AUTHZ_FUZZ_ONLY=<i>,<j>: replay only these requests of the seed's run. */
const ONLY = process.env.AUTHZ_FUZZ_ONLY ? process.env.AUTHZ_FUZZ_ONLY.split(",").map(Number) : undefined;
const CONCURRENCY = 8;
/** A call not answered by then counts as a hang. */
const CLIENT_TIMEOUT_MS = 10_000;
/** The product's promise: no call takes longer than this (judged on a request replayed alone). */
const SLOW_MS = 2000;

const PROTOCOLS = ["grpc", "envoy", "connect-proto", "connect-json", "grpc-web", "authzen"] as const;
type Protocol = (typeof PROTOCOLS)[number];
const WEIGHTS: Record<Protocol, number> = { grpc: 20, envoy: 17, "connect-proto": 16, "connect-json": 16, "grpc-web": 14, authzen: 17 };

const unary = (s: DescService) => s.methods.filter((m) => m.methodKind === "unary");
const AUTHZ_METHODS = [...unary(PermissionService), ...unary(AdminService), ...unary(DirectoryService), ...unary(RateLimitService), ...unary(Health)];
const ENVOY_METHODS = [...unary(Authorization), ...unary(EnvoyRateLimitService)];
const ALL_METHODS = [...AUTHZ_METHODS, ...ENVOY_METHODS];
const pathOf = (m: DescMethod) => `/${m.parent.typeName}/${m.name}`;

let t: TestDatabase;
let server: ChildProcess;
let log = "";
let grpcPort = 0;
let base = "";
let adminKey = "";
let raw: GrpcRaw;

/** Starts the built server (dist/) as a process and resolves once it is SERVING. */
async function startServer(env: Record<string, string>): Promise<void> {
  server = spawn("node", [projectPath("dist/src/main.js")], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  server.stdout?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  server.stderr?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  const end = Date.now() + 30_000;
  while (!log.includes('"msg":"SERVING"') && Date.now() < end && server.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  if (!log.includes('"msg":"SERVING"')) throw new Error(`the server did not start:\n${log.slice(0, 4000)}`);
  const listening = log.split("\n").find((l) => l.includes('"grpcPort"'));
  const ports = JSON.parse(listening as string) as { grpcPort: number; httpPort: number };
  grpcPort = ports.grpcPort;
  base = `http://127.0.0.1:${ports.httpPort}`;
}

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  const { key, record } = mintApiKey("fuzz-admin", ["check", "ratelimit", "admin"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes) values (${record.id}, 'fuzz-admin', ${record.secretSha256}, ${record.scopes})`;
  adminKey = key;
  const dir = mkdtempSync(join(tmpdir(), "authz-fuzz-"));
  writeFileSync(join(dir, "mesh.json"), JSON.stringify(FUZZ_MESH));
  await startServer({
    DATABASE_URL: t.url,
    REDIS_URL: inject("redisUrl"),
    AUTHZ_REDIS_KEY_PREFIX: `authz:test:fuzz:${randomUUID()}`,
    AUTHZ_AUTH: "on",
    AUTHZ_MIGRATE: "false",
    AUTHZ_MESH_CONFIG: join(dir, "mesh.json"),
    AUTHZ_HOST: "127.0.0.1",
    AUTHZ_GRPC_PORT: "0",
    AUTHZ_HTTP_PORT: "0",
    AUTHZ_LOG_LEVEL: "info",
  });
  raw = grpcRaw(grpcPort);
}, 60_000);

afterAll(async () => {
  raw?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once("exit", r));
    server.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  }
  await t?.drop();
}, 30_000);

/** Credentials: mostly the admin key (as either header), sometimes none or a wrong one. */
function credentials(r: Rand): Record<string, string> {
  const k = r.int(20);
  if (k === 0) return {};
  if (k === 1) return { "x-api-key": "azk_nope_nope" };
  return r.chance(0.5) ? { "x-api-key": adminKey } : { authorization: `Bearer ${adminKey}` };
}

function authzenEntity(r: Rand, kind: "subject" | "resource", hostile: (r: Rand, base?: string) => string): unknown {
  if (r.chance(0.05)) return r.pick([null, "x", 1, [], { type: 1, id: 2 }]);
  const s = (pool: readonly string[]) => (r.chance(0.2) ? hostile(r, r.pick(pool)) : r.pick(pool));
  const e: Record<string, unknown> = { type: s(AUTHZEN_POOLS.types), id: s(AUTHZEN_POOLS.uuids) };
  if (r.chance(0.2)) e["properties"] = r.chance(0.8) ? { [s(["a", "b"])]: s(["v"]) } : "no";
  return kind === "subject" || r.chance(0.9) ? e : {};
}

function authzenBody(r: Rand): string {
  const hostile = hostileStrings(1);
  const tuple = () => ({
    subject: authzenEntity(r, "subject", hostile),
    action: r.chance(0.95) ? { name: r.chance(0.2) ? hostile(r, "members.read") : r.pick(AUTHZEN_POOLS.permissions) } : { name: 7 },
    resource: authzenEntity(r, "resource", hostile),
    ...(r.chance(0.2) ? { context: { time: hostile(r) } } : {}),
  });
  const body: Record<string, unknown> = tuple();
  if (r.chance(0.5)) {
    const n = r.chance(0.05) ? r.pick([1001, 1500]) : r.int(5);
    body["evaluations"] = Array.from({ length: n }, () => (r.chance(0.5) ? { resource: authzenEntity(r, "resource", hostile) } : tuple()));
    if (r.chance(0.3)) body["options"] = { evaluations_semantic: r.pick(["execute_all", "deny_on_first_deny", "permit_on_first_permit", "x", "\u0000"]) };
  }
  const text = JSON.stringify(body);
  return r.chance(0.05) ? text.slice(0, r.int(text.length)) : text;
}

async function callAuthzen(r: Rand, cred: Record<string, string>): Promise<[string, Outcome]> {
  const k = r.int(20);
  if (k === 0)
    return ["GET /.well-known/authzen-configuration", await httpCall(`${base}/.well-known/authzen-configuration`, "GET", undefined, {}, CLIENT_TIMEOUT_MS)];
  if (k === 1) {
    const path = `/access/v1/${r.pick(["search/subject", "x", encodeURIComponent(hostileString(r).replace(/[\ud800-\udfff]/g, "?")).slice(0, 2000)])}`;
    return ["POST /access/v1/<unknown>", await httpCall(`${base}${path}`, "POST", "{}", { "content-type": "application/json", ...cred }, CLIENT_TIMEOUT_MS)];
  }
  const path = r.chance(0.5) ? "/access/v1/evaluation" : "/access/v1/evaluations";
  const type = r.chance(0.95) ? "application/json" : "text/plain";
  return [`POST ${path}`, await httpCall(`${base}${path}`, "POST", authzenBody(r), { "content-type": type, ...cred }, CLIENT_TIMEOUT_MS)];
}

/** One random request over `protocol`; resolves with what was called and how it ended. */
async function one(r: Rand, protocol: Protocol): Promise<[string, Outcome]> {
  const cred = credentials(r);
  if (protocol === "authzen") return callAuthzen(r, cred);
  const method = r.pick(protocol === "grpc" ? AUTHZ_METHODS : protocol === "envoy" ? ENVOY_METHODS : ALL_METHODS);
  const msg = randomMessage(method.input, r, FUZZ_POOLS, 0.2);
  const path = pathOf(method);
  switch (protocol) {
    case "grpc":
    case "envoy":
      return [path, await raw.call(path, binaryBody(method.input, msg, r), cred, CLIENT_TIMEOUT_MS)];
    case "connect-proto":
      return [path, await connectCall(`${base}${path}`, binaryBody(method.input, msg, r), "application/proto", cred, CLIENT_TIMEOUT_MS)];
    case "connect-json":
      return [path, await connectCall(`${base}${path}`, jsonBody(method.input, msg, r), "application/json", cred, CLIENT_TIMEOUT_MS)];
    case "grpc-web": {
      const body = binaryBody(method.input, msg, r);
      const frame = r.chance(0.9) ? envelope(0, body) : r.chance(0.5) ? envelope(1, body) : body;
      return [path, await grpcWebCall(`${base}${path}`, frame, cred, CLIENT_TIMEOUT_MS)];
    }
  }
}

interface Result {
  /** The request's index: AUTHZ_FUZZ_SEED=<seed> AUTHZ_FUZZ_ONLY=<index> replays it alone. */
  index: number;
  protocol: Protocol;
  what: string;
  outcome: Outcome;
}

function pickProtocol(r: Rand): Protocol {
  const total = PROTOCOLS.reduce((s, p) => s + WEIGHTS[p], 0);
  let x = r.int(total);
  for (const p of PROTOCOLS) {
    x -= WEIGHTS[p];
    if (x < 0) return p;
  }
  return "grpc";
}

/** Request i of the seed's run: generated from its own seed, so it replays alone. */
async function runOne(i: number): Promise<Result> {
  const r = createRand((SEED + Math.imul(i, 0x9e3779b1)) >>> 0);
  const protocol = pickProtocol(r);
  const [what, outcome] = await one(r, protocol);
  return { index: i, protocol, what, outcome };
}

/** Runs TOTAL requests, CONCURRENCY at a time. */
async function runAll(): Promise<Result[]> {
  const results: Result[] = [];
  const queue = ONLY ?? Array.from({ length: TOTAL }, (_, i) => i);
  let next = 0;
  const worker = async () => {
    while (next < queue.length) results.push(await runOne(queue[next++] as number));
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return results;
}

/**
 * The requests that were slow among the others, replayed one at a time: a
 * request whose input is costly stays slow alone; one that only waited for a
 * CPU on a busy machine (the test shares two cores with the suite) does not.
 */
async function slowAlone(slow: readonly Result[]): Promise<Result[]> {
  const still: Result[] = [];
  for (const x of slow.slice(0, 20)) {
    const again = await runOne(x.index);
    if (again.outcome.ms > SLOW_MS) still.push(again);
  }
  return still;
}

function summary(results: readonly Result[]): string {
  const codes = [...new Set(results.map((x) => x.outcome.code))].sort();
  const rows = PROTOCOLS.map((p) => {
    const mine = results.filter((x) => x.protocol === p);
    const max = Math.max(0, ...mine.map((x) => x.outcome.ms));
    return [p, ...codes.map((c) => String(mine.filter((x) => x.outcome.code === c).length)), String(mine.length), max.toFixed(0)];
  });
  const head = ["protocol", ...codes, "total", "max ms"];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padStart(width[i] as number)).join(" | ")} |`;
  const slowest = [...results].sort((a, b) => b.outcome.ms - a.outcome.ms).slice(0, 5);
  return [
    line(head),
    line(width.map((w) => "-".repeat(w))),
    ...rows.map(line),
    "slowest:",
    ...slowest.map((x) => `  ${x.outcome.ms.toFixed(0)} ms  #${x.index} ${x.protocol} ${x.what} → ${x.outcome.code}`),
  ].join("\n");
}

/** One well-formed (empty) request per method and protocol first, as a started service would have seen: connections, pools and compiled code warm. */
async function warmUp(): Promise<void> {
  const cred = { "x-api-key": adminKey };
  for (const m of ALL_METHODS) {
    const path = pathOf(m);
    await raw.call(path, new Uint8Array(0), cred, CLIENT_TIMEOUT_MS);
    await connectCall(`${base}${path}`, new Uint8Array(0), "application/proto", cred, CLIENT_TIMEOUT_MS);
    await connectCall(`${base}${path}`, "{}", "application/json", cred, CLIENT_TIMEOUT_MS);
    await grpcWebCall(`${base}${path}`, envelope(0, new Uint8Array(0)), cred, CLIENT_TIMEOUT_MS);
  }
  await httpCall(`${base}/access/v1/evaluation`, "POST", "{}", { "content-type": "application/json", ...cred }, CLIENT_TIMEOUT_MS);
}

describe("fuzz: hostile requests on every protocol", () => {
  it(`no INTERNAL, no hang, nothing over ${SLOW_MS} ms when replayed alone, the process alive (seed printed)`, async () => {
    await warmUp();
    const started = Date.now();
    const results = await runAll();
    const slow = results.filter((x) => x.outcome.ms > SLOW_MS);
    console.log(
      `fuzz seed ${SEED}: ${results.length} requests in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        `${slow.length} over ${SLOW_MS} ms (AUTHZ_FUZZ_SEED=${SEED} replays)\n${summary(results)}`,
    );
    const errors = log.split("\n").filter((l) => /"level":(50|60)/.test(l));
    if (errors.length > 0)
      console.log(
        `server errors:\n${errors
          .slice(0, 10)
          .map((l) => l.slice(0, 1500))
          .join("\n")}`,
      );
    if (process.env.AUTHZ_FUZZ_VERBOSE)
      for (const x of results)
        console.log(`#${x.index} ${x.protocol} ${x.what} → ${x.outcome.code} ${x.outcome.ms.toFixed(0)} ms: ${x.outcome.message.slice(0, 300)}`);
    const broken = results.filter((x) => /^(INTERNAL|UNKNOWN|CLIENT_TIMEOUT|TRANSPORT_|HTTP_5)/.test(x.outcome.code));
    expect(broken.map((x) => `#${x.index} ${x.protocol} ${x.what} → ${x.outcome.code}: ${x.outcome.message.slice(0, 200)}`).slice(0, 20)).toEqual([]);
    const still = await slowAlone(slow);
    expect(still.map((x) => `#${x.index} ${x.protocol} ${x.what}: ${x.outcome.ms.toFixed(0)} ms alone`)).toEqual([]);
    expect(results.length).toBe(ONLY?.length ?? TOTAL);
    // Still alive and serving, and nothing it logged was an error.
    expect(server.exitCode).toBeNull();
    const health = await raw.call("/grpc.health.v1.Health/Check", new Uint8Array(0), {}, 5000);
    expect(health.code).toBe("OK");
    expect(errors.slice(0, 5)).toEqual([]);
  }, 120_000);
});
