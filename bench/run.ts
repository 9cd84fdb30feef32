// `npm run bench`: the whole benchmark suite in one run, written into
// docs/benchmarks.md (between the bench:results markers; the prose around
// them is kept), docs/bench/*.svg (charts) and docs/bench/results.json.
//
// Parts (BENCH_ONLY picks some, comma-separated; default all):
//   stacks     server stacks for gRPC, one trivial RPC (bench/server-stacks.ts)
//   grpc       bare http2 vs the authz server's Health, Check and ConsumeRateLimit, one h2load setting
//   hotpath    server CPU per call: bare http2 canned reply, authz Health, authz Check at log level info (bench/hot-path.ts)
//   ratelimit  ConsumeRateLimit vs raw EVALSHA vs rate-limiter-flexible (bench/ratelimit.ts)
//   lag        write -> visible on two replicas
//   engine     the scale curve: buildSnapshot, Check, cold loadSnapshot at each size; then engine v2
//              against the old engine and a Map.get + bit-test floor (bench/engine-v2.ts)
//   casbin     node-casbin on the same datasets and checks (runs the engine at those sizes too)
//   import     authz import in bulk (200k records) vs one statement per record (bench/import.ts)
//   directory  ManageDirectory: 10k mutations of sign-up traffic, mutations/s (bench/directory.ts)
//   peers      authz and the Cerbos server from npm side by side, one core each: Check and Health
//              throughput, CPU per call, latency at a fixed rate, RSS; authz's tail at that rate (bench/peers.ts)
// A run of some parts keeps the other parts' last results (docs/bench/results.json).
//
// Settings:
//   BENCH_QUICK=1         a quick run (~2-3 min): sizes 10k and 100k assignments, fewer requests, 1 round;
//                         written to dist/bench-docs/ unless BENCH_DOCS says otherwise
//   BENCH_DOCS            directory holding benchmarks.md and bench/ (default docs)
//   BENCH_SCALE           largest dataset scale of the curve (1 = 5M assignments; default 1, quick 0.02)
//   BENCH_SCALES          the curve's scales, comma-separated (default 0.002,0.02,0.2,1 up to BENCH_SCALE)
//   BENCH_PG_SCALES       scales also loaded from Postgres (default all of BENCH_SCALES; "none")
//   BENCH_CASBIN_SCALES   scales for casbin with shared role templates (default all of BENCH_SCALES)
//   BENCH_CASBIN_PERORG_SCALES  scales for casbin with per-organization policies (default those <= 0.2)
//   BENCH_CASBIN_MS       time budget of casbin's timed check loop per scale and variant (default 10000)
//   BENCH_CHECKS          engine checks per throughput round (default 500000, quick 100000)
//   BENCH_REQUESTS, BENCH_WARMUP, BENCH_ROUNDS  h2load runs of stacks and grpc (30000, 2000, 2; quick 5000, 500, 1)
//   BENCH_HOT_REQUESTS, BENCH_HOT_WARMUP, BENCH_HOT_ROUNDS  h2load runs of hotpath (20000, 3000, 5; quick 10000, 2000, 2)
//   BENCH_HOT_CALLS       calls per in-process measurement of hotpath (200000; quick 50000)
//   BENCH_HOT_RPS, BENCH_HOT_FIXED_REQUESTS  hotpath's fixed-rate runs: req/s per connection (x10 connections) and requests (300, 30000, i.e. 10 s a run; quick 300, 6000)
//   BENCH_RL_REQUESTS, BENCH_RL_WARMUP, BENCH_RL_ROUNDS, BENCH_RL_CONCURRENCY  (50000, 5000, 2, 64; quick 10000, 1000, 1)
//   BENCH_RL_ALGORITHMS   authz algorithms the ratelimit part measures (default sliding_window,fixed_window)
//   BENCH_RL_KEYS         subjects its in-process paths cycle over, one setting after the other (default 1,10000)
//   BENCH_LAG_WRITES      writes of the lag part (default 200, quick 50)
//   BENCH_IMPORT_RECORDS, BENCH_IMPORT_ROW_RECORDS  records of the import part in bulk and one by one (200000, 10000; quick 20000, 2000)
//   BENCH_IMPORT_SCALES   the import part's scale curve, bulk only (default 10000,100000,1000000; quick 10000)
//   BENCH_DIRECTORY_MUTATIONS  mutations of the directory part (default 10000, quick 10000)
//   BENCH_PEERS_REQUESTS, BENCH_PEERS_WARMUP, BENCH_PEERS_ROUNDS  h2load runs of peers (30000, 3000, 3; quick 10000, 2000, 1)
//   BENCH_PEERS_RPS, BENCH_PEERS_FIXED_REQUESTS  peers' fixed-rate runs: total req/s and requests (500, 15000; quick 500, 5000)
//   BENCH_CERBOS_VERSION  version of @cerbos/cerbos-linux-x64 the peers part installs (default 0.55.0)
//   BENCH_PEERS_SERVER_CPU, BENCH_PEERS_LOAD_CPU  cores for the servers and for h2load (default 0 and 1)
//   BENCH_SMALL_SCALE     dataset of the grpc and lag databases (default 0.001)
//   BENCH_HEAP_MB         heap limit of the child processes (default 70% of RAM, at most 16384)
//   DATABASE_URL          PostgreSQL superuser connection (grpc, lag, engine's cold loads); parts needing it are skipped without
//   REDIS_URL             Redis for grpc and ratelimit (default redis://127.0.0.1:6379)
//   H2LOAD                h2load binary (default /usr/bin/h2load)
//   BENCH_RENDER_ONLY=1   measure nothing: rewrite benchmarks.md and the charts from results.json

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { CASBIN_VARIANTS, type CasbinPhaseArg, type CasbinPhaseResult, type CasbinVariant } from "./casbin.js";
import { datasetShape, loadDatasetIntoPostgres, rowCounts } from "./dataset.js";
import {
  type InprocArg,
  type InprocResult,
  type PgLoadArg,
  type PgLoadResult,
  SAMPLE_DECISIONS,
  benchLag,
  createDatabase,
  dropDatabase,
  migrateDatabase,
  runPhase,
} from "./engine.js";
import { formatCompare, runEngineV2Compare } from "./engine-v2.js";
import { runDirectoryBench } from "./directory.js";
import { runGrpcCompare } from "./grpc-compare.js";
import { runImportBench, runImportCurve } from "./import.js";
import { runHotPath } from "./hot-path.js";
import { runPeers } from "./peers.js";
import { algorithmsFromEnv, runRateLimitBench } from "./ratelimit.js";
import {
  type CasbinPart,
  type CasbinRow,
  type PartName,
  PART_NAMES,
  type Parts,
  type Results,
  type RunInfo,
  type ScalePoint,
  describeMachine,
  gitInfo,
  pruneRuns,
  readResults,
  writeReport,
} from "./report.js";
import { h2loadCommand, median, runServerStacks } from "./server-stacks.js";

const env = process.env;
const log = (l: string) => process.stderr.write(`${l}\n`);
const quick = env["BENCH_QUICK"] === "1" || env["BENCH_QUICK"] === "true";

function int(name: string, full: number, quickValue: number): number {
  const v = env[name];
  if (v === undefined || v === "") return quick ? quickValue : full;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

function scaleList(name: string, fallback: number[]): number[] {
  const v = env[name];
  if (v === undefined || v.trim() === "") return fallback;
  if (v.trim() === "none") return [];
  return v.split(",").map((s) => {
    const n = Number(s.trim());
    if (!(n > 0) || n > 10) throw new Error(`${name}: scale must be in (0, 10], got ${s}`);
    return n;
  });
}

const ALIASES: Record<string, PartName> = { inproc: "engine", pgload: "engine", scale: "engine" };
const only = (env["BENCH_ONLY"] ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean)
  .map((s) => ALIASES[s] ?? s);
for (const name of only) if (!(PART_NAMES as string[]).includes(name)) throw new Error(`BENCH_ONLY: unknown part ${name} (known: ${PART_NAMES.join(", ")})`);
const wants = (p: PartName) => only.length === 0 || only.includes(p);

const maxScale = Number(env["BENCH_SCALE"] ?? (quick ? 0.02 : 1));
if (!(maxScale > 0) || maxScale > 10) throw new Error(`BENCH_SCALE must be in (0, 10], got ${env["BENCH_SCALE"]}`);
const defaultScales = [0.002, 0.02, 0.2, 1].filter((s) => s <= maxScale);
if (!defaultScales.includes(maxScale)) defaultScales.push(maxScale);
const scales = scaleList("BENCH_SCALES", defaultScales).sort((a, b) => a - b);
const pgScales = scaleList("BENCH_PG_SCALES", scales);
const casbinScales: Record<CasbinVariant, number[]> = {
  template: scaleList("BENCH_CASBIN_SCALES", scales),
  "per-org": scaleList(
    "BENCH_CASBIN_PERORG_SCALES",
    scales.filter((s) => s <= 0.2),
  ),
};
const casbinMs = int("BENCH_CASBIN_MS", 10_000, 3_000);
const checks = int("BENCH_CHECKS", 500_000, 100_000);
const h2 = { requests: int("BENCH_REQUESTS", 30_000, 5_000), warmup: int("BENCH_WARMUP", 2_000, 500), rounds: int("BENCH_ROUNDS", 2, 1) };
const hot = {
  requests: int("BENCH_HOT_REQUESTS", 20_000, 10_000),
  warmup: int("BENCH_HOT_WARMUP", 3_000, 2_000),
  rounds: int("BENCH_HOT_ROUNDS", 5, 2),
  inprocCalls: int("BENCH_HOT_CALLS", 200_000, 50_000),
  fixed: { rps: int("BENCH_HOT_RPS", 300, 300), requests: int("BENCH_HOT_FIXED_REQUESTS", 30_000, 6_000) },
};
const rlOpts = {
  requests: int("BENCH_RL_REQUESTS", 50_000, 10_000),
  warmup: int("BENCH_RL_WARMUP", 5_000, 1_000),
  rounds: int("BENCH_RL_ROUNDS", 2, 1),
  concurrency: int("BENCH_RL_CONCURRENCY", 64, 64),
};
const lagWrites = int("BENCH_LAG_WRITES", 200, 50);
const importRecords = int("BENCH_IMPORT_RECORDS", 200_000, 20_000);
const importRowRecords = int("BENCH_IMPORT_ROW_RECORDS", 10_000, 2_000);
/** Sizes of the import part's scale curve (bulk only, each into a fresh database). */
const importScales = (process.env["BENCH_IMPORT_SCALES"] ?? (quick ? "10000" : "10000,100000,1000000"))
  .split(",")
  .map((x) => Number(x.trim()))
  .filter((n) => Number.isInteger(n) && n > 0);
const directoryMutations = int("BENCH_DIRECTORY_MUTATIONS", 10_000, 10_000);
const peersOpts = {
  requests: int("BENCH_PEERS_REQUESTS", 30_000, 10_000),
  warmup: int("BENCH_PEERS_WARMUP", 3_000, 2_000),
  rounds: int("BENCH_PEERS_ROUNDS", 3, 1),
  fixed: { rps: int("BENCH_PEERS_RPS", 500, 500), requests: int("BENCH_PEERS_FIXED_REQUESTS", 15_000, 5_000) },
  cerbosVersion: env["BENCH_CERBOS_VERSION"] ?? "0.55.0",
  serverCpu: Number(env["BENCH_PEERS_SERVER_CPU"] ?? 0),
  loadCpu: Number(env["BENCH_PEERS_LOAD_CPU"] ?? 1),
};
const smallScale = Number(env["BENCH_SMALL_SCALE"] ?? 0.001);
const heapMb = int("BENCH_HEAP_MB", Math.min(16384, Math.floor((os.totalmem() / 2 ** 20) * 0.7)), Math.min(16384, Math.floor((os.totalmem() / 2 ** 20) * 0.7)));
const databaseUrl = env["DATABASE_URL"];
const redisUrl = env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
const h2loadBin = env["H2LOAD"] ?? "/usr/bin/h2load";
const docsDir = env["BENCH_DOCS"] ?? (quick ? path.join("dist", "bench-docs") : "docs");
const PHASE_TIMEOUT = 40 * 60_000;

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}

// ---------------------------------------------------------------------------
// The run

const startedAt = performance.now();
const settings: Record<string, string> = {};
for (const [k, v] of Object.entries(env)) if (k.startsWith("BENCH_") && v !== undefined && v !== "") settings[k] = v;
const run: RunInfo = {
  id: new Date()
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z"),
  started: new Date().toISOString(),
  quick,
  command:
    [
      ...Object.entries(settings).map(([k, v]) => `${k}=${v}`),
      databaseUrl ? `DATABASE_URL=${redact(databaseUrl)}` : "",
      env["REDIS_URL"] ? `REDIS_URL=${redact(redisUrl)}` : "",
    ]
      .filter(Boolean)
      .join(" ") +
    (Object.keys(settings).length || databaseUrl ? " " : "") +
    "npm run bench",
  settings,
  machine: describeMachine(),
  ...gitInfo(),
};
const resultsFile = path.join(docsDir, "bench", "results.json");
const results: Results = await readResults(resultsFile);
const seedDoc = existsSync("docs/benchmarks.md") ? readFileSync("docs/benchmarks.md", "utf8") : undefined;
results.runs[run.id] = run;
if (env["BENCH_RENDER_ONLY"] === "1") {
  // Rewrite the report from results.json alone (after editing the prose or the report code): nothing is measured.
  delete results.runs[run.id];
  const w = await writeReport(docsDir, results, seedDoc);
  log(`bench: rendered ${w.doc} and ${w.charts.length} charts from ${resultsFile}`);
  process.exit(0);
}
log(`bench: run ${run.id}${quick ? " (quick)" : ""}; parts ${PART_NAMES.filter(wants).join(", ")}; scales ${scales.join(", ")}; writing ${docsDir}`);

async function save<K extends PartName>(part: K, data: NonNullable<Parts[K]>): Promise<void> {
  (results.parts as Record<string, unknown>)[part] = { run: run.id, data };
  run.finished = new Date().toISOString();
  run.durationS = (performance.now() - startedAt) / 1000;
  const [a = NaN, b = NaN, c = NaN] = os.loadavg();
  run.machine.loadEnd = [a, b, c];
  pruneRuns(results);
  results.runs[run.id] = run;
  const w = await writeReport(docsDir, results, seedDoc);
  log(`bench: ${part} done after ${(run.durationS / 60).toFixed(1)} min; wrote ${w.doc}`);
}

const needsDb = (p: PartName) => {
  if (databaseUrl) return true;
  log(`bench: skipping ${p}: DATABASE_URL is not set`);
  return false;
};

async function withSmallDatabase<T>(suffix: string, fn: (url: string) => Promise<T>): Promise<T> {
  const name = `authz_bench_${process.pid}_${suffix}`;
  const url = await createDatabase(databaseUrl as string, name);
  try {
    await migrateDatabase(url);
    await loadDatasetIntoPostgres(url, datasetShape(smallScale));
    return await fn(url);
  } finally {
    await dropDatabase(databaseUrl as string, name);
  }
}

if (wants("stacks")) {
  const shape = { clients: 10, streams: 10 };
  const rows = await runServerStacks({ ...h2, ...shape, h2load: h2loadBin, log });
  await save("stacks", { rows, ...h2, command: h2loadCommand(h2.requests, shape) });
}

if (wants("grpc") && needsDb("grpc")) {
  const data = await runGrpcCompare({ databaseUrl: databaseUrl as string, redisUrl, smallScale, ...h2, clients: 10, streams: 10, h2load: h2loadBin, log });
  await save("grpc", data);
}

if (wants("hotpath") && needsDb("hotpath")) {
  const data = await runHotPath({ databaseUrl: databaseUrl as string, smallScale, ...hot, clients: 10, streams: 10, h2load: h2loadBin, log });
  await save("hotpath", data);
}

if (wants("peers") && needsDb("peers")) {
  const data = await runPeers({ databaseUrl: databaseUrl as string, ...peersOpts, clients: 10, streams: 10, h2load: h2loadBin, log });
  await save("peers", data);
}

if (wants("ratelimit")) {
  const rows = await runRateLimitBench({ ...rlOpts, redisUrl, h2load: h2loadBin });
  await save("ratelimit", { rows, ...rlOpts, algorithm: algorithmsFromEnv().join(",") });
}

if (wants("lag") && needsDb("lag")) {
  const data = await withSmallDatabase("lag", (url) => benchLag(url, datasetShape(smallScale), lagWrites, log));
  await save("lag", { ...data, smallScale });
}

if (wants("import") && needsDb("import")) {
  const result = await runImportBench(databaseUrl as string, importRecords, importRowRecords, log);
  result.curve = await runImportCurve(databaseUrl as string, importScales, log);
  await save("import", result);
}

if (wants("directory") && needsDb("directory")) {
  const rows = await runDirectoryBench(databaseUrl as string, directoryMutations);
  await save("directory", { rows, mutations: directoryMutations });
}

if (wants("engine") || wants("casbin")) {
  const engineScales = wants("engine") ? scales : [...new Set([...casbinScales.template, ...casbinScales["per-org"]])].sort((a, b) => a - b);
  const points: ScalePoint[] = [];
  const casbinRows: CasbinRow[] = [];
  const engineSkipped: string[] = [];
  const casbinSkipped: string[] = [];
  let casbinUnfiltered: CasbinPart["unfiltered"];
  for (const scale of engineScales) {
    const counts = rowCounts(datasetShape(scale));
    log(`bench: engine at scale ${scale} (${counts.role_assignments} assignments)`);
    const arg: InprocArg = { scale, checks, latencyChecks: checks, edits: 200 };
    const ip = await runPhase<InprocResult>("inproc", arg, heapMb, PHASE_TIMEOUT);
    const { sampleDecisions, ...inproc } = ip;
    const point: ScalePoint = { scale, counts, inproc };
    if (wants("engine") && pgScales.includes(scale)) {
      if (!databaseUrl) engineSkipped.push(`cold load from Postgres at ${counts.role_assignments} assignments: DATABASE_URL is not set.`);
      else {
        const name = `authz_bench_${process.pid}_load`;
        const url = await createDatabase(databaseUrl, name);
        try {
          const migrateMs = await migrateDatabase(url);
          const loader = await loadDatasetIntoPostgres(url, datasetShape(scale), log);
          const pg = await runPhase<Omit<PgLoadResult, "migrateMs" | "loader">>("pgload", { url, scale } satisfies PgLoadArg, heapMb, PHASE_TIMEOUT);
          point.pg = { ...pg, migrateMs, loader };
        } finally {
          await dropDatabase(databaseUrl, name);
        }
      }
    } else if (wants("engine")) {
      engineSkipped.push(`cold load from Postgres at ${counts.role_assignments.toLocaleString("en-US")} assignments (not in BENCH_PG_SCALES).`);
    }
    points.push(point);
    if (wants("casbin")) {
      for (const variant of CASBIN_VARIANTS) {
        if (!casbinScales[variant].includes(scale)) continue;
        const carg: CasbinPhaseArg = { scale, variant, maxChecks: 2_000_000, maxMs: casbinMs, engineDecisions: sampleDecisions, sampleN: SAMPLE_DECISIONS };
        const r = await runPhase<CasbinPhaseResult>("casbin", carg, heapMb, PHASE_TIMEOUT);
        if (variant === "template" && scale === Math.min(...casbinScales.template) && casbinUnfiltered === undefined) {
          // The same once more without the loader's three filters: every disagreement must be one of them.
          const u = await runPhase<CasbinPhaseResult>("casbin", { ...carg, maxMs: Math.min(casbinMs, 2000), keepUnsupported: true }, heapMb, PHASE_TIMEOUT);
          if (u.unfiltered) casbinUnfiltered = { assignments: u.assignments, compared: u.compared, ...u.unfiltered };
        }
        casbinRows.push({
          ...r,
          engine: {
            checksPerSec: median(inproc.checks.rounds.map((x) => x.engine.opsPerSec)),
            p50Us: inproc.checks.engineLatency.p50Ns / 1000,
            p99Us: inproc.checks.engineLatency.p99Ns / 1000,
            buildMs: inproc.buildMs,
            heapUsed: inproc.after.heapUsed,
            heapDelta: inproc.after.heapUsed - inproc.before.heapUsed,
            rss: inproc.after.rss,
            maxRss: inproc.maxRss,
          },
        });
      }
    }
  }
  if (wants("casbin")) {
    const perOrgMax = Math.max(0, ...casbinScales["per-org"]);
    const larger = engineScales.filter((s) => s > perOrgMax);
    for (const s of larger) {
      const n = rowCounts(datasetShape(s)).role_assignments;
      const x = casbinRows.filter((r) => r.variant === "per-org").sort((a, b) => b.assignments - a.assignments)[0];
      const perLine = x ? x.p50Us / x.load.p : NaN; // the median check is denied: it reads every p line
      casbinSkipped.push(
        `casbin with per-organization policies at ${n.toLocaleString("en-US")} assignments: casbin evaluates the matcher once per p line for every check that is not allowed early, ` +
          `so a check costs time in proportion to the organizations (${x ? `${perLine.toFixed(2)} µs per p line for the median check measured at ${x.assignments.toLocaleString("en-US")} assignments: about ${((perLine * rowCounts(datasetShape(s)).role_permissions) / 1e6).toFixed(2)} s per check here` : "see the smaller sizes"}).`,
      );
    }
    await save("casbin", { rows: casbinRows, budgetMs: casbinMs, skipped: casbinSkipped, ...(casbinUnfiltered ? { unfiltered: casbinUnfiltered } : {}) });
  }
  if (wants("engine")) await save("engine", { points, skipped: engineSkipped });
  if (wants("engine")) {
    // Engine v2 against the engine it replaced and the floor, at the same scales (bench/engine-v2.ts).
    const rows = await runEngineV2Compare({ scales, checks, edits: 200, engines: ["legacy", "v2"], heapMb, log });
    const md = formatCompare(rows);
    mkdirSync(path.join(docsDir, "bench"), { recursive: true });
    writeFileSync(path.join(docsDir, "bench", "engine-v2.md"), `${md}\n`);
    log(`bench: engine v2 vs the old engine and the floor (also in ${path.join(docsDir, "bench", "engine-v2.md")}):\n${md}`);
  }
}

log(`bench: finished in ${((performance.now() - startedAt) / 60_000).toFixed(1)} min`);
