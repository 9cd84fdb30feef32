// Decision-engine benchmark (issue 3). One run measures, on the synthetic
// dataset of bench/dataset.ts:
//
//   inproc  build time and memory of buildSnapshot from generated rows; Check
//           throughput and latency against a Map.get + bit test floor; the
//           time apply() takes to re-close roles after one role edit; and
//           ListPermissions (engine.list) time for a few users.
//   pgload  cold load: loadSnapshot() from a fresh database filled by the SQL
//           loader (time, memory, and the loaded engine checked against the
//           dataset's expected decisions).
//   grpc    Check through the real server (a child process, createApp on a
//           small database) against the same server's Health/Check, by h2load.
//   lag     write -> visible on two replicas (two startLiveEngine instances,
//           each with its own change feed and connection pool).
//
// inproc and pgload run in child processes of their own (fresh heap, clean
// RSS figures, a larger heap limit); the server runs in a child process so
// h2load and the server never share an event loop.
//
// `npm run bench` (bench/run.ts) drives these phases at several dataset sizes
// (the scale curve) and next to node-casbin (bench/casbin.ts); this file's own
// entry point still runs the four parts above at one size.
//
// Run:  npm run build:bench && node dist/bench/engine.js
// Env:  BENCH_SCALE      (default 1)      dataset scale for inproc (1 = 1M users, 5M assignments)
//       BENCH_PG_SCALE   (default BENCH_SCALE) dataset scale for the Postgres cold load
//       BENCH_SMALL_SCALE (default 0.001) dataset of the grpc and lag databases
//       BENCH_ONLY       (default all)    comma-separated subset of inproc, pgload, grpc, lag
//       BENCH_CHECKS     (default 500000) checks per throughput round (3 rounds; latency: as many more)
//       BENCH_REQUESTS   (default 30000), BENCH_WARMUP (2000), BENCH_ROUNDS (2): h2load runs
//       BENCH_HEAP_MB    heap limit of the inproc/pgload children (default 70% of RAM, at most 16384)
//       DATABASE_URL     server for pgload, grpc and lag (a superuser: creates and drops databases)

import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import postgres from "postgres";

import { CheckRequestSchema, CheckResponseSchema } from "../gen/authz/v1/permission_service_pb.js";
import type { CheckResponse } from "../gen/authz/v1/permission_service_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { buildSnapshot, type EngineStats } from "../src/engine/snapshot.js";
import type { Change } from "../src/engine/rows.js";
import { createLogger } from "../src/logger.js";
import { startChangeFeed } from "../src/store/change-feed.js";
import { loadSnapshot, startLiveEngine } from "../src/store/live-engine.js";
import { migrate } from "../src/store/migrate.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import {
  type CheckQuery,
  datasetShape,
  type DatasetShape,
  datasetTables,
  floorTable,
  loadDatasetIntoPostgres,
  type LoadTiming,
  makeChecks,
  orgPermId,
  orgRoleId,
  prng,
  rowCounts,
  type RowCounts,
  runFloor,
  scaleFromEnv,
  userId,
} from "./dataset.js";
import { CHECK_QUERIES, CHECK_SEED, casbinPhase, decisionBits, type CasbinPhaseArg } from "./casbin.js";
import { envInt, fmtUs, grpcFrame, h2loadCommand, median, parseH2load, percentile, runH2load, type LoadShape } from "./server-stacks.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const HEALTH_PATH = "/grpc.health.v1.Health/Check";
const CHECK_PATH = "/authz.v1.PermissionService/Check";

export const ENGINE_PARTS = ["inproc", "pgload", "grpc", "lag"] as const;
/** Engine decisions kept for the casbin agreement check. */
export const SAMPLE_DECISIONS = 20_000;
export type EnginePart = (typeof ENGINE_PARTS)[number];

export interface EngineBenchOptions {
  scale?: number;
  pgScale?: number;
  smallScale?: number;
  databaseUrl?: string;
  parts?: readonly EnginePart[];
  checks?: number;
  latencyChecks?: number;
  edits?: number;
  lagWrites?: number;
  requests?: number;
  warmup?: number;
  rounds?: number;
  heapMb?: number;
  h2load?: string;
  log?: (line: string) => void;
}

interface Throughput {
  opsPerSec: number;
}
interface Latency {
  p50Ns: number;
  p99Ns: number;
  p999Ns: number;
  maxNs: number;
}

export interface InprocResult {
  scale: number;
  counts: RowCounts;
  stats: EngineStats;
  generateMs: number;
  buildMs: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  maxRss: number;
  /** The engine's decisions on the first SAMPLE_DECISIONS queries, one bit each (base64), for the casbin comparison. */
  sampleDecisions: string;
  checks: {
    distinct: number;
    allowedShare: number;
    mismatches: number;
    perRound: number;
    rounds: Array<{ engine: Throughput; floor: Throughput }>;
    latencySamples: number;
    engineLatency: Latency;
    floorLatency: Latency;
    timerNs: number;
  };
  reclose: Array<{ edit: string; rolesTouched: number; n: number; p50Us: number; p99Us: number; maxUs: number }>;
  recloseVerified: boolean;
  list: { n: number; medianMs: number; maxMs: number; entries: number; userOrganizations: number };
  stealShare: number;
}

export interface PgLoadResult {
  scale: number;
  counts: RowCounts;
  stats: EngineStats;
  statsMatch: boolean;
  migrateMs: number;
  loader: LoadTiming[];
  loadMs: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  maxRss: number;
  checked: number;
  mismatches: number;
  stealShare: number;
}

export interface LagResult {
  writes: number;
  fromWriteMs: { p50: number; p99: number; max: number };
  afterAckMs: { p50: number; p99: number; max: number };
  writeMs: { p50: number };
  stealShare: number;
}

export interface GrpcRow {
  round: number;
  rpc: "health" | "check";
  requests: number;
  reqPerSec: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  ratioVsHealth: number;
}

export interface GrpcResult {
  smallScale: number;
  check: { subject: string; permission: string; resource: string; replyBytes: number };
  command: { health: string; check: string };
  rows: GrpcRow[];
  stealShare: number;
}

export interface EngineBenchResult {
  machine: { nproc: number; memGiB: number; node: string; cpu: string; started: string; finished: string; loadBefore: number; loadAfter: number };
  options: { scale: number; pgScale: number; smallScale: number; parts: EnginePart[] };
  inproc?: InprocResult;
  pgload?: PgLoadResult;
  grpc?: GrpcResult;
  lag?: LagResult;
  skipped: string[];
}

// ---------------------------------------------------------------------------
// Small helpers

const gc = (): void => {
  const f = (globalThis as { gc?: () => void }).gc;
  if (f) {
    f();
    f();
  }
};

/** CPU time counters of /proc/stat (all CPUs), to report the steal share of a phase. */
export function cpuTimes(): { steal: number; total: number } {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const xs = line.trim().split(/\s+/).slice(1).map(Number);
    return { steal: xs[7] ?? 0, total: xs.slice(0, 8).reduce((a, b) => a + b, 0) };
  } catch {
    return { steal: 0, total: 0 };
  }
}
export function stealSince(t0: { steal: number; total: number }): number {
  const t1 = cpuTimes();
  const total = t1.total - t0.total;
  return total > 0 ? (t1.steal - t0.steal) / total : NaN;
}

function quantiles(xs: Float64Array | number[], ...ps: number[]): number[] {
  const s = Float64Array.from(xs).sort();
  return ps.map((p) => percentile(s as unknown as number[], p));
}

const mib = (bytes: number): string => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`);
const secs = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
const ns = (x: number): string => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} ms` : x >= 1e3 ? `${(x / 1e3).toFixed(2)} µs` : `${x.toFixed(0)} ns`);
const int = (n: number): string => Math.round(n).toLocaleString("en-US");
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : "n/a");

function dbUrl(base: string, name: string): string {
  const u = new URL(base);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  return dbUrl(adminUrl, name);
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

export async function migrateDatabase(url: string): Promise<number> {
  const db = createPostgresClient({ url, poolMax: 1, logger: createLogger("silent"), applicationName: "authz-bench" });
  const t0 = performance.now();
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
  return performance.now() - t0;
}

const indexOfId = (id: string): number => parseInt(id.slice(-12), 16);

// ---------------------------------------------------------------------------
// Child phases

export interface InprocArg {
  scale: number;
  checks: number;
  latencyChecks: number;
  edits: number;
}

function phaseInproc(arg: InprocArg): InprocResult {
  const steal0 = cpuTimes();
  const shape = datasetShape(arg.scale);
  const log = (l: string) => process.stderr.write(`  inproc: ${l}\n`);

  // Generation alone, so build time can be read net of it.
  let t = performance.now();
  let rows = 0;
  for (const it of Object.values(datasetTables(shape))) for (const _row of it) rows++;
  const generateMs = performance.now() - t;
  log(`generated ${int(rows)} rows in ${secs(generateMs)}`);

  gc();
  const before = process.memoryUsage();
  t = performance.now();
  let engine = buildSnapshot(0n, datasetTables(shape));
  const buildMs = performance.now() - t;
  gc();
  const after = process.memoryUsage();
  const maxRss = process.resourceUsage().maxRSS * 1024;
  log(`built in ${secs(buildMs)}, rss ${mib(after.rss)}, heap ${mib(after.heapUsed)}`);

  // --- Check ---------------------------------------------------------------
  const now = Date.now();
  const Q = makeChecks(shape, CHECK_QUERIES, CHECK_SEED);
  const MASK = Q.length - 1;
  let allowed = 0;
  let mismatches = 0;
  const sample: boolean[] = [];
  for (const q of Q) {
    const d = engine.check(q.subject, q.permission, q.resource, now);
    if (d.allowed) allowed++;
    if (d.allowed !== q.expected) mismatches++;
    if (sample.length < SAMPLE_DECISIONS) sample.push(d.allowed);
  }
  log(`checked ${Q.length} distinct queries: ${pct(allowed / Q.length)} allowed, ${mismatches} mismatches`);

  // The floor: one Map.get keyed by the same user ids, and a bit test.
  const floor = floorTable(shape.users);

  const runEngine = (n: number): number => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const q = Q[i & MASK] as CheckQuery;
      if (engine.check(q.subject, q.permission, q.resource, now).allowed) acc++;
    }
    return acc;
  };
  const floorRun = (n: number): number => runFloor(floor, Q, n);
  let sink = runEngine(200_000) + floorRun(200_000); // warm-up
  const timed = (fn: (n: number) => number, n: number): Throughput => {
    const t0 = process.hrtime.bigint();
    sink += fn(n);
    return { opsPerSec: n / (Number(process.hrtime.bigint() - t0) / 1e9) };
  };
  const rounds: Array<{ engine: Throughput; floor: Throughput }> = [];
  for (let r = 0; r < 3; r++) {
    const e = timed(runEngine, arg.checks);
    const f = timed(floorRun, arg.checks);
    rounds.push({ engine: e, floor: f });
    log(`round ${r + 1}: check ${int(e.opsPerSec)}/s, floor ${int(f.opsPerSec)}/s`);
  }

  // Latency: each operation timed on its own with process.hrtime.bigint().
  const M = arg.latencyChecks;
  const lat = new Float64Array(M);
  const latFloor = new Float64Array(M);
  const timer = new Float64Array(Math.min(M, 100_000));
  for (let i = 0; i < timer.length; i++) {
    const t0 = process.hrtime.bigint();
    timer[i] = Number(process.hrtime.bigint() - t0);
  }
  for (let i = 0; i < M; i++) {
    const q = Q[i & MASK] as CheckQuery;
    const t0 = process.hrtime.bigint();
    const d = engine.check(q.subject, q.permission, q.resource, now);
    lat[i] = Number(process.hrtime.bigint() - t0);
    if (d.allowed) sink++;
  }
  for (let i = 0; i < M; i++) {
    const q = Q[i & MASK] as CheckQuery;
    const t0 = process.hrtime.bigint();
    const b = floor.get(q.subject.id);
    const hit = b !== undefined && ((b[0] as number) & (1 << q.bit)) !== 0;
    latFloor[i] = Number(process.hrtime.bigint() - t0);
    if (hit) sink++;
  }
  const toLatency = (xs: Float64Array): Latency => {
    const [p50, p99, p999, max] = quantiles(xs, 50, 99, 99.9, 100) as [number, number, number, number];
    return { p50Ns: p50, p99Ns: p99, p999Ns: p999, maxNs: max };
  };
  const [timerNs] = quantiles(timer, 50) as [number];

  // --- Re-closure after one edit ---------------------------------------------
  // viewer (role 4) is the root of each chain: a grant on it re-closes all 5
  // roles; removing or adding the member -> viewer edge re-closes member,
  // editor, admin and owner (4 roles).
  let rev = 1n;
  const editRand = prng(99);
  const samples = { rpInsert: [] as number[], rpDelete: [] as number[], edgeDelete: [] as number[], edgeInsert: [] as number[] };
  const timedApply = (changes: Change[], into: number[]): void => {
    const t0 = process.hrtime.bigint();
    engine = engine.apply(changes, rev++);
    into.push(Number(process.hrtime.bigint() - t0) / 1e3);
  };
  // Verification on one real query: a non-owner's org.delete on its own organization turns allowed by the grant on viewer.
  const probe = Q.find((q) => q.permission === "org.delete" && !q.expected && engine.check(q.subject, "doc.read", q.resource, now).allowed);
  let recloseVerified = false;
  for (let i = 0; i < arg.edits; i++) {
    const o = i === 0 && probe ? indexOfId(probe.resource.id) : Math.floor(editRand() * shape.orgs);
    const grant = { role_id: orgRoleId(o, 4), permission_id: orgPermId(o, 9) };
    timedApply([{ table: "role_permissions", op: "INSERT", oldRow: null, newRow: grant }], samples.rpInsert);
    const during = i === 0 && probe ? engine.check(probe.subject, probe.permission, probe.resource, now).allowed : false;
    timedApply([{ table: "role_permissions", op: "DELETE", oldRow: grant, newRow: null }], samples.rpDelete);
    if (i === 0 && probe) recloseVerified = during && !engine.check(probe.subject, probe.permission, probe.resource, now).allowed;
    const edge = { role_id: orgRoleId(o, 3), parent_role_id: orgRoleId(o, 4) };
    timedApply([{ table: "role_inheritance", op: "DELETE", oldRow: edge, newRow: null }], samples.edgeDelete);
    timedApply([{ table: "role_inheritance", op: "INSERT", oldRow: null, newRow: edge }], samples.edgeInsert);
  }
  let after2 = 0;
  for (let i = 0; i < 20_000; i++) {
    const q = Q[i] as CheckQuery;
    if (engine.check(q.subject, q.permission, q.resource, now).allowed !== q.expected) after2++;
  }
  if (after2 > 0) throw new Error(`${after2} mismatches after reverting the edits`);
  const summary = (edit: string, rolesTouched: number, xs: number[]) => {
    const [p50, p99, max] = quantiles(xs, 50, 99, 100) as [number, number, number];
    return { edit, rolesTouched, n: xs.length, p50Us: p50, p99Us: p99, maxUs: max };
  };
  const reclose = [
    summary("role_permissions INSERT on the chain's root (viewer)", 5, samples.rpInsert),
    summary("role_permissions DELETE on the chain's root (viewer)", 5, samples.rpDelete),
    summary("role_inheritance DELETE member -> viewer", 4, samples.edgeDelete),
    summary("role_inheritance INSERT member -> viewer", 4, samples.edgeInsert),
  ];
  log(`re-closure p50: ${reclose.map((r) => `${r.p50Us.toFixed(1)} µs`).join(", ")}`);

  // --- ListPermissions (engine.list) for a few users ---------------------------
  const listMs: number[] = [];
  let entries = 0;
  for (let i = 0; i < 20; i++) {
    const q = Q[i * 97] as CheckQuery;
    const t0 = performance.now();
    const l = engine.list(q.subject, undefined, now);
    listMs.push(performance.now() - t0);
    entries += l?.entries.length ?? 0;
  }
  const [listMedian, listMax] = quantiles(listMs, 50, 100) as [number, number];
  log(`list: median ${listMedian.toFixed(2)} ms`);
  if (sink === -1) log("unreachable");

  return {
    scale: arg.scale,
    counts: rowCounts(shape),
    stats: engine.stats(),
    sampleDecisions: decisionBits(sample),
    generateMs,
    buildMs,
    before,
    after,
    maxRss,
    checks: {
      distinct: Q.length,
      allowedShare: allowed / Q.length,
      mismatches,
      perRound: arg.checks,
      rounds,
      latencySamples: M,
      engineLatency: toLatency(lat),
      floorLatency: toLatency(latFloor),
      timerNs,
    },
    reclose,
    recloseVerified,
    list: { n: listMs.length, medianMs: listMedian, maxMs: listMax, entries, userOrganizations: rowCounts(shape).user_organizations },
    stealShare: stealSince(steal0),
  };
}

export interface PgLoadArg {
  url: string;
  scale: number;
}

/** A local process's user + system CPU in ms (/proc/<pid>/stat, 100 ticks a second); undefined when unreadable. */
function backendCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

async function phasePgLoad(arg: PgLoadArg): Promise<Omit<PgLoadResult, "migrateMs" | "loader">> {
  const steal0 = cpuTimes();
  const shape = datasetShape(arg.scale);
  const db = createPostgresClient({ url: arg.url, poolMax: 1, logger: createLogger("silent"), applicationName: "authz-bench-load" });
  try {
    // One pooled connection: the backend that serves loadSnapshot's transaction; its CPU from /proc (same machine) when readable.
    const [backend] = await db.query<{ pid: number }>("select pg_backend_pid() as pid");
    const pgCpu0 = backendCpuMs(backend?.pid);
    gc();
    const before = process.memoryUsage();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const engine = await loadSnapshot(db);
    const loadMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const pgCpu1 = backendCpuMs(backend?.pid);
    process.stderr.write(
      `  pgload: loadSnapshot CPU: node ${secs((cpu.user + cpu.system) / 1000)}, Postgres backend ${pgCpu0 === undefined || pgCpu1 === undefined ? "n/a" : secs(pgCpu1 - pgCpu0)}\n`,
    );
    gc();
    const after = process.memoryUsage();
    const maxRss = process.resourceUsage().maxRSS * 1024;
    const counts = rowCounts(shape);
    const stats = engine.stats();
    const statsMatch = stats.roles === counts.roles && stats.permissions === counts.permissions && stats.assignments === counts.role_assignments;
    const now = Date.now();
    const Q = makeChecks(shape, 20_000, 11);
    let mismatches = 0;
    for (const q of Q) if (engine.check(q.subject, q.permission, q.resource, now).allowed !== q.expected) mismatches++;
    process.stderr.write(`  pgload: loadSnapshot ${secs(loadMs)}, rss ${mib(after.rss)}, ${mismatches} mismatches in ${Q.length} checks\n`);
    return { scale: arg.scale, counts, stats, statsMatch, loadMs, before, after, maxRss, checked: Q.length, mismatches, stealShare: stealSince(steal0) };
  } finally {
    await db.close();
  }
}

/** The real server on a database: createApp, gRPC listener on an ephemeral port, log level warn. */
export interface ServeArg {
  url: string;
  apiKeysFile: string;
  /** Rate limits in this Redis (default: the in-process store). */
  redisUrl?: string;
  /** Log level (default warn); the log goes to /dev/null through the shipped logger. */
  logLevel?: "warn" | "info";
  /** AUTHZ_GRPC_LEAN (default: the shipped default, on). */
  grpcLean?: "on" | "off";
}

async function phaseServe(arg: ServeArg): Promise<void> {
  const { loadConfig } = await import("../src/config.js");
  const { createApp } = await import("../src/main.js");
  const app = createApp(
    loadConfig({
      DATABASE_URL: arg.url,
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_LOG_LEVEL: arg.logLevel ?? "warn",
      AUTHZ_API_KEYS_FILE: arg.apiKeysFile,
      ...(arg.grpcLean ? { AUTHZ_GRPC_LEAN: arg.grpcLean } : {}),
      ...(arg.redisUrl ? { REDIS_URL: arg.redisUrl, AUTHZ_REDIS_KEY_PREFIX: `authz:bench:${process.pid}` } : {}),
    }),
    arg.logLevel === "info" ? createLogger("info", pino.destination("/dev/null")) : createLogger("warn", pino.destination(2)),
  );
  const { grpcPort, httpPort } = await app.listen();
  await app.ready;
  const stop = (): void => {
    const t = setTimeout(() => process.exit(0), 3000);
    t.unref();
    void app.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("disconnect", stop);
  process.send?.({ type: "listening", port: grpcPort, httpPort });
}

type ChildMsg = { type: "result"; data: unknown } | { type: "listening"; port: number; httpPort?: number } | { type: "error"; message: string };

async function childMain(phase: string, rawArg: string): Promise<void> {
  const arg = JSON.parse(rawArg) as unknown;
  try {
    if (phase === "serve") {
      await phaseServe(arg as ServeArg);
      return;
    }
    const data =
      phase === "inproc" ? phaseInproc(arg as InprocArg) : phase === "casbin" ? await casbinPhase(arg as CasbinPhaseArg) : await phasePgLoad(arg as PgLoadArg);
    process.send?.({ type: "result", data } satisfies ChildMsg, () => process.exit(0));
  } catch (err) {
    process.send?.({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies ChildMsg, () => process.exit(1));
  }
}

function forkPhase(phase: string, arg: unknown, heapMb: number | undefined): ChildProcess {
  return fork(THIS_FILE, ["--phase", phase, JSON.stringify(arg)], {
    execArgv: heapMb === undefined ? [] : [`--max-old-space-size=${heapMb}`, "--expose-gc"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

export function runPhase<T>(phase: "inproc" | "pgload" | "casbin", arg: unknown, heapMb: number, timeoutMs: number): Promise<T> {
  const child = forkPhase(phase, arg, heapMb);
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${phase}: no result within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    child.on("message", (raw) => {
      const m = raw as ChildMsg;
      done = true;
      clearTimeout(timer);
      if (m.type === "result") resolve(m.data as T);
      else reject(new Error(`${phase}: ${m.type === "error" ? m.message : "unexpected message"}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (!done) reject(new Error(`${phase}: child exited (${code ?? signal}) without a result`));
    });
  });
}

/** The authz server (createApp) in a child process; resolves once it serves. */
export async function startServerChild(
  url: string,
  apiKeysFile: string,
  redisUrl?: string,
  logLevel?: ServeArg["logLevel"],
  /** Node as the Dockerfile runs it (no heap flags), rather than with the phases' 1 GiB heap limit and --expose-gc. */
  asShipped = false,
  grpcLean?: ServeArg["grpcLean"],
): Promise<{ port: number; httpPort: number; pid: number; stop(): Promise<void> }> {
  const arg = { url, apiKeysFile, ...(redisUrl ? { redisUrl } : {}), ...(logLevel ? { logLevel } : {}), ...(grpcLean ? { grpcLean } : {}) } satisfies ServeArg;
  const child = forkPhase("serve", arg, asShipped ? undefined : 1024);
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("authz server child did not report a port within 30 s"));
    }, 30_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`authz server child exited early (code ${code})`));
    });
    child.on("message", (raw) => {
      const m = raw as ChildMsg;
      clearTimeout(timer);
      if (m.type !== "listening") {
        reject(new Error(`authz server child: ${m.type === "error" ? m.message : "unexpected message"}`));
        return;
      }
      resolve({
        port: m.port,
        httpPort: m.httpPort ?? 0,
        pid: child.pid as number,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(killer);
        },
      });
    });
  });
}

// ---------------------------------------------------------------------------
// gRPC: a real client call, then h2load

export function unaryCall<I extends DescMessage, O extends DescMessage>(
  port: number,
  rpcPath: string,
  input: I,
  output: O,
  request: MessageShape<I>,
  headers: Record<string, string> = {},
): Promise<{ code: grpc.status; response: MessageShape<O> }> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    let response: MessageShape<O> | undefined;
    let code: grpc.status | undefined;
    const settle = () => {
      if (response === undefined || code === undefined) return;
      client.close();
      resolve({ code, response });
    };
    const call = client.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
      rpcPath,
      (m) => Buffer.from(toBinary(input, m)),
      (b) => fromBinary(output, b),
      request,
      metadata,
      { deadline: Date.now() + 5000 },
      (err, value) => {
        if (err) {
          client.close();
          reject(new Error(`${rpcPath}: ${err.message}`));
          return;
        }
        response = value;
        settle();
      },
    );
    call.on("status", (s: grpc.StatusObject) => {
      code = s.code;
      settle();
    });
  });
}

async function benchGrpc(
  url: string,
  small: DatasetShape,
  opts: Required<Pick<EngineBenchOptions, "requests" | "warmup" | "rounds" | "h2load">>,
  log: (l: string) => void,
): Promise<GrpcResult> {
  const steal0 = cpuTimes();
  const q = makeChecks(small, 1000, 5).find((c) => c.expected && c.permission === "doc.read");
  if (!q) throw new Error("no allowed check in the small dataset");
  const checkRequest = create(CheckRequestSchema, { subject: q.subject, permission: q.permission, resource: q.resource });
  const shape: LoadShape = { clients: 10, streams: 10 };
  const dir = await mkdtemp(path.join(os.tmpdir(), "authz-engine-bench-"));
  // Check needs a credential (Health does not): an API key with the check scope, from a key file.
  const { key, record } = mintApiKey("engine-bench", ["check"], null);
  const apiKeysFile = path.join(dir, "api-keys.json");
  await writeFile(apiKeysFile, JSON.stringify([{ id: record.id, name: record.name, sha256: record.secretSha256, scopes: record.scopes, tenant_id: null }]));
  const server = await startServerChild(url, apiKeysFile);
  const rows: GrpcRow[] = [];
  try {
    const health = await unaryCall(server.port, HEALTH_PATH, HealthCheckRequestSchema, HealthCheckResponseSchema, create(HealthCheckRequestSchema, {}));
    if (health.code !== grpc.status.OK || health.response.status !== HealthCheckResponse_ServingStatus.SERVING) {
      throw new Error(`health: grpc-status ${health.code}, status ${health.response.status}`);
    }
    const check = await unaryCall(server.port, CHECK_PATH, CheckRequestSchema, CheckResponseSchema, checkRequest, { "x-api-key": key });
    const reply: CheckResponse = check.response;
    if (check.code !== grpc.status.OK || !reply.allowed) throw new Error(`Check: grpc-status ${check.code}, allowed ${reply.allowed}`);
    log(`grpc: verified Check (allowed, revision ${reply.revision}) and Health (SERVING) with a grpc-js client`);
    const targets = {
      health: {
        path: HEALTH_PATH,
        headers: [] as string[],
        frame: grpcFrame(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {}))),
        reply: grpcFrame(toBinary(HealthCheckResponseSchema, health.response)).byteLength,
      },
      check: {
        path: CHECK_PATH,
        headers: [`x-api-key: ${key}`],
        frame: grpcFrame(toBinary(CheckRequestSchema, checkRequest)),
        reply: grpcFrame(toBinary(CheckResponseSchema, reply)).byteLength,
      },
    };
    for (const [name, t] of Object.entries(targets)) await writeFile(path.join(dir, `${name}.bin`), t.frame);
    for (let round = 1; round <= opts.rounds; round++) {
      const roundRows: GrpcRow[] = [];
      for (const rpc of ["health", "check"] as const) {
        const t = targets[rpc];
        const frameFile = path.join(dir, `${rpc}.bin`);
        if (opts.warmup > 0) {
          const w = parseH2load(await runH2load(opts.h2load, server.port, opts.warmup, shape, frameFile, undefined, t.path, t.headers));
          if (w.succeeded !== opts.warmup || w.status2xx !== opts.warmup) throw new Error(`${rpc}: warm-up had failures\n${w.raw}`);
        }
        const logFile = path.join(dir, `${rpc}-${round}.log`);
        const r = parseH2load(await runH2load(opts.h2load, server.port, opts.requests, shape, frameFile, logFile, t.path, t.headers));
        if (r.succeeded !== opts.requests || r.status2xx !== opts.requests || r.failed !== 0 || r.errored !== 0) throw new Error(`${rpc}: failures\n${r.raw}`);
        // Every reply must be exactly the verified one (same length: one framed message).
        if (r.dataBytes !== opts.requests * t.reply) throw new Error(`${rpc}: ${r.dataBytes} DATA bytes, want ${opts.requests * t.reply}\n${r.raw}`);
        const lat: number[] = [];
        for (const line of (await readFile(logFile, "utf8")).split("\n")) {
          const cols = line.split("\t");
          if (cols.length >= 3 && cols[1] !== "-1") lat.push(Number(cols[2]));
        }
        lat.sort((a, b) => a - b);
        const row: GrpcRow = {
          round,
          rpc,
          requests: opts.requests,
          reqPerSec: r.reqPerSec,
          meanUs: r.meanUs,
          p50Us: percentile(lat, 50),
          p99Us: percentile(lat, 99),
          ratioVsHealth: NaN,
        };
        roundRows.push(row);
        log(`grpc round ${round} ${rpc}: ${int(r.reqPerSec)} req/s, p50 ${fmtUs(row.p50Us)}, p99 ${fmtUs(row.p99Us)}`);
      }
      const h = roundRows.find((r) => r.rpc === "health");
      for (const r of roundRows) r.ratioVsHealth = h ? r.reqPerSec / h.reqPerSec : NaN;
      rows.push(...roundRows);
    }
    // Still the same answer after the load.
    const again = await unaryCall(server.port, CHECK_PATH, CheckRequestSchema, CheckResponseSchema, checkRequest, { "x-api-key": key });
    if (again.code !== grpc.status.OK || !again.response.allowed) throw new Error("Check changed its answer during the run");
    return {
      smallScale: small.scale,
      check: { subject: `user:${q.subject.id}`, permission: q.permission, resource: `organization:${q.resource.id}`, replyBytes: targets.check.reply },
      command: {
        health: h2loadCommand(opts.requests, shape, HEALTH_PATH),
        check: h2loadCommand(opts.requests, shape, CHECK_PATH).replace(" --log-file", " -H 'x-api-key: KEY' --log-file"),
      },
      rows,
      stealShare: stealSince(steal0),
    };
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Write -> visible on two replicas

export async function benchLag(url: string, small: DatasetShape, writes: number, log: (l: string) => void): Promise<LagResult> {
  const steal0 = cpuTimes();
  const logger = createLogger("warn", pino.destination(2));
  const replicas = await Promise.all(
    ["a", "b"].map(async (name) => {
      const db = createPostgresClient({ url, poolMax: 4, logger, applicationName: `authz-bench-replica-${name}` });
      const feed = await startChangeFeed(db, logger, 5000);
      const live = await startLiveEngine(db, feed, logger);
      return { db, feed, live };
    }),
  );
  const writer = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const revision = async () => BigInt((await writer.unsafe<Array<{ r: string }>>("select revision::text as r from authz_revision"))[0]?.r ?? "0");
    const base = await revision();
    const fromWrite: number[] = [];
    const afterAck: number[] = [];
    const writeMs: number[] = [];
    for (let i = 0; i < writes; i++) {
      // Users from the end of the range, so the gRPC run's subject is never touched.
      const uid = userId(small.users - 1 - (i % small.users));
      const target = base + BigInt(i + 1);
      const t0 = performance.now();
      await writer.unsafe("update users set locked = not locked where id = $1", [uid]);
      const t1 = performance.now();
      const t2 = await until(() => replicas.every((r) => r.live.current().revision >= target), 5000);
      if (t2 === undefined) throw new Error(`write ${i} (revision ${target}) not visible on both replicas within 5 s`);
      const committed = await revision();
      if (committed !== target) throw new Error(`write ${i}: database revision ${committed}, expected ${target} (another writer?)`);
      fromWrite.push(t2 - t0);
      afterAck.push(Math.max(0, t2 - t1));
      writeMs.push(t1 - t0);
      await new Promise((r) => setTimeout(r, 2));
    }
    const [a50, a99, aMax] = quantiles(fromWrite, 50, 99, 100) as [number, number, number];
    const [b50, b99, bMax] = quantiles(afterAck, 50, 99, 100) as [number, number, number];
    log(`lag: p50 ${a50.toFixed(2)} ms, p99 ${a99.toFixed(2)} ms from the start of the write`);
    return {
      writes,
      fromWriteMs: { p50: a50, p99: a99, max: aMax },
      afterAckMs: { p50: b50, p99: b99, max: bMax },
      writeMs: { p50: median(writeMs) },
      stealShare: stealSince(steal0),
    };
  } finally {
    for (const r of replicas) {
      r.live.stop();
      await r.feed.stop();
      await r.db.close();
    }
    await writer.end({ timeout: 5 });
  }
}

/** Resolves with the time the predicate first held, checked once per event-loop turn; undefined on timeout. */
function until(pred: () => boolean, timeoutMs: number): Promise<number | undefined> {
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolve) => {
    const tick = () => {
      const t = performance.now();
      if (pred()) resolve(t);
      else if (t > deadline) resolve(undefined);
      else setImmediate(tick);
    };
    tick();
  });
}

// ---------------------------------------------------------------------------
// Driver

function partsFromEnv(): EnginePart[] {
  const raw = process.env["BENCH_ONLY"];
  if (!raw || raw.trim() === "") return [...ENGINE_PARTS];
  const names = raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.includes("engine")) return [...ENGINE_PARTS];
  return ENGINE_PARTS.filter((p) => names.includes(p));
}

export async function runEngineBench(opts: EngineBenchOptions = {}): Promise<EngineBenchResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const scale = opts.scale ?? scaleFromEnv("BENCH_SCALE", 1);
  const pgScale = opts.pgScale ?? scaleFromEnv("BENCH_PG_SCALE", scale);
  const smallScale = opts.smallScale ?? scaleFromEnv("BENCH_SMALL_SCALE", 0.001);
  const parts = [...(opts.parts ?? partsFromEnv())];
  const databaseUrl = opts.databaseUrl ?? process.env["DATABASE_URL"];
  const heapMb = opts.heapMb ?? envInt("BENCH_HEAP_MB", Math.min(16384, Math.floor((os.totalmem() / 2 ** 20) * 0.7)));
  const h2load = {
    requests: opts.requests ?? envInt("BENCH_REQUESTS", 30000),
    warmup: opts.warmup ?? envInt("BENCH_WARMUP", 2000),
    rounds: opts.rounds ?? envInt("BENCH_ROUNDS", 2),
    h2load: opts.h2load ?? process.env["H2LOAD"] ?? "/usr/bin/h2load",
  };
  const result: EngineBenchResult = {
    machine: {
      nproc: os.availableParallelism(),
      memGiB: os.totalmem() / 2 ** 30,
      node: process.version,
      cpu: os.cpus()[0]?.model ?? "unknown",
      started: new Date().toISOString(),
      finished: "",
      loadBefore: os.loadavg()[0] ?? NaN,
      loadAfter: NaN,
    },
    options: { scale, pgScale, smallScale, parts },
    skipped: [],
  };

  if (parts.includes("inproc")) {
    log(`engine bench: in-process at scale ${scale}`);
    const arg: InprocArg = {
      scale,
      checks: opts.checks ?? envInt("BENCH_CHECKS", 500_000),
      latencyChecks: opts.latencyChecks ?? envInt("BENCH_CHECKS", 500_000),
      edits: opts.edits ?? 200,
    };
    result.inproc = await runPhase<InprocResult>("inproc", arg, heapMb, 30 * 60_000);
  }

  const needsDb = parts.filter((p) => p !== "inproc");
  if (needsDb.length > 0 && !databaseUrl) {
    result.skipped.push(`${needsDb.join(", ")}: DATABASE_URL is not set`);
    log(`engine bench: skipping ${needsDb.join(", ")} (no DATABASE_URL)`);
  } else if (databaseUrl) {
    if (parts.includes("pgload")) {
      const name = `authz_bench_${process.pid}`;
      const url = await createDatabase(databaseUrl, name);
      try {
        log(`engine bench: Postgres cold load at scale ${pgScale} (database ${name})`);
        const migrateMs = await migrateDatabase(url);
        const loader = await loadDatasetIntoPostgres(url, datasetShape(pgScale), log);
        const r = await runPhase<Omit<PgLoadResult, "migrateMs" | "loader">>("pgload", { url, scale: pgScale } satisfies PgLoadArg, heapMb, 30 * 60_000);
        result.pgload = { ...r, migrateMs, loader };
      } finally {
        await dropDatabase(databaseUrl, name);
      }
    }
    if (parts.includes("grpc") || parts.includes("lag")) {
      const name = `authz_bench_${process.pid}_small`;
      const url = await createDatabase(databaseUrl, name);
      const small = datasetShape(smallScale);
      try {
        await migrateDatabase(url);
        await loadDatasetIntoPostgres(url, small);
        if (parts.includes("grpc")) {
          log(`engine bench: gRPC Check vs Health on the server (dataset scale ${smallScale})`);
          result.grpc = await benchGrpc(url, small, h2load, log);
        }
        if (parts.includes("lag")) {
          log("engine bench: write -> visible on two replicas");
          result.lag = await benchLag(url, small, opts.lagWrites ?? 200, log);
        }
      } finally {
        await dropDatabase(databaseUrl, name);
      }
    }
  }
  result.machine.finished = new Date().toISOString();
  result.machine.loadAfter = os.loadavg()[0] ?? NaN;
  return result;
}

// ---------------------------------------------------------------------------
// Markdown

function countsLine(c: RowCounts): string {
  return (
    `${int(c.users)} users, ${int(c.organizations)} organizations, ${int(c.tenants)} tenants, ${int(c.roles)} roles, ` +
    `${int(c.permissions)} permissions, ${int(c.role_permissions)} role_permissions, ${int(c.role_inheritance)} role_inheritance, ` +
    `${int(c.role_assignments)} role_assignments, ${int(c.user_organizations)} user_organizations`
  );
}

export function formatEngineBench(r: EngineBenchResult): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(
    `Machine: ${m.nproc} vCPU (${m.cpu}), ${m.memGiB.toFixed(1)} GiB RAM, node ${m.node}; run ${m.started} .. ${m.finished}; ` +
      `1-minute load average ${m.loadBefore.toFixed(2)} before the run, ${m.loadAfter.toFixed(2)} after.`,
  );
  out.push(`Scales: in-process ${r.options.scale}, Postgres cold load ${r.options.pgScale}, gRPC and lag database ${r.options.smallScale}.`);
  for (const s of r.skipped) out.push(`Skipped: ${s}.`);
  out.push("");

  const ip = r.inproc;
  if (ip) {
    out.push(`### Build in process (scale ${ip.scale})`);
    out.push("");
    out.push(`Dataset: ${countsLine(ip.counts)}.`);
    out.push("");
    out.push("| step | time | RSS | heap used |");
    out.push("|---|---:|---:|---:|");
    out.push(`| generate the rows only (no engine) | ${secs(ip.generateMs)} | | |`);
    out.push(`| before build (after gc) | | ${mib(ip.before.rss)} | ${mib(ip.before.heapUsed)} |`);
    out.push(`| buildEngine from the generated rows (incl. generation) | ${secs(ip.buildMs)} | ${mib(ip.after.rss)} | ${mib(ip.after.heapUsed)} |`);
    out.push(
      `| delta of the build (after gc) | ${secs(ip.buildMs - ip.generateMs)} net of generation | ${mib(ip.after.rss - ip.before.rss)} | ${mib(ip.after.heapUsed - ip.before.heapUsed)} |`,
    );
    out.push("");
    out.push(
      `Engine stats: ${int(ip.stats.roles)} roles, ${int(ip.stats.permissions)} permissions, ${int(ip.stats.assignments)} assignments, ${int(ip.stats.subjects)} subjects with active grants. Peak RSS of the process ${mib(ip.maxRss)}. CPU steal during the phase: ${pct(ip.stealShare)}.`,
    );
    out.push("");
    const c = ip.checks;
    out.push(`### Check in process (scale ${ip.scale})`);
    out.push("");
    out.push(
      `${int(c.distinct)} distinct random checks (55% an organization permission on one of the user's organizations, 20% a global permission there, ` +
        `25% an organization permission on a random organization), cycled; ${pct(c.allowedShare)} allowed; ` +
        `${c.mismatches} mismatches against the dataset's expected decisions. Floor: \`Map.get(subjectId)\` on a map with one entry per user, ` +
        `then a bit test on the Uint32Array it holds, over the same query array. Throughput: ${int(c.perRound)} operations per round, rounds interleaved; ` +
        `latency: ${int(c.latencySamples)} operations each timed alone with \`process.hrtime.bigint()\` (a back-to-back timer pair reads ${ns(c.timerNs)}, included).`,
    );
    out.push("");
    out.push("| round | engine.check ops/s | floor ops/s | floor / check |");
    out.push("|---:|---:|---:|---:|");
    c.rounds.forEach((x, i) =>
      out.push(`| ${i + 1} | ${int(x.engine.opsPerSec)} | ${int(x.floor.opsPerSec)} | ${(x.floor.opsPerSec / x.engine.opsPerSec).toFixed(1)}x |`),
    );
    out.push(
      `| median | ${int(median(c.rounds.map((x) => x.engine.opsPerSec)))} | ${int(median(c.rounds.map((x) => x.floor.opsPerSec)))} | ` +
        `${median(c.rounds.map((x) => x.floor.opsPerSec / x.engine.opsPerSec)).toFixed(1)}x |`,
    );
    out.push("");
    out.push("| operation | p50 | p99 | p99.9 | max |");
    out.push("|---|---:|---:|---:|---:|");
    const lrow = (name: string, l: Latency) => out.push(`| ${name} | ${ns(l.p50Ns)} | ${ns(l.p99Ns)} | ${ns(l.p999Ns)} | ${ns(l.maxNs)} |`);
    lrow("engine.check", c.engineLatency);
    lrow("floor (Map.get + bit test)", c.floorLatency);
    out.push("");
    out.push(`### Re-closure after one role edit (scale ${ip.scale})`);
    out.push("");
    out.push(
      `\`engine.apply([change], revision)\` on the built engine, each edit on a random organization's chain, timed alone; the grant is removed and the edge restored after each measurement (the check mix still matches afterwards). Verified on one real check: the grant on viewer made a non-owner's \`org.delete\` allowed and its removal denied it again: ${ip.recloseVerified ? "yes" : "NO"}.`,
    );
    out.push("");
    out.push("| edit | roles re-closed | n | p50 | p99 | max |");
    out.push("|---|---:|---:|---:|---:|---:|");
    for (const x of ip.reclose)
      out.push(`| ${x.edit} | ${x.rolesTouched} | ${x.n} | ${x.p50Us.toFixed(1)} µs | ${x.p99Us.toFixed(1)} µs | ${x.maxUs.toFixed(1)} µs |`);
    out.push("");
    out.push(
      `ListPermissions in process (\`engine.list(user, undefined, now)\`, ${ip.list.n} users, ${ip.list.entries} entries in all, with ${int(ip.list.userOrganizations)} user_organizations rows loaded): median ${ip.list.medianMs.toFixed(2)} ms, max ${ip.list.maxMs.toFixed(2)} ms.`,
    );
    out.push("");
  }

  const pg = r.pgload;
  if (pg) {
    out.push(`### Cold load from Postgres (scale ${pg.scale})`);
    out.push("");
    out.push(
      `Dataset: ${countsLine(pg.counts)}. Fresh database, \`migrate()\` (${secs(pg.migrateMs)}), then the SQL loader (one session, \`session_replication_role = replica\`, secondary indexes built after the insert, \`vacuum analyze\`):`,
    );
    out.push("");
    out.push("| loader step | rows | time |");
    out.push("|---|---:|---:|");
    for (const t of pg.loader) out.push(`| ${t.step} | ${t.rows ? int(t.rows) : ""} | ${secs(t.ms)} |`);
    out.push(`| total | | ${secs(pg.loader.reduce((a, t) => a + t.ms, 0))} |`);
    out.push("");
    out.push("| `loadSnapshot(db)` in a fresh process | time | RSS | heap used |");
    out.push("|---|---:|---:|---:|");
    out.push(`| before (connected, after gc) | | ${mib(pg.before.rss)} | ${mib(pg.before.heapUsed)} |`);
    out.push(`| after the load (after gc) | ${secs(pg.loadMs)} | ${mib(pg.after.rss)} | ${mib(pg.after.heapUsed)} |`);
    out.push(`| delta | | ${mib(pg.after.rss - pg.before.rss)} (peak ${mib(pg.maxRss - pg.before.rss)}) | ${mib(pg.after.heapUsed - pg.before.heapUsed)} |`);
    out.push("");
    out.push(
      `Loaded engine: counts ${pg.statsMatch ? "match" : "DO NOT match"} the generator (${int(pg.stats.roles)} roles, ${int(pg.stats.permissions)} permissions, ${int(pg.stats.assignments)} assignments); ${pg.mismatches} mismatches in ${int(pg.checked)} random checks against the expected decisions. CPU steal during the load: ${pct(pg.stealShare)}.`,
    );
    out.push("");
  }

  const g = r.grpc;
  if (g) {
    out.push(`### Check over gRPC against the same server's Health/Check (dataset scale ${g.smallScale})`);
    out.push("");
    out.push(
      `The server (\`createApp\`, Postgres, log level warn, authentication on as shipped: Check carries an API key with the check scope from ` +
        `\`AUTHZ_API_KEYS_FILE\`, Health needs none) in a child process; both RPCs verified first with a grpc-js client (Check: allowed, grpc-status 0), ` +
        `every measured reply required to have exactly the verified length (${g.check.replyBytes} DATA bytes for Check). Check request: ` +
        `${g.check.subject} \`${g.check.permission}\` on ${g.check.resource} (minimize_latency, no explain). Load: \`${g.command.check}\` ` +
        `(and the same without the key for \`${HEALTH_PATH}\`), each after a warm-up, interleaved per round. CPU steal: ${pct(g.stealShare)}.`,
    );
    out.push("");
    out.push("| round | RPC | req/s | mean | p50 | p99 | ratio vs Health |");
    out.push("|---:|---|---:|---:|---:|---:|---:|");
    const gRounds = new Set(g.rows.map((x) => x.round)).size;
    const gRows = [...g.rows];
    if (gRounds > 1) {
      for (const rpc of ["health", "check"] as const) {
        const xs = g.rows.filter((x) => x.rpc === rpc);
        gRows.push({
          round: NaN,
          rpc,
          requests: xs[0]?.requests ?? 0,
          reqPerSec: median(xs.map((x) => x.reqPerSec)),
          meanUs: median(xs.map((x) => x.meanUs)),
          p50Us: median(xs.map((x) => x.p50Us)),
          p99Us: median(xs.map((x) => x.p99Us)),
          ratioVsHealth: median(xs.map((x) => x.ratioVsHealth)),
        });
      }
    }
    for (const x of gRows) {
      out.push(
        `| ${Number.isNaN(x.round) ? "median" : x.round} | ${x.rpc === "health" ? "grpc.health.v1.Health/Check" : "authz.v1.PermissionService/Check"} | ${int(x.reqPerSec)} | ${fmtUs(x.meanUs)} | ${fmtUs(x.p50Us)} | ${fmtUs(x.p99Us)} | ${x.ratioVsHealth.toFixed(2)} |`,
      );
    }
    out.push("");
  }

  const l = r.lag;
  if (l) {
    out.push(`### Write -> visible on two replicas (dataset scale ${r.options.smallScale})`);
    out.push("");
    out.push(
      `Two \`startLiveEngine\` instances in one process, each with its own \`startChangeFeed\` and postgres.js pool; ${l.writes} sequential writes ` +
        `(\`update users set locked = not locked where id = $1\`, autocommit) from a third connection; for each, the time until both ` +
        `replicas' \`engine.revision\` reached the write's revision (checked every event-loop turn; the revision then read back from \`authz_revision\`). ` +
        `Median write round trip ${l.writeMs.p50.toFixed(2)} ms. CPU steal: ${pct(l.stealShare)}.`,
    );
    out.push("");
    out.push("| measured from | p50 | p99 | max |");
    out.push("|---|---:|---:|---:|");
    out.push(`| the start of the write | ${l.fromWriteMs.p50.toFixed(2)} ms | ${l.fromWriteMs.p99.toFixed(2)} ms | ${l.fromWriteMs.max.toFixed(2)} ms |`);
    out.push(
      `| the commit acknowledged to the writer | ${l.afterAckMs.p50.toFixed(2)} ms | ${l.afterAckMs.p99.toFixed(2)} ms | ${l.afterAckMs.max.toFixed(2)} ms |`,
    );
    out.push("");
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------
// Entry points

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;

if (isMain) {
  const phaseIdx = process.argv.indexOf("--phase");
  if (phaseIdx !== -1) {
    await childMain(process.argv[phaseIdx + 1] ?? "", process.argv[phaseIdx + 2] ?? "{}");
  } else {
    const r = await runEngineBench();
    process.stdout.write(`## Decision engine\n\n${formatEngineBench(r)}\n`);
  }
}
