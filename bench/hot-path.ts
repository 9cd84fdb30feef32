// The hot path: server CPU per call, in one run, for
//
//   bare    a bare node:http2 server writing a canned gRPC reply (what the transport costs)
//   health  the authz server's grpc.health.v1.Health/Check (no credential, no work)
//   check   authz.v1.PermissionService/Check, allowed, API key with the check scope (the lean path, as shipped)
//   checkjs the same Check on a second authz server with AUTHZ_GRPC_LEAN=off (through grpc-js, as before
//           the lean path): the before and after in one run
//   grpcjs  a plain @grpc/grpc-js server answering Health/Check (what grpc-js alone costs: the floor of
//           any handler served through it)
//
// The authz server is createApp as shipped at the DEFAULT log level (info; the log
// goes to /dev/null through the shipped pino logger), PostgreSQL behind it,
// authentication on. Each server runs in its own child process, h2load in a third.
// CPU is read from /proc/<pid>/task/*/schedstat (nanoseconds on CPU of every thread
// of the server process: main thread, libuv pool, V8 helpers) before and after each
// measured h2load run, so the load generator's own CPU is not counted and the figure
// does not depend on how busy the machine is the way req/s does. Targets interleave
// per round; the ratios are per round, then the median over rounds.

import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

import { CheckRequestSchema, CheckResponseSchema } from "../gen/authz/v1/permission_service_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { datasetShape, loadDatasetIntoPostgres, makeChecks } from "./dataset.js";
import { createDatabase, cpuTimes, dropDatabase, migrateDatabase, startServerChild as startAuthzChild, stealSince, unaryCall } from "./engine.js";
import { type InprocHotRow, runHotPathInProcess } from "./hot-path-inproc.js";
import { grpcFrame, h2loadCommand, type LoadShape, median, parseH2load, runH2load, startServerChild as startStackChild } from "./server-stacks.js";

const HEALTH_PATH = "/grpc.health.v1.Health/Check";
/** How long every server is left idle, together, before the rounds. */
const IDLE_WINDOW_MS = 5000;
const CHECK_PATH = "/authz.v1.PermissionService/Check";

export const HOT_TARGETS = ["bare", "grpcjs", "health", "check", "checkjs"] as const;
export type HotTarget = (typeof HOT_TARGETS)[number];
export const HOT_TARGET_LABELS: Record<HotTarget, string> = {
  bare: "bare node:http2, canned reply",
  grpcjs: "plain @grpc/grpc-js Health/Check",
  health: "authz Health/Check",
  check: "authz Check (allowed, API key)",
  checkjs: "authz Check through grpc-js (AUTHZ_GRPC_LEAN=off)",
};

export interface HotPathOptions {
  databaseUrl: string;
  smallScale: number;
  requests: number;
  warmup: number;
  rounds: number;
  clients: number;
  streams: number;
  h2load: string;
  /** Also measured at a fixed rate: requests per second per client (h2load --rps), and requests per run. */
  fixed?: { rps: number; requests: number };
  /** Calls per in-process measurement (bench/hot-path-inproc.ts). */
  inprocCalls: number;
  log: (l: string) => void;
}

/** saturated: h2load sends as fast as the server answers; fixed: at a fixed rate (every target the same load). */
export type HotRegime = "saturated" | "fixed";

export interface HotPathRow {
  round: number;
  /** Absent in results from before the fixed-rate runs: saturated. */
  regime?: HotRegime;
  target: HotTarget;
  requests: number;
  /** Server CPU (all threads) per call, microseconds. */
  cpuUsPerCall: number;
  reqPerSec: number;
  ratioVsBare: number;
  ratioVsHealth: number;
}

export interface HotPathResult {
  smallScale: number;
  requests: number;
  warmup: number;
  rounds: number;
  shape: LoadShape;
  fixed?: { rps: number; requests: number };
  logLevel: "info";
  commands: Record<HotTarget, string>;
  rows: HotPathRow[];
  /** The same without the transport (bench/hot-path-inproc.ts); absent in results from before it. */
  inprocess?: { calls: number; rows: InprocHotRow[] };
  /** Each server's CPU while it answers nothing, over the same window; absent in results from before it. */
  idle?: IdleCpu;
  stealShare: number;
}

/** Nanoseconds every thread of a process has spent on a CPU (per-thread schedstat, summed). */
export function processCpuNs(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return total;
}

/** The servers measured idle: bare, the plain grpc-js server, authz (Health and Check), authz with AUTHZ_GRPC_LEAN=off. */
export const IDLE_SERVERS = ["bare", "grpcjs", "authz", "authzjs"] as const;
export type IdleServer = (typeof IDLE_SERVERS)[number];

export interface IdleCpu {
  windowMs: number;
  /** Milliseconds of CPU per second of wall time, every thread of the server process. */
  msPerSecond: Record<IdleServer, number>;
}

/**
 * Every server's CPU over one window in which none is called (after the warm-up
 * calls of targetsFor, before the rounds): what timers and background work cost
 * an idle process, which at a fixed request rate is paid on top of each call.
 */
async function idleCpu(pids: Record<IdleServer, number>, windowMs: number): Promise<IdleCpu> {
  const before = Object.fromEntries(IDLE_SERVERS.map((s) => [s, processCpuNs(pids[s])])) as Record<IdleServer, number>;
  const t0 = performance.now();
  await new Promise((res) => setTimeout(res, windowMs));
  const seconds = (performance.now() - t0) / 1000;
  const msPerSecond = Object.fromEntries(IDLE_SERVERS.map((s) => [s, (processCpuNs(pids[s]) - before[s]) / 1e6 / seconds])) as Record<IdleServer, number>;
  return { windowMs, msPerSecond };
}

interface Target {
  pid: number;
  port: number;
  path: string;
  headers: string[];
  frameFile: string;
  replyBytes: number;
}

async function measure(o: HotPathOptions, shape: LoadShape, t: Target, round: number, target: HotTarget, regime: HotRegime): Promise<HotPathRow> {
  const n = regime === "fixed" && o.fixed ? o.fixed.requests : o.requests;
  if (o.warmup > 0) {
    const w = parseH2load(await runH2load(o.h2load, t.port, o.warmup, shape, t.frameFile, undefined, t.path, t.headers));
    if (w.succeeded !== o.warmup || w.status2xx !== o.warmup) throw new Error(`${target}: warm-up had failures\n${w.raw}`);
  }
  const cpu0 = processCpuNs(t.pid);
  const r = parseH2load(await runH2load(o.h2load, t.port, n, shape, t.frameFile, undefined, t.path, t.headers));
  const cpuNs = processCpuNs(t.pid) - cpu0;
  if (r.succeeded !== n || r.status2xx !== n || r.failed !== 0 || r.errored !== 0) throw new Error(`${target}: failures\n${r.raw}`);
  // Every reply exactly the verified reply's length: no error (trailers-only) reply slipped through.
  if (r.dataBytes !== n * t.replyBytes) throw new Error(`${target}: ${r.dataBytes} DATA bytes, want ${n * t.replyBytes}\n${r.raw}`);
  const row = { round, regime, target, requests: n, cpuUsPerCall: cpuNs / 1000 / n, reqPerSec: r.reqPerSec, ratioVsBare: NaN, ratioVsHealth: NaN };
  o.log(`hotpath round ${round} ${regime} ${target}: ${row.cpuUsPerCall.toFixed(1)} µs server CPU per call, ${r.reqPerSec.toFixed(0)} req/s`);
  return row;
}

/** Each row's CPU per call against the bare server's and Health's of the same round and regime. */
function withRatios(roundRows: HotPathRow[]): void {
  const bare = roundRows.find((x) => x.target === "bare")?.cpuUsPerCall ?? NaN;
  const health = roundRows.find((x) => x.target === "health")?.cpuUsPerCall ?? NaN;
  for (const x of roundRows) {
    x.ratioVsBare = x.cpuUsPerCall / bare;
    x.ratioVsHealth = x.cpuUsPerCall / health;
  }
}

async function targetsFor(o: HotPathOptions, url: string, dir: string, stops: Array<() => Promise<void>>): Promise<Record<HotTarget, Target>> {
  const small = datasetShape(o.smallScale);
  const { key, record } = mintApiKey("hotpath-bench", ["check"], null);
  const apiKeysFile = path.join(dir, "api-keys.json");
  await writeFile(apiKeysFile, JSON.stringify([{ id: record.id, name: record.name, sha256: record.secretSha256, scopes: record.scopes, tenant_id: null }]));
  const bare = await startStackChild("bare-http2", undefined);
  stops.push(() => bare.stop());
  const plain = await startStackChild("grpc-js-no-channelz", undefined);
  stops.push(() => plain.stop());
  // Node flags as the Dockerfile runs the server (none), like the bare and plain servers: a heap limit changes the young generation and so the GC's share.
  const authz = await startAuthzChild(url, apiKeysFile, undefined, "info", true);
  stops.push(() => authz.stop());
  const authzJs = await startAuthzChild(url, apiKeysFile, undefined, "info", true, "off");
  stops.push(() => authzJs.stop());

  const q = makeChecks(small, 1000, 5).find((c) => c.expected && c.permission === "doc.read");
  if (!q) throw new Error("no allowed check in the small dataset");
  const checkReq = create(CheckRequestSchema, { subject: q.subject, permission: q.permission, resource: q.resource });
  const healthReq = create(HealthCheckRequestSchema, {});
  const health = await unaryCall(authz.port, HEALTH_PATH, HealthCheckRequestSchema, HealthCheckResponseSchema, healthReq);
  if (health.code !== grpc.status.OK || health.response.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`Health: ${health.code}`);
  const check = await unaryCall(authz.port, CHECK_PATH, CheckRequestSchema, CheckResponseSchema, checkReq, { "x-api-key": key });
  if (check.code !== grpc.status.OK || !check.response.allowed) throw new Error(`Check: grpc-status ${check.code}, allowed ${check.response.allowed}`);
  const checkJs = await unaryCall(authzJs.port, CHECK_PATH, CheckRequestSchema, CheckResponseSchema, checkReq, { "x-api-key": key });
  if (checkJs.code !== grpc.status.OK || !checkJs.response.allowed) throw new Error(`Check (grpc-js): grpc-status ${checkJs.code}`);
  const checkFrame = grpcFrame(toBinary(CheckRequestSchema, checkReq));

  const file = async (name: string, frame: Buffer) => {
    const f = path.join(dir, `${name}.bin`);
    await writeFile(f, frame);
    return f;
  };
  const healthFrame = grpcFrame(toBinary(HealthCheckRequestSchema, healthReq));
  return {
    bare: { pid: bare.pid, port: bare.port, path: HEALTH_PATH, headers: [], frameFile: await file("bare", healthFrame), replyBytes: 7 },
    grpcjs: { pid: plain.pid, port: plain.port, path: HEALTH_PATH, headers: [], frameFile: await file("grpcjs", healthFrame), replyBytes: 7 },
    health: {
      pid: authz.pid,
      port: authz.port,
      path: HEALTH_PATH,
      headers: [],
      frameFile: await file("health", healthFrame),
      replyBytes: grpcFrame(toBinary(HealthCheckResponseSchema, health.response)).byteLength,
    },
    check: {
      pid: authz.pid,
      port: authz.port,
      path: CHECK_PATH,
      headers: [`x-api-key: ${key}`],
      frameFile: await file("check", checkFrame),
      replyBytes: grpcFrame(toBinary(CheckResponseSchema, check.response)).byteLength,
    },
    checkjs: {
      pid: authzJs.pid,
      port: authzJs.port,
      path: CHECK_PATH,
      headers: [`x-api-key: ${key}`],
      frameFile: await file("checkjs", checkFrame),
      replyBytes: grpcFrame(toBinary(CheckResponseSchema, checkJs.response)).byteLength,
    },
  };
}

export async function runHotPath(o: HotPathOptions): Promise<HotPathResult> {
  const steal0 = cpuTimes();
  const shape: LoadShape = { clients: o.clients, streams: o.streams };
  const dbName = `authz_bench_${process.pid}_hotpath`;
  const url = await createDatabase(o.databaseUrl, dbName);
  const dir = await mkdtemp(path.join(os.tmpdir(), "authz-hotpath-bench-"));
  const stops: Array<() => Promise<void>> = [];
  try {
    await migrateDatabase(url);
    await loadDatasetIntoPostgres(url, datasetShape(o.smallScale));
    const targets = await targetsFor(o, url, dir, stops);
    const idle = await idleCpu({ bare: targets.bare.pid, grpcjs: targets.grpcjs.pid, authz: targets.check.pid, authzjs: targets.checkjs.pid }, IDLE_WINDOW_MS);
    o.log(`hotpath idle: ${IDLE_SERVERS.map((s) => `${s} ${idle.msPerSecond[s].toFixed(2)}`).join(", ")} ms CPU per second`);
    const rows: HotPathRow[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      for (const regime of o.fixed ? (["saturated", "fixed"] as const) : (["saturated"] as const)) {
        const load = regime === "fixed" ? { ...shape, rps: o.fixed?.rps } : shape;
        const roundRows: HotPathRow[] = [];
        for (const target of HOT_TARGETS) roundRows.push(await measure(o, load, targets[target], round, target, regime));
        withRatios(roundRows);
        rows.push(...roundRows);
      }
    }
    const commands = Object.fromEntries(
      HOT_TARGETS.map((t) => [
        t,
        h2loadCommand(o.requests, shape, targets[t].path).replace(" --log-file LOG", targets[t].headers.length ? " -H 'x-api-key: KEY'" : ""),
      ]),
    ) as Record<HotTarget, string>;
    const inprocRows = await runHotPathInProcess({ smallScale: o.smallScale, calls: o.inprocCalls, rounds: o.rounds });
    for (const r of inprocRows) o.log(`hotpath in process round ${r.round} ${r.target}: ${r.cpuUsPerCall.toFixed(2)} µs CPU per call`);
    return {
      smallScale: o.smallScale,
      requests: o.requests,
      warmup: o.warmup,
      rounds: o.rounds,
      shape,
      ...(o.fixed ? { fixed: o.fixed } : {}),
      logLevel: "info",
      commands,
      rows,
      inprocess: { calls: o.inprocCalls, rows: inprocRows },
      idle,
      stealShare: stealSince(steal0),
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await dropDatabase(o.databaseUrl, dbName);
  }
}

/** Medians over rounds per target in one regime (ratios: median of the per-round ratios). */
export function hotPathMedians(rows: HotPathRow[], regime: HotRegime = "saturated"): HotPathRow[] {
  const out: HotPathRow[] = [];
  for (const target of HOT_TARGETS) {
    const xs = rows.filter((r) => r.target === target && (r.regime ?? "saturated") === regime);
    if (xs.length === 0) continue;
    out.push({
      round: NaN,
      regime,
      target,
      requests: xs[0]?.requests ?? 0,
      cpuUsPerCall: median(xs.map((x) => x.cpuUsPerCall)),
      reqPerSec: median(xs.map((x) => x.reqPerSec)),
      ratioVsBare: median(xs.map((x) => x.ratioVsBare)),
      ratioVsHealth: median(xs.map((x) => x.ratioVsHealth)),
    });
  }
  return out;
}
