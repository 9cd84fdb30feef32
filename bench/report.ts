// The benchmark report: the machine a run measured on, the results of every
// part (merged into docs/bench/results.json, so a run of some parts keeps the
// others' last figures), the markdown between the markers of
// docs/benchmarks.md, and the charts in docs/bench/*.svg.
//
// Only the text between RESULTS_BEGIN and RESULTS_END is rewritten; every
// other line of docs/benchmarks.md (the hand-written analysis) is kept.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

import type { CasbinPhaseResult, CasbinVariant } from "./casbin.js";
import { casbinModelText } from "./casbin.js";
import type { RowCounts, LoadTiming } from "./dataset.js";
import { type DirectoryBenchRow, directoryBenchTable } from "./directory.js";
import type { InprocResult, LagResult, PgLoadResult } from "./engine.js";
import { GRPC_TARGET_LABELS, type GrpcCompareResult, grpcMedians } from "./grpc-compare.js";
import { formatImportBench, type ImportBenchResult } from "./import.js";
import { HOT_TARGET_LABELS, type HotPathResult, type HotRegime, hotPathMedians, IDLE_SERVERS, type IdleServer } from "./hot-path.js";
import { INPROC_TARGET_LABELS, inprocMedians } from "./hot-path-inproc.js";
import { type PeersResult, peersHeadline, peersSection } from "./peers-report.js";
import { type RateLimitBenchRow, rateLimitTables } from "./ratelimit.js";
import { type ServerStackRow, STACKS, fmtUs, median } from "./server-stacks.js";
import { barChart, lineChart, shortNumber } from "./svg.js";

export const RESULTS_BEGIN = "<!-- bench:results:begin -->";
export const RESULTS_END = "<!-- bench:results:end -->";

// ---------------------------------------------------------------------------
// The run and the machine

export interface Machine {
  nproc: number;
  cpu: string;
  memGiB: number;
  node: string;
  kernel: string;
  loadStart: [number, number, number];
  loadEnd?: [number, number, number];
  versions: Record<string, string>;
}

export interface RunInfo {
  id: string;
  started: string;
  finished?: string;
  durationS?: number;
  quick: boolean;
  command: string;
  settings: Record<string, string>;
  machine: Machine;
  commit?: string;
  dirtySrc?: boolean;
}

function tryRun(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).trim();
  } catch {
    return undefined;
  }
}

function cpuModel(): string {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("model name"));
    if (line) return line.split(":").slice(1).join(":").trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? "unknown";
}

function packageVersion(name: string): string | undefined {
  const file = path.join(process.cwd(), "node_modules", name, "package.json");
  if (!existsSync(file)) return undefined;
  return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
}

export function describeMachine(): Machine {
  const versions: Record<string, string> = {};
  const h2 = tryRun(process.env["H2LOAD"] ?? "h2load", ["--version"]);
  if (h2) versions["h2load"] = h2.replace(/^h2load\s*/, "");
  for (const p of ["@grpc/grpc-js", "casbin", "rate-limiter-flexible", "ioredis", "postgres"]) {
    const v = packageVersion(p);
    if (v) versions[p] = v;
  }
  const [a = NaN, b = NaN, c = NaN] = os.loadavg();
  return {
    nproc: os.availableParallelism(),
    cpu: cpuModel(),
    memGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    loadStart: [a, b, c],
    versions,
  };
}

export function gitInfo(): { commit?: string; dirtySrc?: boolean } {
  const commit = tryRun("git", ["rev-parse", "--short", "HEAD"]);
  if (!commit) return {};
  const status = tryRun("git", ["status", "--porcelain", "--", "src", "migrations"]);
  return { commit, dirtySrc: status !== undefined && status !== "" };
}

// ---------------------------------------------------------------------------
// Results

export interface ScalePoint {
  scale: number;
  counts: RowCounts;
  inproc: Omit<InprocResult, "sampleDecisions">;
  pg?: PgLoadResult & { migrateMs: number; loader: LoadTiming[] };
}

export interface EnginePart {
  points: ScalePoint[];
  skipped: string[];
}

export interface CasbinRow extends CasbinPhaseResult {
  engine: { checksPerSec: number; p50Us: number; p99Us: number; buildMs: number; heapUsed: number; heapDelta: number; rss: number; maxRss: number };
}

export interface CasbinPart {
  rows: CasbinRow[];
  budgetMs: number;
  skipped: string[];
  /** casbin loaded without the loader's filters, smallest size, shared templates: disagreements with the engine and their causes. */
  unfiltered?: { assignments: number; compared: number; disagreements: number; userStatus: number; inactive: number; expired: number; unexplained: number };
}

export interface StacksPart {
  rows: ServerStackRow[];
  requests: number;
  warmup: number;
  rounds: number;
  command: string;
}

export interface RateLimitPart {
  rows: RateLimitBenchRow[];
  requests: number;
  warmup: number;
  rounds: number;
  concurrency: number;
  algorithm: string;
}

/** ManageDirectory throughput (bench/directory.ts). */
export interface DirectoryPart {
  rows: DirectoryBenchRow[];
  mutations: number;
}

export interface LagPart extends LagResult {
  smallScale: number;
}

export interface Parts {
  import?: ImportBenchResult;
  grpc?: GrpcCompareResult;
  hotpath?: HotPathResult;
  casbin?: CasbinPart;
  engine?: EnginePart;
  ratelimit?: RateLimitPart;
  lag?: LagPart;
  stacks?: StacksPart;
  directory?: DirectoryPart;
  peers?: PeersResult;
}
export type PartName = keyof Parts;
export const PART_NAMES: PartName[] = ["grpc", "hotpath", "peers", "casbin", "engine", "ratelimit", "lag", "stacks", "directory", "import"];

export interface Results {
  version: 1;
  runs: Record<string, RunInfo>;
  parts: { [K in PartName]?: { run: string; data: NonNullable<Parts[K]> } };
}

export async function readResults(file: string): Promise<Results> {
  try {
    const r = JSON.parse(await readFile(file, "utf8")) as Results;
    if (r.version === 1) return r;
  } catch {
    // none yet
  }
  return { version: 1, runs: {}, parts: {} };
}

/** Drops runs no part refers to any more. */
export function pruneRuns(r: Results): void {
  const used = new Set(Object.values(r.parts).map((p) => p.run));
  for (const id of Object.keys(r.runs)) if (!used.has(id)) delete r.runs[id];
}

// ---------------------------------------------------------------------------
// Formatting

const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
const mib = (bytes: number): string => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`);
const secs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
const ns = (x: number): string => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} ms` : x >= 1e3 ? `${(x / 1e3).toFixed(2)} µs` : `${x.toFixed(0)} ns`);
const usFmt = (us: number): string => ns(us * 1000);
/** Chart labels for a size in MiB. */
const memFmt = (m: number): string => (m >= 1024 ? `${shortNumber(m / 1024)} GiB` : `${shortNumber(m)} MiB`);
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : "n/a");
const ratio = (x: number): string => (!Number.isFinite(x) ? "n/a" : x >= 100 ? `${x.toFixed(0)}x` : x >= 10 ? `${x.toFixed(1)}x` : `${x.toFixed(2)}x`);

function runLine(run: RunInfo | undefined): string {
  if (!run) return "";
  const m = run.machine;
  return `Measured in run \`${run.id}\` (${run.started.replace("T", " ").replace(/\.\d+Z$/, " UTC")}${run.quick ? ", **quick settings**" : ""}${run.commit ? `, commit ${run.commit}${run.dirtySrc ? " plus uncommitted src/" : ""}` : ""}); 1-minute load average ${m.loadStart[0].toFixed(2)} at the start of the run.`;
}

const STACK_SHORT: Record<ServerStackRow["stack"], string> = {
  "bare-http2": "bare node:http2, canned",
  "grpc-js": "grpc-js + protobuf-es",
  "connect-node": "connect-node",
  "connect-node-const": "connect-node, const reply",
  "grpc-js-canned": "grpc-js, canned bytes",
  "grpc-js-no-channelz": "grpc-js, no channelz",
  authz: "authz server, log warn",
  "authz-log": "authz server, log info",
};

const VARIANT_LABEL: Record<CasbinVariant, string> = {
  template: "casbin, shared role templates",
  "per-org": "casbin, per-organization policies",
};

function inprocMedian(ip: Omit<InprocResult, "sampleDecisions">): { engine: number; floor: number } {
  return { engine: median(ip.checks.rounds.map((x) => x.engine.opsPerSec)), floor: median(ip.checks.rounds.map((x) => x.floor.opsPerSec)) };
}

/** How a regime's load is described in the tables. */
function regimeLabel(h: HotPathResult, regime: HotRegime): string {
  return regime === "fixed" && h.fixed
    ? `fixed ${int(h.fixed.rps * h.shape.clients)} req/s`
    : `h2load ${h.shape.clients}x${h.shape.streams}, as fast as served`;
}

/** Headline rows of the hot path: Check's server CPU per call against Health and the bare transport, per regime. */
function hotPathHeadline(h: HotPathResult): string[] {
  const out: string[] = [];
  for (const regime of h.fixed ? (["saturated", "fixed"] as const) : (["saturated"] as const)) {
    const med = hotPathMedians(h.rows, regime);
    const x = (t: string) => med.find((m) => m.target === t);
    const [bare, health, check, plain, checkJs] = [x("bare"), x("health"), x("check"), x("grpcjs"), x("checkjs")];
    if (!bare || !health || !check) continue;
    const load = regimeLabel(h, regime);
    out.push(
      `| gRPC Check server CPU per call (${load}; log level ${h.logLevel}; goal ≤ 1.1x) | ${usFmt(check.cpuUsPerCall)} | the same server's Health/Check | ${usFmt(health.cpuUsPerCall)} | ${ratio(check.ratioVsHealth)} |`,
      `| gRPC Check server CPU per call (${load}; goal ≤ 1.5x) | ${usFmt(check.cpuUsPerCall)} | bare node:http2 canned reply | ${usFmt(bare.cpuUsPerCall)} | ${ratio(check.ratioVsBare)} |`,
    );
    if (checkJs)
      out.push(
        `| gRPC Check through grpc-js (AUTHZ_GRPC_LEAN=off; ${load}), server CPU per call | ${usFmt(checkJs.cpuUsPerCall)} | bare node:http2 canned reply | ${usFmt(bare.cpuUsPerCall)} | ${ratio(checkJs.ratioVsBare)} |`,
      );
    if (plain)
      out.push(
        `| plain @grpc/grpc-js Health server CPU per call (${load}; the floor through grpc-js) | ${usFmt(plain.cpuUsPerCall)} | bare node:http2 canned reply | ${usFmt(bare.cpuUsPerCall)} | ${ratio(plain.ratioVsBare)} |`,
      );
  }
  return [...out, ...inprocHeadline(h)];
}

const IDLE_LABELS: Record<IdleServer, string> = {
  bare: "bare node:http2",
  grpcjs: "plain @grpc/grpc-js",
  authz: "authz (as shipped)",
  authzjs: "authz, AUTHZ_GRPC_LEAN=off",
};

function idleSection(h: HotPathResult): string[] {
  if (!h.idle) return [];
  const ms = h.idle.msPerSecond;
  return [
    `Idle, before the rounds: every server left without calls for the same ${(h.idle.windowMs / 1000).toFixed(0)} s window (timers and background work; authz follows PostgreSQL's change log). At the fixed rate this is paid on top of the calls.`,
    "",
    "| server | CPU while idle |",
    "|---|---:|",
    ...IDLE_SERVERS.map((s) => `| ${IDLE_LABELS[s]} | ${ms[s].toFixed(2)} ms/s |`),
    "",
  ];
}

function inprocHeadline(h: HotPathResult): string[] {
  if (!h.inprocess) return [];
  const m = inprocMedians(h.inprocess.rows);
  const x = (t: string) => m.find((r) => r.target === t)?.cpuUsPerCall ?? NaN;
  return [
    `| Check in process: decode + guard + handler + encode, CPU per call | ${usFmt(x("check"))} | authz Health the same way | ${usFmt(x("health"))} | ${ratio(x("check") / x("health"))} |`,
    `| authz Health in process, CPU per call | ${usFmt(x("health"))} | a plain grpc-js handler, the same way | ${usFmt(x("plain"))} | ${ratio(x("health") / x("plain"))} |`,
  ];
}

/** The hot-path section: server CPU per call per round. */
function hotPathSection(h: HotPathResult, run: RunInfo | undefined): string[] {
  const out = ["### The hot path: server CPU per call (Check, Health, bare http2)", "", runLine(run), ""];
  out.push(
    `One run, ${h.rounds} round(s), targets interleaved in each round (${h.rows.some((r) => r.target === "checkjs") ? "bare, plain grpc-js, Health, Check on the lean path, Check through grpc-js on a second authz server with AUTHZ_GRPC_LEAN=off" : "bare, plain grpc-js, Health, Check"}), each after ${int(h.warmup)} warm-up requests, ${int(h.requests)} measured requests, ` +
      `h2load with ${h.shape.clients} connections x ${h.shape.streams} streams. The authz server is \`createApp\` as shipped (node without flags, as the Dockerfile runs it) at the default log level (${h.logLevel}; ` +
      `the shipped pino logger writing to /dev/null), PostgreSQL with the dataset at scale ${h.smallScale}, authentication on (API key file); the bare server is a \`node:http2\` ` +
      `handler writing a canned \`SERVING\` reply; the plain grpc-js server is \`@grpc/grpc-js\` with protobuf-es serializers and a handler returning \`SERVING\` (channelz off, as authz). Server CPU is the run time of every thread of the server process (/proc/PID/task/*/schedstat) over the measured requests, ` +
      `so the load generator's CPU is not in it. Every reply is checked to be exactly the verified reply's length. CPU steal during the part: ${pct(h.stealShare)}.` +
      (h.fixed
        ? ` Each round also runs every target at a fixed rate (${int(h.fixed.rps)} req/s per connection, ${int(h.fixed.rps * h.shape.clients)} req/s in all, ${int(h.fixed.requests)} measured requests): the same load for every server, so the per-call figures do not depend on how many requests each read of the socket finds, which varies with the machine's load when h2load sends as fast as it is answered.`
        : ""),
  );
  out.push("", "| round | load | target | server CPU per call | req/s | ratio vs bare http2 | ratio vs Health/Check |", "|---:|---|---|---:|---:|---:|---:|");
  const medians = [...hotPathMedians(h.rows, "saturated"), ...(h.fixed ? hotPathMedians(h.rows, "fixed") : [])];
  for (const x of [...h.rows, ...medians]) {
    out.push(
      `| ${Number.isNaN(x.round) ? "**median**" : x.round} | ${regimeLabel(h, x.regime ?? "saturated")} | ${HOT_TARGET_LABELS[x.target]} | ${usFmt(x.cpuUsPerCall)} | ${int(x.reqPerSec)} | ${ratio(x.ratioVsBare)} | ${ratio(x.ratioVsHealth)} |`,
    );
  }
  out.push("", "Commands (PORT and KEY filled in by the benchmark; `frame.bin` is the framed request message):", "", "```");
  for (const [t, cmd] of Object.entries(h.commands)) out.push(`# ${t}\n${cmd}`);
  if (h.fixed) out.push(`# fixed-rate runs: the same with -n ${h.fixed.requests} --rps ${h.fixed.rps}`);
  out.push("```", "", ...idleSection(h));
  if (!h.inprocess) return out;
  out.push(
    `Without the transport (bench/hot-path-inproc.ts): the method createGrpcServer registers with grpc-js, called in the benchmark's process ${int(h.inprocess.calls)} times per round ` +
      "with the decoded request and its metadata, request decoding and response encoding included; the parts are the shipped ones assembled as src/app/parts.ts does " +
      "(log level info to /dev/null, metrics, API key guard), the engine snapshot built from the same generated rows instead of loaded from PostgreSQL.",
    "",
    "| round | target | CPU per call |",
    "|---:|---|---:|",
  );
  for (const x of h.inprocess.rows) out.push(`| ${x.round} | ${INPROC_TARGET_LABELS[x.target]} | ${usFmt(x.cpuUsPerCall)} |`);
  for (const x of inprocMedians(h.inprocess.rows)) out.push(`| **median** | ${INPROC_TARGET_LABELS[x.target]} | ${usFmt(x.cpuUsPerCall)} |`);
  out.push("");
  return out;
}

// ---------------------------------------------------------------------------
// Markdown

export interface Rendered {
  markdown: string;
  charts: Record<string, string>;
}

export function render(r: Results, chartDir: string): Rendered {
  const charts: Record<string, string> = {};
  const out: string[] = [];
  const img = (file: string, alt: string) => `![${alt}](${chartDir}/${file})`;
  const runOf = (p: PartName) => {
    const e = r.parts[p];
    return e ? r.runs[e.run] : undefined;
  };

  out.push(
    "_Generated by `npm run bench` (bench/run.ts) from docs/bench/results.json: do not edit by hand; a new run replaces everything between the markers._",
  );
  out.push("");

  // --- Runs and machine ------------------------------------------------------
  out.push("### Runs and machine");
  out.push("");
  out.push("| run | parts | started (UTC) | duration | settings | commit | load average at start (1/5/15 min) |");
  out.push("|---|---|---|---:|---|---|---|");
  for (const run of Object.values(r.runs).sort((a, b) => a.started.localeCompare(b.started))) {
    const parts = PART_NAMES.filter((p) => r.parts[p]?.run === run.id);
    const settings = Object.entries(run.settings)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    out.push(
      `| \`${run.id}\` | ${parts.join(", ")} | ${run.started.replace("T", " ").replace(/\.\d+Z$/, "")} | ${run.durationS !== undefined ? `${(run.durationS / 60).toFixed(1)} min` : "n/a"} | ${run.quick ? "quick; " : ""}${settings || "defaults"} | ${run.commit ?? "n/a"}${run.dirtySrc ? " (+ uncommitted src/)" : ""} | ${run.machine.loadStart.map((x) => x.toFixed(2)).join(" / ")} |`,
    );
  }
  out.push("");
  const anyRun = Object.values(r.runs).sort((a, b) => b.started.localeCompare(a.started))[0];
  if (anyRun) {
    const m = anyRun.machine;
    out.push(
      `Machine: ${m.nproc} vCPU (\`nproc\`), ${m.cpu}, ${m.memGiB.toFixed(1)} GiB RAM, ${m.kernel}, Node ${m.node}; ` +
        Object.entries(m.versions)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ") +
        ". Load generator, servers, PostgreSQL and Redis share the machine over loopback; compare figures within one run, as ratios.",
    );
    out.push("");
    out.push(`Command: \`${anyRun.command}\`.`);
    out.push("");
  }

  // --- Headline ----------------------------------------------------------------
  out.push("### Headline: each figure against its baseline in the same run");
  out.push("");
  out.push("| what | figure | compared with | baseline | ratio (figure ÷ baseline) |");
  out.push("|---|---:|---|---:|---:|");
  const g = r.parts.grpc?.data;
  if (g) {
    const med = grpcMedians(g.rows);
    const row = (t: string) => med.find((x) => x.target === t);
    const bare = row("bare");
    const health = row("health");
    for (const t of ["check", "ratelimit"] as const) {
      const x = row(t);
      if (!x || !bare || !health) continue;
      out.push(
        `| gRPC ${t === "check" ? "Check" : "ConsumeRateLimit"} throughput (h2load, ${g.shape.clients}x${g.shape.streams} in flight) | ${int(x.reqPerSec)} req/s | the same server's Health/Check | ${int(health.reqPerSec)} req/s | ${ratio(x.ratioVsHealth)} |`,
      );
      out.push(
        `| gRPC ${t === "check" ? "Check" : "ConsumeRateLimit"} throughput | ${int(x.reqPerSec)} req/s | bare node:http2 canned reply (transport limit) | ${int(bare.reqPerSec)} req/s | ${ratio(x.ratioVsBare)} |`,
      );
      out.push(
        `| gRPC ${t === "check" ? "Check" : "ConsumeRateLimit"} latency p50 / p99 | ${usFmt(x.p50Us)} / ${usFmt(x.p99Us)} | Health/Check p50 / p99 | ${usFmt(health.p50Us)} / ${usFmt(health.p99Us)} | ${ratio(x.p50Us / health.p50Us)} / ${ratio(x.p99Us / health.p99Us)} |`,
      );
    }
  }
  const hp = r.parts.hotpath?.data;
  if (hp) out.push(...hotPathHeadline(hp));
  const pe = r.parts.peers?.data;
  if (pe) out.push(...peersHeadline(pe));
  const c = r.parts.casbin?.data;
  if (c) {
    const scales = [...new Set(c.rows.map((x) => x.assignments))].sort((a, b) => a - b);
    for (const variant of ["template", "per-org"] as const) {
      const xs = c.rows.filter((x) => x.variant === variant);
      const top = xs.sort((a, b) => b.assignments - a.assignments)[0];
      if (!top) continue;
      out.push(
        `| engine.check in process, ${int(top.assignments)} assignments | ${int(top.engine.checksPerSec)} checks/s | ${VARIANT_LABEL[variant]} (enforceSync) | ${int(top.checksPerSec)} checks/s | ${ratio(top.engine.checksPerSec / top.checksPerSec)} |`,
      );
    }
    const topT = c.rows.filter((x) => x.variant === "template").sort((a, b) => b.assignments - a.assignments)[0];
    if (topT) {
      out.push(
        `| engine heap after build, ${int(topT.assignments)} assignments | ${mib(topT.engine.heapDelta)} | ${VARIANT_LABEL.template}, heap after load | ${mib(topT.after.heapUsed - topT.before.heapUsed)} | ${ratio(topT.engine.heapDelta / (topT.after.heapUsed - topT.before.heapUsed))} |`,
      );
      out.push(
        `| engine build from the rows, ${int(topT.assignments)} assignments | ${secs(topT.engine.buildMs)} | ${VARIANT_LABEL.template}, load from the same rows | ${secs(topT.loadMs)} | ${ratio(topT.engine.buildMs / topT.loadMs)} |`,
      );
    }
    const agreed = c.rows.reduce((a, x) => a + x.agreed, 0);
    const compared = c.rows.reduce((a, x) => a + x.compared, 0);
    if (compared > 0)
      out.push(
        `| decisions: casbin equal to the engine (${scales.length === 1 ? "one size" : `${scales.length} sizes`}, both variants) | ${int(agreed)} of ${int(compared)} | | | ${((agreed / compared) * 100).toFixed(2)}% |`,
      );
  }
  const e = r.parts.engine?.data;
  if (e && e.points.length > 0) {
    const pts = [...e.points].sort((a, b) => a.counts.role_assignments - b.counts.role_assignments);
    const top = pts[pts.length - 1] as ScalePoint;
    const first = pts[0] as ScalePoint;
    const m = inprocMedian(top.inproc);
    out.push(
      `| engine.check in process, ${int(top.counts.role_assignments)} assignments | ${int(m.engine)} checks/s | \`Map.get\` + bit test over the same queries (floor) | ${int(m.floor)} ops/s | ${ratio(m.engine / m.floor)} |`,
    );
    if (pts.length > 1) {
      out.push(
        `| engine.check p50 / p99 at ${int(top.counts.role_assignments)} assignments | ${ns(top.inproc.checks.engineLatency.p50Ns)} / ${ns(top.inproc.checks.engineLatency.p99Ns)} | the same at ${int(first.counts.role_assignments)} | ${ns(first.inproc.checks.engineLatency.p50Ns)} / ${ns(first.inproc.checks.engineLatency.p99Ns)} | ${ratio(top.inproc.checks.engineLatency.p50Ns / first.inproc.checks.engineLatency.p50Ns)} / ${ratio(top.inproc.checks.engineLatency.p99Ns / first.inproc.checks.engineLatency.p99Ns)} |`,
      );
    }
    if (top.pg)
      out.push(
        `| cold \`loadSnapshot\` from Postgres, ${int(top.counts.role_assignments)} assignments | ${secs(top.pg.loadMs)} | \`buildEngine\` from generated rows in process | ${secs(top.inproc.buildMs)} | ${ratio(top.pg.loadMs / top.inproc.buildMs)} |`,
      );
  }
  const rl = r.parts.ratelimit?.data;
  if (rl) {
    const settings = [...new Map(rl.rows.map((x) => [`${x.keys ?? 1}/${x.algorithm}`, { keys: x.keys ?? 1, a: x.algorithm }])).values()];
    for (const { keys, a } of settings) {
      const rows = rl.rows.filter((x) => x.algorithm === a && (x.keys ?? 1) === keys);
      const medOf = (p: string) => median(rows.filter((x) => x.part === p).map((x) => x.opsPerSec));
      const ratioOf = (p: string, k: "ratioVsEvalsha" | "ratioVsRlflex" = "ratioVsEvalsha") =>
        median(rows.filter((x) => x.part === p).map((x) => x[k] ?? Number.NaN));
      const tag = `${a ? `, ${a}` : ""}${keys > 1 ? `, calls over ${int(keys)} subjects` : ", one subject"}`;
      out.push(
        `| ConsumeRateLimit decisions, authz store layer in process${tag} | ${int(medOf("store"))}/s | raw EVALSHA of the single-call script, one call per command, same Redis | ${int(medOf("evalsha"))}/s | ${ratio(ratioOf("store"))} |`,
      );
      if (rows.some((x) => x.part === "rlflex"))
        out.push(
          `| ConsumeRateLimit decisions, authz store layer in process${tag} | ${int(medOf("store"))}/s | rate-limiter-flexible \`consume\` (its fixed window) | ${int(medOf("rlflex"))}/s | ${ratio(ratioOf("store", "ratioVsRlflex"))} |`,
        );
      if (rows.some((x) => x.part === "grpc"))
        out.push(
          `| ConsumeRateLimit over gRPC (rate-limit service alone)${tag} | ${int(medOf("grpc"))}/s | raw EVALSHA | ${int(medOf("evalsha"))}/s | ${ratio(ratioOf("grpc"))} |`,
        );
    }
  }
  const l = r.parts.lag?.data;
  if (l) {
    out.push(
      `| write → visible on a second replica (both replicas), p50 / p99 | ${l.fromWriteMs.p50.toFixed(2)} / ${l.fromWriteMs.p99.toFixed(2)} ms | the write's own round trip (median) | ${l.writeMs.p50.toFixed(2)} ms | ${ratio(l.fromWriteMs.p50 / l.writeMs.p50)} / ${ratio(l.fromWriteMs.p99 / l.writeMs.p50)} |`,
    );
  }
  const im = r.parts.import?.data;
  if (im) {
    out.push(
      `| \`authz import\` in bulk, ${int(im.bulk.records)} records into an empty database | ${int(im.bulk.recordsPerSec)} records/s | one statement per record (the path before), ${int(im.rowByRow.records)} records | ${int(im.rowByRow.recordsPerSec)} records/s | ${ratio(im.bulk.recordsPerSec / im.rowByRow.recordsPerSec)} |`,
    );
    const largest = im.curve?.at(-1);
    const smallest = im.curve?.[0];
    if (largest && smallest && largest !== smallest) {
      out.push(
        `| \`authz import\` in bulk, ${int(largest.records)} records into an empty database | ${int(largest.recordsPerSec)} records/s | the same at ${int(smallest.records)} records | ${int(smallest.recordsPerSec)} records/s | ${ratio(largest.recordsPerSec / smallest.recordsPerSec)} |`,
      );
    }
  }
  const s = r.parts.stacks?.data;
  if (s) {
    const rows = s.rows;
    const medRatio = (id: string) => median(rows.filter((x) => x.stack === id).map((x) => x.ratioVsBare));
    const medRps = (id: string) => median(rows.filter((x) => x.stack === id).map((x) => x.reqPerSec));
    if (rows.some((x) => x.stack === "grpc-js"))
      out.push(
        `| @grpc/grpc-js trivial RPC (the stack chosen) | ${int(medRps("grpc-js"))} req/s | bare node:http2 canned reply | ${int(medRps("bare-http2"))} req/s | ${ratio(medRatio("grpc-js"))} |`,
      );
    if (rows.some((x) => x.stack === "connect-node"))
      out.push(
        `| connect-node trivial RPC (not chosen for gRPC) | ${int(medRps("connect-node"))} req/s | bare node:http2 canned reply | ${int(medRps("bare-http2"))} req/s | ${ratio(medRatio("connect-node"))} |`,
      );
  }
  out.push("");
  out.push("Ratios are per round and then the median over rounds where there are rounds; the figures are medians.");
  out.push("");

  // --- gRPC --------------------------------------------------------------------
  if (g) {
    out.push("### gRPC: Check and ConsumeRateLimit against the trivial RPC and the transport limit");
    out.push("");
    out.push(runLine(runOf("grpc")));
    out.push("");
    out.push(
      `One run, ${g.rounds} round(s), targets interleaved in each round (bare, Health, Check, ConsumeRateLimit), each after ${int(g.warmup)} warm-up requests, ` +
        `${int(g.requests)} measured requests, h2load with ${g.shape.clients} connections x ${g.shape.streams} streams (${g.shape.clients * g.shape.streams} requests in flight). ` +
        `The authz server is \`createApp\` as shipped (PostgreSQL with the dataset at scale ${g.smallScale}, Redis for rate limits, authentication on with an API key file, log level warn) in a child process; ` +
        `the bare server (a \`node:http2\` handler writing a canned \`SERVING\` reply) in another; h2load in a third. ` +
        `Check: ${g.check.subject} \`${g.check.permission}\` on ${g.check.resource}. ConsumeRateLimit: policy \`bench_grpc\` (scope key, limit 2,147,483,647 per hour, sliding window), cost 1, one key. ` +
        `p50/p99 are per request from h2load's \`--log-file\`. CPU steal during the part: ${pct(g.stealShare)}.`,
    );
    out.push("");
    out.push("Verified: " + g.verified.join("; ") + ".");
    out.push("");
    out.push("| round | target | req/s | mean | p50 | p99 | ratio vs bare http2 | ratio vs Health/Check |");
    out.push("|---:|---|---:|---:|---:|---:|---:|---:|");
    for (const x of [...g.rows, ...grpcMedians(g.rows)]) {
      out.push(
        `| ${Number.isNaN(x.round) ? "**median**" : x.round} | ${GRPC_TARGET_LABELS[x.target]} | ${int(x.reqPerSec)} | ${fmtUs(x.meanUs)} | ${fmtUs(x.p50Us)} | ${fmtUs(x.p99Us)} | ${ratio(x.ratioVsBare)} | ${ratio(x.ratioVsHealth)} |`,
      );
    }
    out.push("");
    out.push("Commands (PORT and KEY filled in by the benchmark; `frame.bin` is the framed request message):");
    out.push("");
    out.push("```");
    for (const [t, cmd] of Object.entries(g.commands)) out.push(`# ${t}\n${cmd}`);
    out.push("```");
    out.push("");
    const med = grpcMedians(g.rows);
    charts["grpc-throughput.svg"] = barChart({
      title: "gRPC throughput, one run, same h2load settings",
      subtitle: `h2load -c ${g.shape.clients} -m ${g.shape.streams}, ${int(g.requests)} requests per target and round; median of ${g.rounds} round(s); ratio vs bare http2 in the label`,
      yLabel: "requests per second",
      categories: med.map((x) => `${GRPC_TARGET_LABELS[x.target]} (${ratio(x.ratioVsBare)})`),
      series: [{ name: "req/s", values: med.map((x) => x.reqPerSec) }],
      format: (v) => int(v),
    });
    charts["grpc-latency.svg"] = barChart({
      title: "gRPC latency per request at the same load",
      subtitle: `${g.shape.clients * g.shape.streams} requests in flight; from h2load's per-request log; median of ${g.rounds} round(s)`,
      yLabel: "milliseconds",
      categories: med.map((x) => GRPC_TARGET_LABELS[x.target]),
      series: [
        { name: "p50", values: med.map((x) => x.p50Us / 1000) },
        { name: "p99", values: med.map((x) => x.p99Us / 1000) },
      ],
      format: (v) => v.toFixed(2),
    });
    out.push(img("grpc-throughput.svg", "gRPC throughput: bare http2, Health, Check, ConsumeRateLimit"));
    out.push("");
    out.push(img("grpc-latency.svg", "gRPC latency p50 and p99"));
    out.push("");
  }

  if (hp) out.push(...hotPathSection(hp, runOf("hotpath")));
  if (pe) out.push(...peersSection(pe, runLine(runOf("peers"))));

  // --- casbin ---------------------------------------------------------------------
  if (c) {
    out.push("### The engine against node-casbin on the same dataset");
    out.push("");
    out.push(runLine(runOf("casbin")));
    out.push("");
    out.push(
      "Both load the same generated rows (bench/dataset.ts) in a fresh child process each and answer the same random checks " +
        "(262,144 distinct queries, cycled: user, permission key, organization). casbin: `newEnforcer(model, adapter)` with an adapter that pushes the rows as policy lines " +
        "(no CSV parsing), then `enforceSync(user, organization, permission)` per check, each timed alone. The engine: `buildEngine` and `engine.check`; its checks/s is the " +
        "median of three untimed rounds, its latency from each check timed alone. Heap and RSS are after a full GC, the heap figure is the growth over the process before the load. " +
        `casbin's timed loop stops after ${int(c.budgetMs / 1000)} s (the per-organization variant is slow); decisions are compared with the engine's on the first queries of the same list.`,
    );
    out.push("");
    out.push(
      "The casbin model (RBAC with domains, domain = organization, role hierarchy through `g` between roles of one domain; global roles in the domain `global`):",
    );
    out.push("");
    out.push("```ini");
    out.push(casbinModelText("per-org").trim());
    out.push("```");
    out.push("");
    out.push(
      "- **per-organization policies** (faithful): every organization's grants are its own `p` lines (`p, viewer, <organization id>, doc.read`), 11 per organization, as they are rows in authz.",
    );
    out.push(
      '- **shared role templates** (casbin\'s best case): the matcher tests `p.dom == "org"` instead of `p.dom == r.dom` and one `p, viewer, org, doc.read` line per (role, permission) serves every organization; ' +
        "legal only because every generated organization has the same grants (the loader verifies that). Role links (`g`) are per organization in both.",
    );
    out.push(
      "- What casbin has no notion of is applied by the loader, as an application would have to: assignments of locked or disabled users, inactive assignments and assignments past `valid_until` are left out; tenants and primary roles are not loaded.",
    );
    out.push("");
    out.push(
      "| assignments | implementation | p lines | g lines | load / build | heap | RSS (peak) | checks/s | p50 | p99 | engine checks/s ÷ this | agreement with the engine |",
    );
    out.push("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    const byScale = [...new Set(c.rows.map((x) => x.assignments))].sort((a, b) => a - b);
    for (const a of byScale) {
      const rows = c.rows.filter((x) => x.assignments === a);
      const e0 = rows[0]?.engine;
      if (e0) {
        out.push(
          `| ${int(a)} | **authz engine** | | | ${secs(e0.buildMs)} | ${mib(e0.heapDelta)} | ${mib(e0.rss)} (${mib(e0.maxRss)}) | ${int(e0.checksPerSec)} | ${usFmt(e0.p50Us)} | ${usFmt(e0.p99Us)} | 1.00x | |`,
        );
      }
      for (const x of rows) {
        out.push(
          `| ${int(a)} | ${VARIANT_LABEL[x.variant]} | ${int(x.load.p)} | ${int(x.load.g)} | ${secs(x.loadMs)} | ${mib(x.after.heapUsed - x.before.heapUsed)} | ${mib(x.after.rss)} (${mib(x.maxRss)}) | ${int(x.checksPerSec)} | ${usFmt(x.p50Us)} | ${usFmt(x.p99Us)} | ${ratio(x.engine.checksPerSec / x.checksPerSec)} | ${x.agreed} / ${x.compared}${x.compared ? ` (${((x.agreed / x.compared) * 100).toFixed(1)}%)` : ""} |`,
        );
      }
    }
    out.push("");
    const dropped = [...c.rows].sort((x, y) => y.assignments - x.assignments)[0]?.load;
    if (dropped) {
      out.push(
        `Assignments the casbin loader left out at the largest scale: ${int(dropped.droppedUserStatus)} of locked or disabled users, ${int(dropped.droppedInactive)} inactive, ${int(dropped.droppedExpired)} expired. ` +
          `casbin checks measured per scale: ${c.rows.map((x) => `${VARIANT_LABEL[x.variant].replace("casbin, ", "")} ${shortNumber(x.assignments)}: ${int(x.checks)}`).join("; ")}.`,
      );
      out.push("");
    }
    const u = c.unfiltered;
    if (u) {
      out.push(
        `Why the filters: loaded without them (every assignment, whatever the user's status, \`active\` or \`valid_until\`; ${int(u.assignments)} assignments, shared role templates), ` +
          `casbin disagreed with the engine on ${int(u.disagreements)} of ${int(u.compared)} checks (${((u.disagreements / Math.max(1, u.compared)) * 100).toFixed(2)}%): ` +
          `${int(u.userStatus)} where the only granting assignments belong to a locked or disabled user, ${int(u.inactive)} where they are inactive, ${int(u.expired)} where they are expired ` +
          `(computed from the dataset's formulas), and ${int(u.unexplained)} that these causes do not explain.`,
      );
      out.push("");
    }
    const dis = c.rows.flatMap((x) => x.disagreements.map((d) => ({ ...d, variant: x.variant, assignments: x.assignments })));
    if (dis.length > 0) {
      out.push("Disagreements (first few):");
      out.push("");
      out.push("| assignments | variant | subject | permission | organization | engine | casbin | dataset formula |");
      out.push("|---:|---|---|---|---|---|---|---|");
      for (const d of dis.slice(0, 10))
        out.push(`| ${int(d.assignments)} | ${d.variant} | ${d.subject} | ${d.permission} | ${d.resource} | ${d.engine} | ${d.casbin} | ${d.expected} |`);
      out.push("");
    }
    for (const sk of c.skipped) out.push(`Not measured: ${sk}`);
    if (c.skipped.length) out.push("");
    const series = (variant: CasbinVariant | "engine", f: (x: CasbinRow) => number): Array<[number, number]> =>
      variant === "engine"
        ? byScale.map((a) => [a, f(c.rows.find((x) => x.assignments === a) as CasbinRow)] as [number, number])
        : c.rows.filter((x) => x.variant === variant).map((x) => [x.assignments, f(x)] as [number, number]);
    charts["casbin-checks.svg"] = lineChart({
      title: "Checks per second in process: the engine against node-casbin",
      subtitle: "same dataset, same random checks, one process each",
      xLabel: "role assignments",
      yLabel: "checks per second",
      xLog: true,
      yLog: true,
      series: [
        { name: "authz engine", points: series("engine", (x) => x.engine.checksPerSec) },
        { name: VARIANT_LABEL.template, points: series("template", (x) => x.checksPerSec) },
        { name: VARIANT_LABEL["per-org"], points: series("per-org", (x) => x.checksPerSec) },
      ],
    });
    charts["casbin-memory.svg"] = lineChart({
      title: "Heap after loading the dataset: the engine against node-casbin",
      subtitle: "growth of the V8 heap after a full GC",
      xLabel: "role assignments",
      yLabel: "memory",
      yFormat: memFmt,
      xLog: true,
      yLog: true,
      series: [
        { name: "authz engine", points: series("engine", (x) => x.engine.heapDelta / 2 ** 20) },
        { name: VARIANT_LABEL.template, points: series("template", (x) => (x.after.heapUsed - x.before.heapUsed) / 2 ** 20) },
        { name: VARIANT_LABEL["per-org"], points: series("per-org", (x) => (x.after.heapUsed - x.before.heapUsed) / 2 ** 20) },
      ],
    });
    charts["casbin-load.svg"] = lineChart({
      title: "Build / load time from the generated rows",
      subtitle: "buildEngine against newEnforcer(model, adapter), generation of the rows included in both",
      xLabel: "role assignments",
      yLabel: "seconds",
      xLog: true,
      yLog: true,
      series: [
        { name: "authz engine", points: series("engine", (x) => x.engine.buildMs / 1000) },
        { name: VARIANT_LABEL.template, points: series("template", (x) => x.loadMs / 1000) },
        { name: VARIANT_LABEL["per-org"], points: series("per-org", (x) => x.loadMs / 1000) },
      ],
    });
    out.push(img("casbin-checks.svg", "checks per second, engine vs casbin, by dataset size"));
    out.push("");
    out.push(img("casbin-memory.svg", "heap after load, engine vs casbin"));
    out.push("");
    out.push(img("casbin-load.svg", "load time, engine vs casbin"));
    out.push("");
  }

  // --- Rate limits -------------------------------------------------------------------
  if (rl) {
    out.push("### ConsumeRateLimit against raw EVALSHA and rate-limiter-flexible");
    out.push("");
    out.push(runLine(runOf("ratelimit")));
    out.push("");
    out.push(
      `Same Redis, one counter each, cost 1, a limit never reached (every call allowed and written), authz algorithm(s) ${[...new Set(rl.rows.map((x) => x.algorithm ?? rl.algorithm))].join(", ")}, ${rl.concurrency} calls in flight, ` +
        `${int(rl.requests)} calls per path and round after ${int(rl.warmup)} warm-up, ${rl.rounds} round(s), paths interleaved. ` +
        "a: the rate-limit handlers on the production gRPC server code in a child process (no database: policies from an in-memory index), driven by " +
        `\`h2load -c 4 -m ${Math.max(1, Math.floor(rl.concurrency / 4))}\`, every call checked to be decided by Redis; b: \`limiter.consume()\` → RedisStore in process; ` +
        "c: raw `EVALSHA` of the production single-call Lua script (what the store sends for a batch of one), one call per command, through one ioredis client (auto-pipelining on); d: rate-limiter-flexible `RateLimiterRedis.consume` (auto-pipelining on; its own fixed window, the same in every algorithm's rows). " +
        "Per call, from Redis' INFO (commandstats, cpu, stats) and /proc read around the measured calls: Redis' time inside script commands, its main thread's CPU, bytes read plus written, " +
        "and the CPU of the calling process (part a: the gRPC server child; its figure includes h2load's warm-up calls). The Redis figures are exact only on a Redis nobody else used during the run.",
    );
    out.push("");
    out.push(...rateLimitTables(rl.rows));
    out.push("");
    const partsOrder = [...new Set(rl.rows.map((x) => x.part))];
    const firstAlg = rl.rows[0]?.algorithm;
    const chartRows = rl.rows.filter((x) => x.algorithm === firstAlg && (x.keys ?? 1) === 1);
    charts["ratelimit.svg"] = barChart({
      title: "Rate-limit decisions per second, same Redis",
      subtitle: `${rl.concurrency} calls in flight, ${firstAlg ?? rl.algorithm}, one subject; ratio vs raw EVALSHA in the label; median of ${rl.rounds} round(s)`,
      yLabel: "decisions per second",
      categories: partsOrder.map((p) => {
        const xs = chartRows.filter((x) => x.part === p);
        const name = {
          grpc: "ConsumeRateLimit over gRPC",
          store: "authz store layer in process",
          evalsha: "raw EVALSHA (same script)",
          rlflex: "rate-limiter-flexible",
        }[p];
        return `${name} (${ratio(median(xs.map((x) => x.ratioVsEvalsha)))})`;
      }),
      series: [{ name: "ops/s", values: partsOrder.map((p) => median(chartRows.filter((x) => x.part === p).map((x) => x.opsPerSec))) }],
      format: (v) => int(v),
    });
    out.push(img("ratelimit.svg", "rate-limit decisions per second"));
    out.push("");
  }

  // --- Scale curve ----------------------------------------------------------------------
  if (e && e.points.length > 0) {
    const pts = [...e.points].sort((a, b) => a.counts.role_assignments - b.counts.role_assignments);
    out.push(
      `### Scale curve: the engine from ${shortNumber((pts[0] as ScalePoint).counts.role_assignments)} to ${shortNumber((pts[pts.length - 1] as ScalePoint).counts.role_assignments)} assignments`,
    );
    out.push("");
    out.push(runLine(runOf("engine")));
    out.push("");
    out.push(
      "Each size is the same generator at another `BENCH_SCALE` (users, organizations, tenants and assignments together: 5 assignments per user, 10 users per organization; the largest size is described below). " +
        "In process: `buildEngine` from the generated rows in a fresh child process (generation included), then `engine.check` (three untimed rounds for checks/s; each check timed alone for latency). " +
        "From Postgres: a fresh database filled by the SQL loader, then `loadSnapshot` in a fresh process (cold: nothing cached in the process). Memory after a full GC.",
    );
    out.push("");
    out.push(
      "| assignments | users | organizations | build in process | RSS after build | heap after build | check p50 | check p99 | checks/s | floor ops/s | SQL loader | cold `loadSnapshot` | RSS after load (peak) | mismatches |",
    );
    out.push("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const p of pts) {
      const ip = p.inproc;
      const m = inprocMedian(ip);
      const loader = p.pg ? p.pg.loader.reduce((a, t) => a + t.ms, 0) : NaN;
      out.push(
        `| ${int(p.counts.role_assignments)} | ${int(p.counts.users)} | ${int(p.counts.organizations)} | ${secs(ip.buildMs)} | ${mib(ip.after.rss)} | ${mib(ip.after.heapUsed)} | ${ns(ip.checks.engineLatency.p50Ns)} | ${ns(ip.checks.engineLatency.p99Ns)} | ${int(m.engine)} | ${int(m.floor)} | ` +
          `${p.pg ? secs(loader) : "not run"} | ${p.pg ? secs(p.pg.loadMs) : "not run"} | ${p.pg ? `${mib(p.pg.after.rss)} (${mib(p.pg.maxRss)})` : ""} | ${ip.checks.mismatches}${p.pg ? ` / ${p.pg.mismatches}` : ""} |`,
      );
    }
    out.push("");
    out.push(
      "Mismatches: in-process checks (262,144) / checks on the engine loaded from Postgres (20,000), each against the decision computed from the dataset's formulas.",
    );
    out.push("");
    for (const sk of e.skipped) out.push(`Not measured: ${sk}`);
    if (e.skipped.length) out.push("");
    const xs = (f: (p: ScalePoint) => number | undefined) =>
      pts
        .map((p) => [p.counts.role_assignments, f(p)] as [number, number | undefined])
        .filter((x): x is [number, number] => x[1] !== undefined && Number.isFinite(x[1]));
    charts["scale-latency.svg"] = lineChart({
      title: "engine.check latency as the dataset grows",
      subtitle: "in process, each check timed alone (process.hrtime.bigint)",
      xLabel: "role assignments",
      yLabel: "microseconds",
      xLog: true,
      yLog: true,
      series: [
        { name: "p50", points: xs((p) => p.inproc.checks.engineLatency.p50Ns / 1000) },
        { name: "p99", points: xs((p) => p.inproc.checks.engineLatency.p99Ns / 1000) },
        { name: "floor p50 (Map.get + bit test)", points: xs((p) => p.inproc.checks.floorLatency.p50Ns / 1000), dashed: true },
      ],
    });
    charts["scale-load.svg"] = lineChart({
      title: "Build and load time as the dataset grows",
      subtitle: "buildEngine from generated rows; SQL loader; cold loadSnapshot from PostgreSQL",
      xLabel: "role assignments",
      yLabel: "seconds",
      xLog: true,
      yLog: true,
      series: [
        { name: "buildEngine in process", points: xs((p) => p.inproc.buildMs / 1000) },
        { name: "loadSnapshot from Postgres", points: xs((p) => (p.pg ? p.pg.loadMs / 1000 : undefined)) },
        { name: "SQL loader (fill the database)", points: xs((p) => (p.pg ? p.pg.loader.reduce((a, t) => a + t.ms, 0) / 1000 : undefined)), dashed: true },
      ],
    });
    charts["scale-memory.svg"] = lineChart({
      title: "Memory as the dataset grows",
      subtitle: "after a full GC; peak RSS of the loading process",
      xLabel: "role assignments",
      yLabel: "memory",
      yFormat: memFmt,
      xLog: true,
      yLog: true,
      series: [
        { name: "RSS after buildEngine", points: xs((p) => p.inproc.after.rss / 2 ** 20) },
        { name: "heap after buildEngine", points: xs((p) => p.inproc.after.heapUsed / 2 ** 20) },
        { name: "RSS after loadSnapshot", points: xs((p) => (p.pg ? p.pg.after.rss / 2 ** 20 : undefined)) },
        { name: "peak RSS of loadSnapshot", points: xs((p) => (p.pg ? p.pg.maxRss / 2 ** 20 : undefined)), dashed: true },
      ],
    });
    out.push(img("scale-latency.svg", "check latency by dataset size"));
    out.push("");
    out.push(img("scale-load.svg", "build and load time by dataset size"));
    out.push("");
    out.push(img("scale-memory.svg", "memory by dataset size"));
    out.push("");
    const top = pts[pts.length - 1] as ScalePoint;
    out.push(...engineDetail(top));
  }

  // --- Freshness ---------------------------------------------------------------------------
  if (l) {
    out.push("### Freshness: write → visible on a second replica");
    out.push("");
    out.push(runLine(runOf("lag")));
    out.push("");
    out.push(
      `Two \`startLiveEngine\` replicas in one process, each with its own \`startChangeFeed\` and postgres.js pool, on a database with the dataset at scale ${l.smallScale}; ` +
        `${l.writes} sequential writes (\`update users set locked = not locked where id = $1\`, autocommit) from a third connection; for each, the time until both replicas' ` +
        `\`engine.revision\` reached the write's revision (checked every event-loop turn). Median write round trip ${l.writeMs.p50.toFixed(2)} ms. CPU steal: ${pct(l.stealShare)}.`,
    );
    out.push("");
    out.push("| measured from | p50 | p99 | max |");
    out.push("|---|---:|---:|---:|");
    out.push(`| the start of the write | ${l.fromWriteMs.p50.toFixed(2)} ms | ${l.fromWriteMs.p99.toFixed(2)} ms | ${l.fromWriteMs.max.toFixed(2)} ms |`);
    out.push(
      `| the commit acknowledged to the writer | ${l.afterAckMs.p50.toFixed(2)} ms | ${l.afterAckMs.p99.toFixed(2)} ms | ${l.afterAckMs.max.toFixed(2)} ms |`,
    );
    out.push("");
    charts["freshness.svg"] = barChart({
      title: "Write → visible on both replicas",
      subtitle: `${l.writes} writes; the write's own median round trip is ${l.writeMs.p50.toFixed(2)} ms`,
      yLabel: "milliseconds",
      categories: ["from the start of the write", "from the commit acknowledged to the writer"],
      series: [
        { name: "p50", values: [l.fromWriteMs.p50, l.afterAckMs.p50] },
        { name: "p99", values: [l.fromWriteMs.p99, l.afterAckMs.p99] },
        { name: "max", values: [l.fromWriteMs.max, l.afterAckMs.max] },
      ],
      format: (v) => v.toFixed(2),
    });
    out.push(img("freshness.svg", "write to visible latency"));
    out.push("");
  }

  // --- Import ------------------------------------------------------------------------------------
  if (im) {
    out.push("### Import: `authz import` in bulk against one statement per record");
    out.push("");
    out.push(runLine(runOf("import")));
    out.push("");
    out.push(
      "A generated directory (bench/import.ts) imported with `importDocument`, the code `authz import` runs, into a freshly migrated database; then the same file again; " +
        "then a smaller file of the same shape one statement per record (the importer before bulk writing) into another fresh database. Times include validating the document and the commit.",
    );
    out.push("");
    out.push(formatImportBench(im));
    out.push("");
  }

  // --- Directory writes ----------------------------------------------------------------------
  const dw = r.parts.directory?.data;
  if (dw) {
    out.push("### Directory writes: ManageDirectory (issue 14)");
    out.push("");
    out.push(runLine(runOf("directory")));
    out.push("");
    out.push(
      `${int(dw.mutations)} mutations of sign-up traffic through the store's one write pipeline on a fresh database (\`bench/directory.ts\`): per sign-up a user, its ` +
        "principal, the principal accepted, an invitation to an avatar and the invitation accepted. One writer with batches of 1000, and 8 concurrent writers with batches of 10.",
    );
    out.push("");
    out.push(directoryBenchTable(dw.rows));
    out.push("");
  }

  // --- Server stacks --------------------------------------------------------------------------
  if (s) {
    out.push("### Server stacks for gRPC (the choice of @grpc/grpc-js)");
    out.push("");
    out.push(runLine(runOf("stacks")));
    out.push("");
    out.push(
      `One trivial unary RPC (\`/grpc.health.v1.Health/Check\` → SERVING) through each stack in its own child process, stacks interleaved per round, ${int(s.warmup)} warm-up then ` +
        `${int(s.requests)} measured requests: \`${s.command}\`. Every reply checked to be one framed SERVING message.`,
    );
    out.push("");
    out.push("| server | req/s | mean | p50 | p99 | ratio vs bare http2 |");
    out.push("|---|---:|---:|---:|---:|---:|");
    const order: ServerStackRow["stack"][] = [];
    for (const x of s.rows) if (!order.includes(x.stack)) order.push(x.stack);
    for (const id of order) {
      const xs = s.rows.filter((x) => x.stack === id);
      out.push(
        `| ${STACKS[id]} | ${int(median(xs.map((x) => x.reqPerSec)))} | ${fmtUs(median(xs.map((x) => x.meanUs)))} | ${fmtUs(median(xs.map((x) => x.p50Us)))} | ${fmtUs(median(xs.map((x) => x.p99Us)))} | ${ratio(median(xs.map((x) => x.ratioVsBare)))} |`,
      );
    }
    out.push("");
    out.push(`Median over ${s.rounds} round(s); ratio = median of the per-round ratios.`);
    out.push("");
    charts["stacks.svg"] = barChart({
      title: "Server stacks, one trivial unary RPC",
      subtitle: `h2load -c 10 -m 10; median of ${s.rounds} round(s); ratio vs bare http2 in the label`,
      yLabel: "requests per second",
      categories: order.map((id) => `${STACK_SHORT[id]} (${ratio(median(s.rows.filter((x) => x.stack === id).map((x) => x.ratioVsBare)))})`),
      series: [{ name: "req/s", values: order.map((id) => median(s.rows.filter((x) => x.stack === id).map((x) => x.reqPerSec))) }],
      format: (v) => int(v),
      width: 900,
      height: 460,
    });
    out.push(img("stacks.svg", "server stacks req/s"));
    out.push("");
  }
  return { markdown: out.join("\n").replace(/\n{3,}/g, "\n\n"), charts };
}

function countsLine(c: RowCounts): string {
  return (
    `${int(c.users)} users, ${int(c.organizations)} organizations, ${int(c.tenants)} tenants, ${int(c.roles)} roles, ` +
    `${int(c.permissions)} permissions, ${int(c.role_permissions)} role_permissions, ${int(c.role_inheritance)} role_inheritance, ` +
    `${int(c.role_assignments)} role_assignments, ${int(c.user_organizations)} user_organizations`
  );
}

function engineDetail(p: ScalePoint): string[] {
  const out: string[] = [];
  const ip = p.inproc;
  out.push(`### The engine at ${int(p.counts.role_assignments)} assignments in detail`);
  out.push("");
  out.push(`Dataset: ${countsLine(p.counts)}.`);
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
  out.push(`Peak RSS of the process ${mib(ip.maxRss)}. CPU steal during the phase: ${pct(ip.stealShare)}.`);
  out.push("");
  const c = ip.checks;
  out.push(
    `Check: ${int(c.distinct)} distinct random checks (55% an organization permission on one of the user's organizations, 20% a global permission there, ` +
      `25% an organization permission on a random organization), cycled; ${pct(c.allowedShare)} allowed; ${c.mismatches} mismatches against the dataset's expected decisions. ` +
      `Floor: \`Map.get(subjectId)\` on a map with one entry per user and a bit test, over the same queries. ${int(c.perRound)} operations per round, rounds interleaved; ` +
      `latency: ${int(c.latencySamples)} operations each timed alone with \`process.hrtime.bigint()\` (a back-to-back timer pair reads ${ns(c.timerNs)}, included).`,
  );
  out.push("");
  out.push("| round | engine.check ops/s | floor ops/s | floor ÷ check |");
  out.push("|---:|---:|---:|---:|");
  c.rounds.forEach((x, i) =>
    out.push(`| ${i + 1} | ${int(x.engine.opsPerSec)} | ${int(x.floor.opsPerSec)} | ${ratio(x.floor.opsPerSec / x.engine.opsPerSec)} |`),
  );
  out.push("");
  out.push("| operation | p50 | p99 | p99.9 | max |");
  out.push("|---|---:|---:|---:|---:|");
  out.push(`| engine.check | ${ns(c.engineLatency.p50Ns)} | ${ns(c.engineLatency.p99Ns)} | ${ns(c.engineLatency.p999Ns)} | ${ns(c.engineLatency.maxNs)} |`);
  out.push(
    `| floor (Map.get + bit test) | ${ns(c.floorLatency.p50Ns)} | ${ns(c.floorLatency.p99Ns)} | ${ns(c.floorLatency.p999Ns)} | ${ns(c.floorLatency.maxNs)} |`,
  );
  out.push("");
  out.push(
    `Re-closure after one role edit (\`engine.apply\`, each on a random organization's chain, timed alone; verified on one real check: ${ip.recloseVerified ? "yes" : "NO"}):`,
  );
  out.push("");
  out.push("| edit | roles re-closed | n | p50 | p99 | max |");
  out.push("|---|---:|---:|---:|---:|---:|");
  for (const x of ip.reclose)
    out.push(`| ${x.edit} | ${x.rolesTouched} | ${x.n} | ${x.p50Us.toFixed(1)} µs | ${x.p99Us.toFixed(1)} µs | ${x.maxUs.toFixed(1)} µs |`);
  out.push("");
  out.push(
    `ListPermissions in process (\`engine.list(user)\`, ${ip.list.n} users, ${ip.list.entries} entries in all): median ${ip.list.medianMs.toFixed(2)} ms, max ${ip.list.maxMs.toFixed(2)} ms.`,
  );
  out.push("");
  const pg = p.pg;
  if (pg) {
    out.push(
      `Cold load from Postgres: fresh database, \`migrate()\` (${secs(pg.migrateMs)}), then the SQL loader (one session, \`session_replication_role = replica\`, secondary indexes built after the insert, \`vacuum analyze\`):`,
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
      `Loaded engine: counts ${pg.statsMatch ? "match" : "DO NOT match"} the generator; ${pg.mismatches} mismatches in ${int(pg.checked)} random checks against the expected decisions. CPU steal during the load: ${pct(pg.stealShare)}.`,
    );
    out.push("");
  }
  return out;
}

/** Replaces the text between the markers (appends the block when there are none); everything else is kept. */
export function spliceResults(doc: string, generated: string): string {
  const block = `${RESULTS_BEGIN}\n\n${generated.trim()}\n\n${RESULTS_END}`;
  const b = doc.indexOf(RESULTS_BEGIN);
  const e = doc.indexOf(RESULTS_END);
  if (b === -1 || e === -1 || e < b) return `${doc.trimEnd()}\n\n${block}\n`;
  return doc.slice(0, b) + block + doc.slice(e + RESULTS_END.length);
}

export async function writeReport(docsDir: string, results: Results, seedDoc: string | undefined): Promise<{ doc: string; charts: string[] }> {
  const chartDir = path.join(docsDir, "bench");
  await mkdir(chartDir, { recursive: true });
  await writeFile(path.join(chartDir, "results.json"), JSON.stringify(results, null, 1) + "\n");
  const { markdown, charts } = render(results, "bench");
  for (const [name, svg] of Object.entries(charts)) await writeFile(path.join(chartDir, name), svg);
  const docFile = path.join(docsDir, "benchmarks.md");
  let doc: string;
  try {
    doc = await readFile(docFile, "utf8");
  } catch {
    doc = seedDoc ?? "# Benchmarks\n";
  }
  await writeFile(docFile, spliceResults(doc, markdown));
  return { doc: docFile, charts: Object.keys(charts).map((n) => path.join(chartDir, n)) };
}
