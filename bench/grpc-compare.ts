// gRPC throughput and latency in one run, same h2load settings for every row:
//
//   bare      a bare node:http2 server writing a canned gRPC reply (the transport limit)
//   health    the authz server's grpc.health.v1.Health/Check (its trivial RPC: no credential, no work)
//   check     authz.v1.PermissionService/Check, allowed, API key with the check scope
//   ratelimit authz.v1.RateLimitService/ConsumeRateLimit on a policy whose limit is never reached
//             (every call allowed and counted in Redis), API key with the ratelimit scope
//
// The authz server is the shipped one (createApp: Postgres, Redis, authentication
// on, log level warn) in a child process; the bare server in another; h2load is
// a third process. Targets run interleaved per round (bare, health, check,
// ratelimit, bare, ...). Every reply is verified: a grpc-js call per RPC before
// the load; under load the exact reply length (bare, health, check) and the
// server's own counters (/metrics: every Check allowed, every ConsumeRateLimit
// decided by the Redis store with grpc-status OK).

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";

import { CheckRequestSchema, CheckResponseSchema } from "../gen/authz/v1/permission_service_pb.js";
import { ConsumeRateLimitRequestSchema, ConsumeRateLimitResponseSchema, RateLimitDecisionSource } from "../gen/authz/v1/rate_limit_service_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { datasetShape, loadDatasetIntoPostgres, makeChecks } from "./dataset.js";
import { createDatabase, cpuTimes, dropDatabase, migrateDatabase, startServerChild as startAuthzChild, stealSince, unaryCall } from "./engine.js";
import {
  grpcFrame,
  h2loadCommand,
  median,
  parseH2load,
  percentile,
  runH2load,
  startServerChild as startStackChild,
  verifyRawLikeH2load,
  verifyWithGrpcClient,
  type LoadShape,
} from "./server-stacks.js";

const HEALTH_PATH = "/grpc.health.v1.Health/Check";
const CHECK_PATH = "/authz.v1.PermissionService/Check";
const RL_PATH = "/authz.v1.RateLimitService/ConsumeRateLimit";
const RL_POLICY = "bench_grpc";
const RL_LIMIT = 2_147_483_647;

export const GRPC_TARGETS = ["bare", "health", "check", "ratelimit"] as const;
export type GrpcTarget = (typeof GRPC_TARGETS)[number];
export const GRPC_TARGET_LABELS: Record<GrpcTarget, string> = {
  bare: "bare node:http2, canned reply (transport limit)",
  health: "authz Health/Check (trivial RPC)",
  check: "authz Check (allowed, API key)",
  ratelimit: "authz ConsumeRateLimit (allowed, Redis, API key)",
};

export interface GrpcCompareOptions {
  databaseUrl: string;
  redisUrl: string;
  smallScale: number;
  requests: number;
  warmup: number;
  rounds: number;
  clients: number;
  streams: number;
  h2load: string;
  log: (l: string) => void;
}

export interface GrpcCompareRow {
  round: number;
  target: GrpcTarget;
  requests: number;
  reqPerSec: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  ratioVsBare: number;
  ratioVsHealth: number;
}

export interface GrpcCompareResult {
  smallScale: number;
  requests: number;
  warmup: number;
  rounds: number;
  shape: LoadShape;
  commands: Record<GrpcTarget, string>;
  check: { subject: string; permission: string; resource: string };
  verified: string[];
  rows: GrpcCompareRow[];
  stealShare: number;
}

/** Prometheus text -> sample name with labels -> value. */
function parseMetrics(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const i = line.lastIndexOf(" ");
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

/** Sum of the deltas of every sample of `name` whose label text contains every one of `labels`. */
function delta(before: Map<string, number>, after: Map<string, number>, name: string, ...labels: string[]): number {
  let d = 0;
  for (const [k, v] of after) {
    if (!k.startsWith(`${name}{`) || !labels.every((l) => k.includes(l))) continue;
    d += v - (before.get(k) ?? 0);
  }
  return d;
}

async function scrape(httpPort: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`/metrics: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}

async function latencies(logFile: string): Promise<number[]> {
  const lat: number[] = [];
  for (const line of (await readFile(logFile, "utf8")).split("\n")) {
    const cols = line.split("\t");
    if (cols.length >= 3 && cols[1] !== "-1") lat.push(Number(cols[2]));
  }
  return lat.sort((a, b) => a - b);
}

export async function runGrpcCompare(o: GrpcCompareOptions): Promise<GrpcCompareResult> {
  const steal0 = cpuTimes();
  const shape: LoadShape = { clients: o.clients, streams: o.streams };
  const small = datasetShape(o.smallScale);
  const dbName = `authz_bench_${process.pid}_grpc`;
  const url = await createDatabase(o.databaseUrl, dbName);
  const dir = await mkdtemp(path.join(os.tmpdir(), "authz-grpc-bench-"));
  const stops: Array<() => Promise<void>> = [];
  try {
    await migrateDatabase(url);
    await loadDatasetIntoPostgres(url, small);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await sql`insert into rate_limit_policies (name, scope, limit_count, window_sec, algorithm, failure_mode)
                values (${RL_POLICY}, 'key', ${RL_LIMIT}, 3600, 'sliding_window', 'open')`;
    } finally {
      await sql.end({ timeout: 5 });
    }
    const { key, record } = mintApiKey("grpc-bench", ["check", "ratelimit"], null);
    const apiKeysFile = path.join(dir, "api-keys.json");
    await writeFile(apiKeysFile, JSON.stringify([{ id: record.id, name: record.name, sha256: record.secretSha256, scopes: record.scopes, tenant_id: null }]));

    const bare = await startStackChild("bare-http2", undefined);
    stops.push(() => bare.stop());
    const authz = await startAuthzChild(url, apiKeysFile, o.redisUrl);
    stops.push(() => authz.stop());

    // Requests, and one real client call each.
    const q = makeChecks(small, 1000, 5).find((c) => c.expected && c.permission === "doc.read");
    if (!q) throw new Error("no allowed check in the small dataset");
    const checkReq = create(CheckRequestSchema, { subject: q.subject, permission: q.permission, resource: q.resource });
    const rlReq = create(ConsumeRateLimitRequestSchema, { policy: RL_POLICY, subject: { type: "key", id: `grpc-bench-${process.pid}` }, cost: 1n });
    const healthReq = create(HealthCheckRequestSchema, {});
    const verified: string[] = [];
    await verifyWithGrpcClient(bare.port);
    await verifyRawLikeH2load(bare.port, grpcFrame(toBinary(HealthCheckRequestSchema, healthReq)));
    verified.push("bare: SERVING, grpc-status 0 (grpc-js client and a raw HTTP/2 request with h2load's headers)");
    const health = await unaryCall(authz.port, HEALTH_PATH, HealthCheckRequestSchema, HealthCheckResponseSchema, healthReq);
    if (health.code !== grpc.status.OK || health.response.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`Health: ${health.code}`);
    const check = await unaryCall(authz.port, CHECK_PATH, CheckRequestSchema, CheckResponseSchema, checkReq, { "x-api-key": key });
    if (check.code !== grpc.status.OK || !check.response.allowed) throw new Error(`Check: grpc-status ${check.code}, allowed ${check.response.allowed}`);
    const rl = await unaryCall(authz.port, RL_PATH, ConsumeRateLimitRequestSchema, ConsumeRateLimitResponseSchema, rlReq, { "x-api-key": key });
    if (rl.code !== grpc.status.OK || !rl.response.allowed || rl.response.source !== RateLimitDecisionSource.STORE) {
      throw new Error(`ConsumeRateLimit: grpc-status ${rl.code}, allowed ${rl.response.allowed}, source ${rl.response.source}`);
    }
    verified.push("authz: Health SERVING; Check allowed; ConsumeRateLimit allowed with source STORE (grpc-js client, grpc-status 0)");
    o.log(`grpc: verified bare, Health, Check (revision ${check.response.revision}) and ConsumeRateLimit (remaining ${rl.response.remaining})`);

    const targets: Record<GrpcTarget, { port: number; path: string; headers: string[]; frame: Buffer; replyBytes?: number }> = {
      bare: { port: bare.port, path: HEALTH_PATH, headers: [], frame: grpcFrame(toBinary(HealthCheckRequestSchema, healthReq)), replyBytes: 7 },
      health: {
        port: authz.port,
        path: HEALTH_PATH,
        headers: [],
        frame: grpcFrame(toBinary(HealthCheckRequestSchema, healthReq)),
        replyBytes: grpcFrame(toBinary(HealthCheckResponseSchema, health.response)).byteLength,
      },
      check: {
        port: authz.port,
        path: CHECK_PATH,
        headers: [`x-api-key: ${key}`],
        frame: grpcFrame(toBinary(CheckRequestSchema, checkReq)),
        replyBytes: grpcFrame(toBinary(CheckResponseSchema, check.response)).byteLength,
      },
      // The reply carries durations that vary in length: checked through the server's counters instead.
      ratelimit: { port: authz.port, path: RL_PATH, headers: [`x-api-key: ${key}`], frame: grpcFrame(toBinary(ConsumeRateLimitRequestSchema, rlReq)) },
    };
    for (const t of GRPC_TARGETS) await writeFile(path.join(dir, `${t}.bin`), targets[t].frame);

    const rows: GrpcCompareRow[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      const roundRows: GrpcCompareRow[] = [];
      for (const target of GRPC_TARGETS) {
        const t = targets[target];
        const frameFile = path.join(dir, `${target}.bin`);
        const before = target === "bare" ? undefined : await scrape(authz.httpPort);
        if (o.warmup > 0) {
          const w = parseH2load(await runH2load(o.h2load, t.port, o.warmup, shape, frameFile, undefined, t.path, t.headers));
          if (w.succeeded !== o.warmup || w.status2xx !== o.warmup) throw new Error(`${target}: warm-up had failures\n${w.raw}`);
        }
        const logFile = path.join(dir, `${target}-${round}.log`);
        const r = parseH2load(await runH2load(o.h2load, t.port, o.requests, shape, frameFile, logFile, t.path, t.headers));
        if (r.succeeded !== o.requests || r.status2xx !== o.requests || r.failed !== 0 || r.errored !== 0) throw new Error(`${target}: failures\n${r.raw}`);
        if (t.replyBytes !== undefined && r.dataBytes !== o.requests * t.replyBytes) {
          throw new Error(`${target}: ${r.dataBytes} DATA bytes, want ${o.requests * t.replyBytes}\n${r.raw}`);
        }
        if (before) {
          const after = await scrape(authz.httpPort);
          const n = o.requests + o.warmup;
          const ok = delta(before, after, "authz_rpc_requests_total", `method="${t.path}"`, `code="OK"`);
          const all = delta(before, after, "authz_rpc_requests_total", `method="${t.path}"`);
          if (ok !== n || all !== n) throw new Error(`${target}: the server counted ${ok} OK of ${all} calls, want ${n}`);
          if (target === "check") {
            const allowed = delta(before, after, "authz_decisions_total", `allowed="true"`);
            if (allowed !== n) throw new Error(`check: ${allowed} allowed decisions, want ${n}`);
          }
          if (target === "ratelimit") {
            const store = delta(before, after, "authz_ratelimit_decisions_total", `policy_source="store"`);
            if (store !== n) throw new Error(`ratelimit: ${store} decisions from the Redis store, want ${n}`);
          }
        }
        const lat = await latencies(logFile);
        const row: GrpcCompareRow = {
          round,
          target,
          requests: o.requests,
          reqPerSec: r.reqPerSec,
          meanUs: r.meanUs,
          p50Us: percentile(lat, 50),
          p99Us: percentile(lat, 99),
          ratioVsBare: NaN,
          ratioVsHealth: NaN,
        };
        roundRows.push(row);
        o.log(
          `grpc round ${round} ${target}: ${r.reqPerSec.toFixed(0)} req/s, p50 ${(row.p50Us / 1000).toFixed(2)} ms, p99 ${(row.p99Us / 1000).toFixed(2)} ms`,
        );
      }
      const b = roundRows.find((x) => x.target === "bare")?.reqPerSec ?? NaN;
      const h = roundRows.find((x) => x.target === "health")?.reqPerSec ?? NaN;
      for (const x of roundRows) {
        x.ratioVsBare = x.reqPerSec / b;
        x.ratioVsHealth = x.reqPerSec / h;
      }
      rows.push(...roundRows);
    }
    verified.push(
      `under load: every reply of bare, Health and Check exactly the verified length; the server's /metrics counted every call OK, every Check allowed and every ConsumeRateLimit decided by the Redis store`,
    );
    const commands = Object.fromEntries(
      GRPC_TARGETS.map((t) => [
        t,
        h2loadCommand(o.requests, shape, targets[t].path).replace(" --log-file", targets[t].headers.length ? " -H 'x-api-key: KEY' --log-file" : " --log-file"),
      ]),
    ) as Record<GrpcTarget, string>;
    return {
      smallScale: o.smallScale,
      requests: o.requests,
      warmup: o.warmup,
      rounds: o.rounds,
      shape,
      commands,
      check: { subject: `user:${q.subject.id}`, permission: q.permission, resource: `organization:${q.resource.id}` },
      verified,
      rows,
      stealShare: stealSince(steal0),
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await dropDatabase(o.databaseUrl, dbName);
  }
}

/** Medians over rounds per target (ratios: median of the per-round ratios). */
export function grpcMedians(rows: GrpcCompareRow[]): GrpcCompareRow[] {
  const out: GrpcCompareRow[] = [];
  for (const target of GRPC_TARGETS) {
    const xs = rows.filter((r) => r.target === target);
    if (xs.length === 0) continue;
    out.push({
      round: NaN,
      target,
      requests: xs[0]?.requests ?? 0,
      reqPerSec: median(xs.map((x) => x.reqPerSec)),
      meanUs: median(xs.map((x) => x.meanUs)),
      p50Us: median(xs.map((x) => x.p50Us)),
      p99Us: median(xs.map((x) => x.p99Us)),
      ratioVsBare: median(xs.map((x) => x.ratioVsBare)),
      ratioVsHealth: median(xs.map((x) => x.ratioVsHealth)),
    });
  }
  return out;
}
