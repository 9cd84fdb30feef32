// Peers side by side (issue 13): authz and the Cerbos server from npm, one core each, same run.
//
// Both servers answer the same question about the same generated data (10k users, 1k
// organizations, 30k memberships; bench/dataset.ts): "may user U do doc.read on organization O?"
//
//   authz   createApp as shipped (log level info, one JSON line per call to stdout, here a file),
//           PostgreSQL behind it, API key authentication on; it looks the user's membership up
//           itself (in its in-memory snapshot of the database).
//   cerbos  `cerbos server` 0.55 (a Go PDP) from the npm package @cerbos/cerbos-linux-x64, installed by
//           this benchmark with `npm install --no-save --prefix <tmpdir>/authz-bench-peers`, with a resource
//           policy equivalent to the dataset's organization roles (bench/peers-cerbos.ts), log level
//           info (its own per-call lines to stdout, here a file), no audit log. It holds no data: the
//           request hands it the user's role in the organization.
//   cerbos-quiet  the same Cerbos at log level warn: no per-call lines (authz writes none for a
//           successful call at its default level), so the logging's share shows.
//
// Each server runs pinned to one core (`taskset -c 0`, Cerbos therefore with GOMAXPROCS=1), h2load
// pinned to the other; while one server is measured the others are paused (SIGSTOP), so that it has
// the core to itself. Per round and side (sides interleaved, order rotating): Check as fast as
// served, Health as fast as served, Check at a fixed rate; server CPU per call from
// /proc/<pid>/task/*/schedstat; per-request latency from h2load's --log-file. Then, in every round,
// diagnostic runs of authz alone at the fixed rate (--trace-gc, event-loop delay, GC entries
// against the slowest requests; once as shipped, once with a larger young generation) find what
// its tail consists of.
//
// Settings (bench/run.ts passes them): BENCH_PEERS_REQUESTS, BENCH_PEERS_WARMUP, BENCH_PEERS_ROUNDS,
// BENCH_PEERS_RPS (total req/s of the fixed-rate runs), BENCH_PEERS_FIXED_REQUESTS,
// BENCH_CERBOS_VERSION, BENCH_PEERS_SERVER_CPU / BENCH_PEERS_LOAD_CPU (default 0 / 1).

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";

import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

import { CheckRequestSchema, CheckResponseSchema } from "../gen/authz/v1/permission_service_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { type DatasetShape, assignmentAt, loadDatasetIntoPostgres, makeChecks, ORG_ROLE_KEYS, rowCounts } from "./dataset.js";
import { cpuTimes, createDatabase, dropDatabase, migrateDatabase, stealSince, unaryCall } from "./engine.js";
import { CHECK_RESOURCES_PATH, decodeEffects, encodeCheckResources, installCerbos, policyYaml, writeCerbosFiles, type CerbosCheck } from "./peers-cerbos.js";
import { grpcFrame, type LoadShape, median, parseH2load, percentile, runH2load } from "./server-stacks.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const HEALTH_PATH = "/grpc.health.v1.Health/Check";
const CHECK_PATH = "/authz.v1.PermissionService/Check";

/** 10k users, 1k organizations (10 tenants), 3 memberships per user = 30k role assignments. */
export const PEERS_SHAPE: DatasetShape = { scale: 0.01, tenants: 10, orgs: 1000, users: 10_000, assignmentsPerUser: 3, assignments: 30_000, stride: 333 };

/** cerbos-quiet: the same Cerbos at log level warn, without its per-call log lines (authz writes none for a successful call). */
export const PEER_SIDES = ["authz", "cerbos", "cerbos-quiet"] as const;
export type PeerSide = (typeof PEER_SIDES)[number];
export type PeerRpc = "check" | "health";
export type PeerRegime = "saturated" | "fixed";

export interface PeersOptions {
  databaseUrl: string;
  requests: number;
  warmup: number;
  rounds: number;
  /** Total requests per second of the fixed-rate runs, and requests per run. */
  fixed: { rps: number; requests: number };
  clients: number;
  streams: number;
  h2load: string;
  cerbosVersion: string;
  serverCpu: number;
  loadCpu: number;
  log: (l: string) => void;
}

export interface Latency {
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export interface PeersRow extends Latency {
  round: number;
  side: PeerSide;
  rpc: PeerRpc;
  regime: PeerRegime;
  requests: number;
  reqPerSec: number;
  /** Server CPU (all threads) per call, microseconds. */
  cpuUsPerCall: number;
  /** Time the server's threads were ready to run but waited for the core during the run, milliseconds. */
  runQueueWaitMs: number;
  /** Lines the server wrote to its stdout per call. */
  logLinesPerCall: number;
}

export interface GcSummary {
  count: number;
  totalMs: number;
  maxMs: number;
}

/** A diagnostic fixed-rate run of authz alone (Node flags as listed). */
export interface PeersDiag extends Latency {
  round: number;
  label: string;
  nodeFlags: string[];
  requests: number;
  windowMs: number;
  /** From --trace-gc, during the measured run. */
  scavenge: GcSummary;
  markCompact: GcSummary;
  /** perf_hooks.monitorEventLoopDelay (1 ms resolution) inside the server, during the run. */
  eventLoopDelay: { p50Ms: number; p99Ms: number; maxMs: number };
  /** Requests at or above the run's p99: how many overlapped a GC pause, by kind. */
  tail: { thresholdUs: number; requests: number; overlapMinor: number; overlapMajor: number; overlapNone: number };
  cpuUsPerCall: number;
  /** Time the server was ready to run but waited for its core during the run (all threads; the main thread alone). */
  runQueueWaitMs: number;
  mainThreadWaitMs: number;
}

export interface PeersResult {
  skipped?: string;
  cerbosVersion: string;
  counts: { users: number; organizations: number; memberships: number };
  requests: number;
  warmup: number;
  rounds: number;
  shape: LoadShape;
  fixed: { rps: number; requests: number };
  cpus: { server: number; load: number };
  check: { authz: string; cerbos: string };
  policy: string;
  rows: PeersRow[];
  rss: Record<PeerSide, { rssBytes: number; hwmBytes: number }>;
  /** Fixed-rate latencies of every round, per side: counts per bucket (upper bounds in µs; the last is open). */
  histogram: { boundsUs: number[]; counts: Record<PeerSide, number[]> };
  diag: PeersDiag[];
  commands: Record<string, string>;
  stealShare: number;
  loadAvg: [number, number, number];
}

export const HISTOGRAM_BOUNDS_US = [250, 500, 1000, 2000, 4000, 8000, 16000, 32000];

// ---------------------------------------------------------------------------
// Server children

export interface Server {
  side: PeerSide;
  pid: number;
  port: number;
  /** stdout (and for Cerbos stderr) goes here: the servers' log lines. */
  outFile: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function stopper(child: ChildProcess): () => Promise<void> {
  const exited = new Promise<void>((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res();
    else child.once("exit", () => res());
  });
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      child.kill("SIGCONT"); // a server paused by alone() acts on the SIGTERM only once it runs
    }
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  };
}

interface AuthzServeArg {
  url: string;
  apiKeysFile: string;
  diag: boolean;
}

function startAuthz(arg: AuthzServeArg, cpu: number, nodeFlags: string[], outFile: string): Promise<Server> {
  const fd = openSync(outFile, "a");
  const child = spawn("taskset", ["-c", String(cpu), process.execPath, ...nodeFlags, THIS_FILE, "--serve-authz", JSON.stringify(arg)], {
    stdio: ["ignore", fd, "inherit", "ipc"],
  });
  closeSync(fd);
  const stop = stopper(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error("authz child did not report a port within 30 s"));
    }, 30_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`authz child exited early (code ${code})`));
    });
    child.once("message", (raw) => {
      clearTimeout(timer);
      const m = raw as { type: string; port?: number; message?: string };
      if (m.type !== "listening" || !m.port) reject(new Error(`authz child: ${m.message ?? m.type}`));
      else resolve({ side: "authz", pid: child.pid as number, port: m.port, outFile, child, stop });
    });
  });
}

async function waitServing(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      const h = await unaryCall(port, HEALTH_PATH, HealthCheckRequestSchema, HealthCheckResponseSchema, create(HealthCheckRequestSchema, {}));
      if (h.code === grpc.status.OK && h.response.status === HealthCheckResponse_ServingStatus.SERVING) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`no SERVING health answer on port ${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100)); // polling a port that is not open yet: there is no event to wait for
  }
}

async function startCerbos(bin: string, parent: string, cpu: number, side: "cerbos" | "cerbos-quiet"): Promise<Server> {
  const dir = path.join(parent, side);
  await mkdir(dir, { recursive: true });
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  const { config } = await writeCerbosFiles(dir, grpcPort, httpPort);
  const outFile = path.join(dir, "cerbos.out");
  const fd = openSync(outFile, "a");
  const child = spawn("taskset", ["-c", String(cpu), bin, "server", `--config=${config}`, `--log-level=${side === "cerbos" ? "info" : "warn"}`], {
    stdio: ["ignore", fd, fd],
    env: { ...process.env, CERBOS_NO_TELEMETRY: "1" },
  });
  closeSync(fd);
  const stop = stopper(child);
  try {
    await waitServing(grpcPort, 20_000);
  } catch (err) {
    await stop();
    throw new Error(`${err instanceof Error ? err.message : String(err)}; cerbos said: ${readFileSync(outFile, "utf8").slice(-600)}`);
  }
  return { side, pid: child.pid as number, port: grpcPort, outFile, child, stop };
}

// ---------------------------------------------------------------------------
// The authz child (this file, --serve-authz): createApp as shipped, plus diagnostics when asked

interface GcEntry {
  startMs: number;
  durationMs: number;
  kind: "minor" | "major" | "other";
}

function gcKind(k: number | undefined): GcEntry["kind"] {
  if (k === perfConstants.NODE_PERFORMANCE_GC_MINOR) return "minor";
  if (k === perfConstants.NODE_PERFORMANCE_GC_MAJOR) return "major";
  return "other";
}

function startDiagnostics(): void {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  let gcs: GcEntry[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const detail = (e as unknown as { detail?: { kind?: number } }).detail;
      gcs.push({ startMs: performance.timeOrigin + e.startTime, durationMs: e.duration, kind: gcKind(detail?.kind) });
    }
  });
  obs.observe({ entryTypes: ["gc"] });
  process.on("message", (raw) => {
    const m = raw as { type: string };
    if (m.type === "diag-start") {
      eld.reset();
      eld.enable();
      gcs = [];
      process.send?.({ type: "diag-started" });
    } else if (m.type === "diag-stop") {
      eld.disable();
      const ms = (ns: number) => ns / 1e6;
      process.send?.({ type: "diag", eld: { p50Ms: ms(eld.percentile(50)), p99Ms: ms(eld.percentile(99)), maxMs: ms(eld.max) }, gcs });
    }
  });
}

async function serveAuthz(arg: AuthzServeArg): Promise<void> {
  const { loadConfig } = await import("../src/config.js");
  const { createApp } = await import("../src/main.js");
  // The default logger of createApp: level info, JSON lines to stdout (which the parent points at a file).
  const app = createApp(
    loadConfig({
      DATABASE_URL: arg.url,
      AUTHZ_HOST: "127.0.0.1",
      AUTHZ_GRPC_PORT: "0",
      AUTHZ_HTTP_PORT: "0",
      AUTHZ_LOG_LEVEL: "info",
      AUTHZ_API_KEYS_FILE: arg.apiKeysFile,
    }),
  );
  const { grpcPort } = await app.listen();
  await app.ready;
  if (arg.diag) startDiagnostics();
  const stop = (): void => {
    setTimeout(() => process.exit(0), 3000).unref();
    void app.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("disconnect", stop);
  process.send?.({ type: "listening", port: grpcPort });
}

function ask<T>(child: ChildProcess, msg: object, reply: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${reply} from the authz child`)), 10_000);
    const on = (raw: unknown) => {
      const m = raw as { type: string };
      if (m.type !== reply) return;
      clearTimeout(timer);
      child.off("message", on);
      resolve(raw as T);
    };
    child.on("message", on);
    child.send(msg);
  });
}

// ---------------------------------------------------------------------------
// Measuring

interface Target {
  path: string;
  headers: string[];
  frameFile: string;
  replyBytes: number;
}

interface H2Entry {
  startUs: number;
  durUs: number;
}

async function readH2Log(file: string): Promise<H2Entry[]> {
  const out: H2Entry[] = [];
  for (const line of (await readFile(file, "utf8")).split("\n")) {
    const c = line.split("\t");
    if (c.length >= 3 && c[1] !== "-1") out.push({ startUs: Number(c[0]), durUs: Number(c[2]) });
  }
  return out;
}

function latency(entries: H2Entry[]): Latency & { sorted: number[] } {
  const sorted = entries.map((e) => e.durUs).sort((a, b) => a - b);
  return { sorted, p50Us: percentile(sorted, 50), p99Us: percentile(sorted, 99), p999Us: percentile(sorted, 99.9), maxUs: sorted[sorted.length - 1] ?? NaN };
}

/** JSON log lines (both servers log JSON objects, one per line) in a file from byte `from` on. */
function jsonLinesSince(file: string, from: number): number {
  const text = readFileSync(file).subarray(from).toString("utf8");
  let lines = 0;
  for (const l of text.split("\n")) if (l.startsWith("{")) lines++;
  return lines;
}

interface Measured {
  row: PeersRow;
  mainThreadWaitMs: number;
  entries: H2Entry[];
  startedMs: number;
  endedMs: number;
}

async function measure(
  o: PeersOptions,
  dir: string,
  s: Server,
  t: Target,
  at: { round: number; rpc: PeerRpc; regime: PeerRegime; requests: number },
): Promise<Measured> {
  const shape: LoadShape = { clients: o.clients, streams: o.streams };
  const load: LoadShape = at.regime === "fixed" ? { ...shape, rps: Math.max(1, Math.round(o.fixed.rps / o.clients)) } : shape;
  if (o.warmup > 0) {
    const w = parseH2load(await runH2load(o.h2load, s.port, o.warmup, shape, t.frameFile, undefined, t.path, t.headers));
    if (w.succeeded !== o.warmup || w.status2xx !== o.warmup) throw new Error(`${s.side} ${at.rpc}: warm-up had failures\n${w.raw}`);
  }
  const logFile = path.join(dir, `h2-${s.side}-${at.rpc}-${at.regime}-${at.round}.log`);
  const lines0 = statSync(s.outFile).size;
  const sched0 = schedNs(s.pid);
  const startedMs = Date.now();
  const r = parseH2load(await runH2load(o.h2load, s.port, at.requests, load, t.frameFile, logFile, t.path, t.headers));
  const endedMs = Date.now();
  const sched1 = schedNs(s.pid);
  const cpuNs = sched1.cpu - sched0.cpu;
  const waitNs = sched1.wait - sched0.wait;
  const n = at.requests;
  if (r.succeeded !== n || r.status2xx !== n || r.failed !== 0 || r.errored !== 0) throw new Error(`${s.side} ${at.rpc}: failures\n${r.raw}`);
  // Every reply exactly the verified reply's length: no error (trailers-only) reply slipped through.
  if (r.dataBytes !== n * t.replyBytes) throw new Error(`${s.side} ${at.rpc}: ${r.dataBytes} DATA bytes, want ${n * t.replyBytes}\n${r.raw}`);
  const entries = await readH2Log(logFile);
  await rm(logFile, { force: true });
  const { sorted: _sorted, ...lat } = latency(entries);
  const logLines = jsonLinesSince(s.outFile, lines0);
  const row: PeersRow = {
    ...at,
    side: s.side,
    reqPerSec: r.reqPerSec,
    cpuUsPerCall: cpuNs / 1000 / n,
    runQueueWaitMs: waitNs / 1e6,
    logLinesPerCall: logLines / n,
    ...lat,
  };
  o.log(
    `peers round ${at.round} ${s.side} ${at.rpc} ${at.regime}: ${r.reqPerSec.toFixed(0)} req/s, ${row.cpuUsPerCall.toFixed(1)} µs CPU/call, ` +
      `run-queue wait ${row.runQueueWaitMs.toFixed(0)} ms, p50 ${(lat.p50Us / 1000).toFixed(2)} ms, p99 ${(lat.p99Us / 1000).toFixed(2)} ms, p99.9 ${(lat.p999Us / 1000).toFixed(2)} ms, ${row.logLinesPerCall.toFixed(2)} log lines/call`,
  );
  return { row, mainThreadWaitMs: (sched1.mainWait - sched0.mainWait) / 1e6, entries, startedMs, endedMs };
}

/**
 * Nanoseconds every thread of a process spent on a CPU, and waiting on a run queue for one
 * (the first two fields of /proc/<pid>/task/<tid>/schedstat): the wait is time the server was
 * ready to run but the core was busy with something else (another process, or steal).
 */
export function schedNs(pid: number): { cpu: number; wait: number; mainWait: number } {
  let cpu = 0;
  let wait = 0;
  let mainWait = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
      cpu += Number(f[0]);
      wait += Number(f[1]);
      if (tid === String(pid)) mainWait = Number(f[1]);
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return { cpu, wait, mainWait };
}

function bucketCounts(durs: number[]): number[] {
  const counts = new Array<number>(HISTOGRAM_BOUNDS_US.length + 1).fill(0);
  for (const d of durs) {
    const i = HISTOGRAM_BOUNDS_US.findIndex((b) => d <= b);
    const k = i === -1 ? HISTOGRAM_BOUNDS_US.length : i;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

function rssOf(pid: number): { rssBytes: number; hwmBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rssBytes: kb("VmRSS"), hwmBytes: kb("VmHWM") };
}

// ---------------------------------------------------------------------------
// Diagnostics: --trace-gc lines and GC entries against the slow requests

const TRACE_GC = /(\d+) ms: (Scavenge|Minor Mark-Sweep|Mark-Compact|Mark-Sweep)[^,]*, ([\d.]+) \/ ([\d.]+) ms/;

export function traceGcSummary(text: string): { scavenge: GcSummary; markCompact: GcSummary } {
  const scavenge: GcSummary = { count: 0, totalMs: 0, maxMs: 0 };
  const markCompact: GcSummary = { count: 0, totalMs: 0, maxMs: 0 };
  for (const line of text.split("\n")) {
    const m = TRACE_GC.exec(line);
    if (!m) continue;
    const s = m[2] === "Scavenge" || m[2] === "Minor Mark-Sweep" ? scavenge : markCompact;
    const ms = Number(m[3]);
    s.count++;
    s.totalMs += ms;
    s.maxMs = Math.max(s.maxMs, ms);
  }
  return { scavenge, markCompact };
}

function tailAttribution(entries: H2Entry[], gcs: GcEntry[], thresholdUs: number): PeersDiag["tail"] {
  const slow = entries.filter((e) => e.durUs >= thresholdUs);
  let overlapMinor = 0;
  let overlapMajor = 0;
  let overlapNone = 0;
  for (const e of slow) {
    const a = e.startUs / 1000;
    const b = a + e.durUs / 1000;
    const hit = gcs.filter((g) => g.startMs < b && g.startMs + g.durationMs > a);
    if (hit.some((g) => g.kind === "major")) overlapMajor++;
    else if (hit.length > 0) overlapMinor++;
    else overlapNone++;
  }
  return { thresholdUs, requests: slow.length, overlapMinor, overlapMajor, overlapNone };
}

interface DiagVariant {
  label: string;
  nodeFlags: string[];
}

/** authz with --trace-gc as shipped otherwise, and with twice the default young generation (16 MiB semi-spaces in Node 20). */
export const DIAG_VARIANTS: DiagVariant[] = [
  { label: "as shipped, with --trace-gc", nodeFlags: ["--trace-gc"] },
  { label: "--max-semi-space-size=32 (twice the default), with --trace-gc", nodeFlags: ["--trace-gc", "--max-semi-space-size=32"] },
];

async function diagRun(o: PeersOptions, dir: string, arg: AuthzServeArg, check: Target, round: number, v: DiagVariant): Promise<PeersDiag> {
  const { label, nodeFlags } = v;
  const outFile = path.join(dir, `authz-diag-${round}-${nodeFlags.join("_").replace(/[^\w=-]/g, "")}.out`);
  const s = await startAuthz({ ...arg, diag: true }, o.serverCpu, nodeFlags, outFile);
  try {
    // The same warm-up as the rounds, then the measured fixed-rate run with the child's diagnostics on.
    const at = { round, rpc: "check" as const, regime: "fixed" as const, requests: o.fixed.requests };
    // A fresh process: as many calls before the measured run as the rounds' servers had (warm-up plus a saturated run), so the JIT is as warm.
    const shape = { clients: o.clients, streams: o.streams };
    await runH2load(o.h2load, s.port, o.warmup + o.requests, shape, check.frameFile, undefined, check.path, check.headers);
    const gc0 = statSync(outFile).size;
    await ask(s.child, { type: "diag-start" }, "diag-started");
    const m = await measure({ ...o, warmup: 0 }, dir, s, check, at);
    const d = await ask<{ eld: PeersDiag["eventLoopDelay"]; gcs: GcEntry[] }>(s.child, { type: "diag-stop" }, "diag");
    const trace = traceGcSummary(readFileSync(outFile).subarray(gc0).toString("utf8"));
    const tail = tailAttribution(m.entries, d.gcs, m.row.p99Us);
    o.log(
      `peers diag ${label}: p99.9 ${(m.row.p999Us / 1000).toFixed(2)} ms; ${trace.scavenge.count} scavenges (${trace.scavenge.totalMs.toFixed(1)} ms), ` +
        `${trace.markCompact.count} mark-compacts (${trace.markCompact.totalMs.toFixed(1)} ms); event loop delay max ${d.eld.maxMs.toFixed(2)} ms; ` +
        `slow requests ${tail.requests}: ${tail.overlapMinor} over a scavenge, ${tail.overlapMajor} over a mark-compact, ${tail.overlapNone} over no GC; ` +
        `run-queue wait ${m.row.runQueueWaitMs.toFixed(0)} ms (main thread ${m.mainThreadWaitMs.toFixed(0)} ms) in ${((m.endedMs - m.startedMs) / 1000).toFixed(1)} s`,
    );
    const { p50Us, p99Us, p999Us, maxUs, cpuUsPerCall, runQueueWaitMs } = m.row;
    return {
      round,
      mainThreadWaitMs: m.mainThreadWaitMs,
      label,
      nodeFlags,
      requests: at.requests,
      windowMs: m.endedMs - m.startedMs,
      ...trace,
      eventLoopDelay: d.eld,
      tail,
      p50Us,
      p99Us,
      p999Us,
      maxUs,
      cpuUsPerCall,
      runQueueWaitMs,
    };
  } finally {
    await s.stop();
  }
}

// ---------------------------------------------------------------------------
// Setup: the database, the question, both servers verified

interface Question {
  authzReq: ReturnType<typeof create<typeof CheckRequestSchema>>;
  cerbos: CerbosCheck;
  text: string;
}

/** An allowed doc.read of a member on one of their organizations, and the role they hold there. */
export function pickQuestion(s: DatasetShape): Question {
  for (const q of makeChecks(s, 5000, 13)) {
    if (!q.expected || q.permission !== "doc.read") continue;
    const u = Number.parseInt(q.subject.id.slice(-12), 16);
    const o = Number.parseInt(q.resource.id.slice(-12), 16);
    for (let j = 0; j < s.assignmentsPerUser; j++) {
      const a = assignmentAt(s, j * s.users + u);
      if (a.global || a.org !== o || !a.active || a.expired) continue;
      const role = ORG_ROLE_KEYS[a.role] as string;
      return {
        authzReq: create(CheckRequestSchema, { subject: q.subject, permission: q.permission, resource: q.resource }),
        cerbos: { principalId: q.subject.id, roles: [role], kind: "organization", resourceId: q.resource.id, actions: [q.permission] },
        text: `user ${q.subject.id} (${role} of the organization) \`${q.permission}\` on organization ${q.resource.id}`,
      };
    }
  }
  throw new Error("no allowed doc.read through an organization role in the dataset");
}

function rawUnary(port: number, rpcPath: string, body: Buffer): Promise<Buffer> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      rpcPath,
      (b) => b,
      (b) => b,
      body,
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err, value) => {
        client.close();
        if (err || !value) reject(new Error(`${rpcPath}: ${err?.message ?? "no reply"}`));
        else resolve(value);
      },
    );
  });
}

async function frameFile(dir: string, name: string, payload: Uint8Array): Promise<string> {
  const f = path.join(dir, `${name}.bin`);
  await writeFile(f, grpcFrame(payload));
  return f;
}

async function healthTarget(dir: string, side: PeerSide, port: number): Promise<Target> {
  const req = create(HealthCheckRequestSchema, {});
  const h = await unaryCall(port, HEALTH_PATH, HealthCheckRequestSchema, HealthCheckResponseSchema, req);
  if (h.code !== grpc.status.OK || h.response.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`${side} Health: ${h.code}`);
  const replyBytes = grpcFrame(toBinary(HealthCheckResponseSchema, h.response)).byteLength;
  return { path: HEALTH_PATH, headers: [], frameFile: await frameFile(dir, `${side}-health`, toBinary(HealthCheckRequestSchema, req)), replyBytes };
}

async function authzCheckTarget(dir: string, port: number, q: Question, key: string): Promise<Target> {
  const c = await unaryCall(port, CHECK_PATH, CheckRequestSchema, CheckResponseSchema, q.authzReq, { "x-api-key": key });
  if (c.code !== grpc.status.OK || !c.response.allowed) throw new Error(`authz Check: grpc-status ${c.code}, allowed ${c.response.allowed}`);
  const replyBytes = grpcFrame(toBinary(CheckResponseSchema, c.response)).byteLength;
  return {
    path: CHECK_PATH,
    headers: [`x-api-key: ${key}`],
    frameFile: await frameFile(dir, "authz-check", toBinary(CheckRequestSchema, q.authzReq)),
    replyBytes,
  };
}

async function cerbosCheckTarget(dir: string, port: number, q: Question): Promise<Target> {
  const body = encodeCheckResources(q.cerbos);
  const reply = await rawUnary(port, CHECK_RESOURCES_PATH, body);
  const effects = decodeEffects(reply);
  if (effects[q.cerbos.actions[0] as string] !== "EFFECT_ALLOW") throw new Error(`cerbos CheckResources: ${JSON.stringify(effects)}, want EFFECT_ALLOW`);
  // The other way round too: a role that does not hold the action is denied (the policy is not allow-all).
  const denied = decodeEffects(await rawUnary(port, CHECK_RESOURCES_PATH, encodeCheckResources({ ...q.cerbos, actions: ["org.delete"], roles: ["viewer"] })));
  if (denied["org.delete"] !== "EFFECT_DENY") throw new Error(`cerbos: viewer org.delete gave ${JSON.stringify(denied)}, want EFFECT_DENY`);
  return { path: CHECK_RESOURCES_PATH, headers: [], frameFile: await frameFile(dir, "cerbos-check", body), replyBytes: 5 + reply.byteLength };
}

async function writeH2loadWrapper(dir: string, h2load: string, cpu: number): Promise<string> {
  const f = path.join(dir, "h2load-pinned.sh");
  await writeFile(f, `#!/bin/sh\nexec taskset -c ${cpu} ${JSON.stringify(h2load)} "$@"\n`);
  await chmod(f, 0o755);
  return f;
}

// ---------------------------------------------------------------------------
// The run

function skippedResult(o: PeersOptions, reason: string): PeersResult {
  const c = rowCounts(PEERS_SHAPE);
  return {
    skipped: reason,
    cerbosVersion: o.cerbosVersion,
    counts: { users: c.users, organizations: c.organizations, memberships: c.role_assignments },
    requests: o.requests,
    warmup: o.warmup,
    rounds: o.rounds,
    shape: { clients: o.clients, streams: o.streams },
    fixed: o.fixed,
    cpus: { server: o.serverCpu, load: o.loadCpu },
    check: { authz: "", cerbos: "" },
    policy: "",
    rows: [],
    rss: bySide(() => ({ rssBytes: NaN, hwmBytes: NaN })),
    histogram: { boundsUs: HISTOGRAM_BOUNDS_US, counts: bySide(() => []) },
    diag: [],
    commands: {},
    stealShare: NaN,
    loadAvg: os.loadavg() as [number, number, number],
  };
}

function bySide<T>(f: (s: PeerSide) => T): Record<PeerSide, T> {
  return Object.fromEntries(PEER_SIDES.map((s) => [s, f(s)])) as Record<PeerSide, T>;
}

/** Per-round ratios authz ÷ Cerbos (or another side) of one measure; then the caller takes the median. */
export function perRoundRatios(rows: PeersRow[], rpc: PeerRpc, regime: PeerRegime, pick: (r: PeersRow) => number, vs: PeerSide = "cerbos"): number[] {
  const out: number[] = [];
  for (const round of new Set(rows.map((r) => r.round))) {
    const a = rows.find((r) => r.round === round && r.side === "authz" && r.rpc === rpc && r.regime === regime);
    const c = rows.find((r) => r.round === round && r.side === vs && r.rpc === rpc && r.regime === regime);
    if (a && c) out.push(pick(a) / pick(c));
  }
  return out;
}

interface RoundsCtx {
  o: PeersOptions;
  dir: string;
  servers: Record<PeerSide, Server>;
  targets: Record<PeerSide, Record<PeerRpc, Target>>;
  diagArg: AuthzServeArg;
}

/**
 * Pauses (SIGSTOP) every server but `keep` (none when undefined) and returns what resumes them, so
 * that the server measured has its core to itself. All of them are pinned to one core, and an idle
 * Cerbos is not idle every moment: Go forces a collection every two minutes, about 35 ms of CPU at
 * GOMAXPROCS=1 (GODEBUG=gctrace=1), on the core the measured server needs (in a direct test it
 * raised authz's latencies around it to about 6 ms; docs/benchmarks.md, "Peers").
 */
export function alone(servers: Record<PeerSide, Pick<Server, "side" | "child">>, keep: PeerSide | undefined): () => void {
  const paused = Object.values(servers).filter((s) => s.side !== keep);
  for (const s of paused) s.child.kill("SIGSTOP");
  return () => {
    for (const s of paused) s.child.kill("SIGCONT");
  };
}

/** One side's three runs of a round, the other sides paused; the side is SERVING again before its warm-up. */
async function sideRuns(c: RoundsCtx, side: PeerSide, round: number): Promise<{ rows: PeersRow[]; fixed: Measured }> {
  const { o, dir } = c;
  const s = c.servers[side];
  const t = c.targets[side];
  const resume = alone(c.servers, side);
  try {
    await waitServing(s.port, 10_000);
    const check = await measure(o, dir, s, t.check, { round, rpc: "check", regime: "saturated", requests: o.requests });
    const health = await measure(o, dir, s, t.health, { round, rpc: "health", regime: "saturated", requests: o.requests });
    const fixed = await measure(o, dir, s, t.check, { round, rpc: "check", regime: "fixed", requests: o.fixed.requests });
    return { rows: [check.row, health.row, fixed.row], fixed };
  } finally {
    resume();
  }
}

/** Every round: each side in turn (the order rotates), then the diagnostic authz runs (order alternating, every round server paused). */
async function roundsOf(c: RoundsCtx) {
  const { o, dir, targets } = c;
  const rows: PeersRow[] = [];
  const diag: PeersDiag[] = [];
  const fixedDurs = bySide((): number[] => []);
  for (let round = 1; round <= o.rounds; round++) {
    const k = (round - 1) % PEER_SIDES.length;
    for (const side of [...PEER_SIDES.slice(k), ...PEER_SIDES.slice(0, k)]) {
      const r = await sideRuns(c, side, round);
      rows.push(...r.rows);
      fixedDurs[side].push(...r.fixed.entries.map((e) => e.durUs));
    }
    const variants = round % 2 === 1 ? DIAG_VARIANTS : [...DIAG_VARIANTS].reverse();
    const resume = alone(c.servers, undefined);
    try {
      for (const v of variants) diag.push(await diagRun(o, dir, c.diagArg, targets.authz.check, round, v));
    } finally {
      resume();
    }
  }
  return { rows, fixedDurs, diag };
}

export async function runPeers(o: PeersOptions): Promise<PeersResult> {
  if (os.availableParallelism() < 2) return skippedResult(o, "one core each needs at least two cores");
  const install = await installCerbos(path.join(os.tmpdir(), "authz-bench-peers"), o.cerbosVersion);
  if (!install.ok) {
    o.log(`peers: skipped: ${install.reason}`);
    return skippedResult(o, install.reason);
  }
  const steal0 = cpuTimes();
  const dbName = `authz_bench_${process.pid}_peers`;
  const url = await createDatabase(o.databaseUrl, dbName);
  const dir = await mkdtemp(path.join(os.tmpdir(), "authz-peers-bench-"));
  const stops: Array<() => Promise<void>> = [];
  try {
    await migrateDatabase(url);
    await loadDatasetIntoPostgres(url, PEERS_SHAPE);
    const { key, record } = mintApiKey("peers-bench", ["check"], null);
    const apiKeysFile = path.join(dir, "api-keys.json");
    await writeFile(apiKeysFile, JSON.stringify([{ id: record.id, name: record.name, sha256: record.secretSha256, scopes: record.scopes, tenant_id: null }]));
    const h2 = { ...o, h2load: await writeH2loadWrapper(dir, o.h2load, o.loadCpu) };
    const arg: AuthzServeArg = { url, apiKeysFile, diag: false };
    const authz = await startAuthz(arg, o.serverCpu, [], path.join(dir, "authz.out"));
    stops.push(authz.stop);
    const cerbos = await startCerbos(install.bin, dir, o.serverCpu, "cerbos");
    stops.push(cerbos.stop);
    const quiet = await startCerbos(install.bin, dir, o.serverCpu, "cerbos-quiet");
    stops.push(quiet.stop);
    const q = pickQuestion(PEERS_SHAPE);
    const targets = {
      authz: { check: await authzCheckTarget(dir, authz.port, q, key), health: await healthTarget(dir, "authz", authz.port) },
      cerbos: { check: await cerbosCheckTarget(dir, cerbos.port, q), health: await healthTarget(dir, "cerbos", cerbos.port) },
      "cerbos-quiet": { check: await cerbosCheckTarget(dir, quiet.port, q), health: await healthTarget(dir, "cerbos-quiet", quiet.port) },
    };
    o.log(`peers: cerbos ${install.version} and authz verified (allowed: ${q.text}); servers on cpu ${o.serverCpu}, h2load on cpu ${o.loadCpu}`);
    const servers = { authz, cerbos, "cerbos-quiet": quiet };
    const { rows, fixedDurs, diag } = await roundsOf({ o: h2, dir, servers, targets, diagArg: arg });
    const rss = bySide((s) => rssOf(servers[s].pid));
    const c = rowCounts(PEERS_SHAPE);
    const cmd = (n: number, p: string, extra: string) =>
      `taskset -c ${o.loadCpu} h2load -n ${n} -c ${o.clients} -m ${o.streams}${extra} -d frame.bin -H 'content-type: application/grpc' -H 'te: trailers' --log-file LOG http://127.0.0.1:PORT${p}`;
    return {
      cerbosVersion: install.version,
      counts: { users: c.users, organizations: c.organizations, memberships: c.role_assignments },
      requests: o.requests,
      warmup: o.warmup,
      rounds: o.rounds,
      shape: { clients: o.clients, streams: o.streams },
      fixed: o.fixed,
      cpus: { server: o.serverCpu, load: o.loadCpu },
      check: {
        authz: q.text,
        cerbos: `CheckResources: principal ${q.cerbos.principalId} with roles [${q.cerbos.roles.join(", ")}], resource organization ${q.cerbos.resourceId}, actions [${q.cerbos.actions.join(", ")}]`,
      },
      policy: policyYaml().trim(),
      rows,
      rss,
      histogram: { boundsUs: HISTOGRAM_BOUNDS_US, counts: bySide((s) => bucketCounts(fixedDurs[s])) },
      diag,
      commands: {
        "authz Check": `${cmd(o.requests, CHECK_PATH, "")} -H 'x-api-key: KEY'`,
        "cerbos CheckResources": cmd(o.requests, CHECK_RESOURCES_PATH, ""),
        "Health (both)": cmd(o.requests, HEALTH_PATH, ""),
        "fixed rate": cmd(o.fixed.requests, "<Check path>", ` --rps ${Math.max(1, Math.round(o.fixed.rps / o.clients))}`),
      },
      stealShare: stealSince(steal0),
      loadAvg: os.loadavg() as [number, number, number],
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await dropDatabase(o.databaseUrl, dbName);
  }
}

export function peersMedian(rows: PeersRow[], side: PeerSide, rpc: PeerRpc, regime: PeerRegime, pick: (r: PeersRow) => number): number {
  return median(rows.filter((r) => r.side === side && r.rpc === rpc && r.regime === regime).map(pick));
}

// ---------------------------------------------------------------------------
// Entry point: the child (--serve-authz) or a run of this part alone

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const i = process.argv.indexOf("--serve-authz");
  if (i !== -1) {
    serveAuthz(JSON.parse(process.argv[i + 1] ?? "{}") as AuthzServeArg).catch((err: unknown) => {
      process.send?.({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      process.exit(1);
    });
  }
}
