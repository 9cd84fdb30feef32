// Cold load at one dataset size (issue 13, point 3): loadSnapshot() from a
// database holding the synthetic dataset, each run in a fresh child process,
// timed on the wall and in CPU (node's own, and every PostgreSQL backend that
// served the load, read from /proc on this machine). The loaded engine is
// checked against the dataset's expected decisions.
//
// The database is filled once by the SQL loader of bench/dataset.ts and kept
// between runs (BENCH_COLD_KEEP=1) so repeated measurements skip the minute of
// loading; it is named after the scale and rebuilt when its counts are off.
//
// Run:  npm run bench:cold   (npm run build:bench && node dist/bench/cold-load.js)
// Env:  BENCH_PG_SCALE    (default 1)   dataset scale (1 = 1M users, 5M assignments)
//       BENCH_COLD_RUNS   (default 2)   loads per way of reading, interleaved
//       BENCH_COLD_VIA    (default "copy,rows") ways of reading to compare (loadSnapshot's `via`)
//       BENCH_COLD_KEEP   (default 0)   1 keeps the database for the next run
//       BENCH_HEAP_MB     heap limit of the child (default 4096)
//       DATABASE_URL      a superuser on the server to use

import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import * as os from "node:os";
import { fileURLToPath, pathToFileURL } from "node:url";

import postgres from "postgres";

import { createLogger } from "../src/logger.js";
import { loadSnapshot, type SnapshotVia } from "../src/store/live-engine.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { datasetShape, loadDatasetIntoPostgres, makeChecks, rowCounts, scaleFromEnv } from "./dataset.js";
import { createDatabase, dropDatabase, migrateDatabase } from "./engine.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const APP = "authz-bench-cold";

export interface ColdLoadRun {
  via: SnapshotVia;
  wallMs: number;
  nodeCpuMs: number;
  /** Summed over every backend of the load's pool; undefined when /proc could not be read. */
  pgCpuMs: number | undefined;
  backends: number;
  rssAfter: number;
  heapAfter: number;
  maxRss: number;
  statsMatch: boolean;
  checked: number;
  mismatches: number;
  loadBefore: number;
}

export interface ColdLoadResult {
  scale: number;
  assignments: number;
  fillMs: number | undefined;
  runs: ColdLoadRun[];
  loadBefore: number;
  loadAfter: number;
  started: string;
}

/** A local process's user + system CPU in ms (/proc/<pid>/stat); undefined when unreadable. */
function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

async function backendPids(sql: postgres.Sql): Promise<number[]> {
  const rows = await sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = ${APP} and datname = current_database()`;
  return rows.map((r) => r.pid);
}

/** In the child: one loadSnapshot, timed, then checked. */
async function childRun(url: string, scale: number, via: SnapshotVia): Promise<ColdLoadRun> {
  const loadBefore = os.loadavg()[0] ?? Number.NaN;
  const shape = datasetShape(scale);
  const watcher = postgres(url, { max: 1, onnotice: () => {} });
  const db = createPostgresClient({ url, poolMax: 4, logger: createLogger("silent"), applicationName: APP });
  try {
    gc?.();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const engine = await loadSnapshot(db, { via });
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    // The pool's backends were started by this load (none existed before it) and are still open.
    const pids = await backendPids(watcher);
    const cpus = pids.map(procCpuMs);
    const pgCpuMs = cpus.some((c) => c === undefined) ? undefined : cpus.reduce<number>((a, c) => a + (c ?? 0), 0);
    gc?.();
    const after = process.memoryUsage();
    const counts = rowCounts(shape);
    const stats = engine.stats();
    const statsMatch = stats.roles === counts.roles && stats.permissions === counts.permissions && stats.assignments === counts.role_assignments;
    const now = Date.now();
    const Q = makeChecks(shape, 20_000, 11);
    let mismatches = 0;
    for (const q of Q) if (engine.check(q.subject, q.permission, q.resource, now).allowed !== q.expected) mismatches++;
    return {
      via,
      wallMs,
      nodeCpuMs: (cpu.user + cpu.system) / 1000,
      pgCpuMs,
      backends: pids.length,
      rssAfter: after.rss,
      heapAfter: after.heapUsed,
      maxRss: process.resourceUsage().maxRSS * 1024,
      statsMatch,
      checked: Q.length,
      mismatches,
      loadBefore,
    };
  } finally {
    await db.close();
    await watcher.end({ timeout: 5 });
  }
}

function runChild(url: string, scale: number, via: SnapshotVia, heapMb: number): Promise<ColdLoadRun> {
  const child = fork(THIS_FILE, ["--child", JSON.stringify({ url, scale, via })], {
    execArgv: [`--max-old-space-size=${heapMb}`, "--expose-gc"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 15 * 60_000);
    child.on("message", (m: { ok: boolean; run?: ColdLoadRun; error?: string }) => {
      clearTimeout(timer);
      if (m.ok && m.run) resolve(m.run);
      else reject(new Error(m.error ?? "cold-load child failed"));
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`cold-load child exited with ${code}`));
    });
  });
}

/** The database for this scale: reused when it holds the dataset's counts, else created and filled. */
async function datasetDatabase(adminUrl: string, scale: number, log: (l: string) => void): Promise<{ url: string; name: string; fillMs?: number }> {
  const name = `authz_bench_cold_${String(scale).replace(/\W/g, "_")}`;
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const counts = rowCounts(datasetShape(scale));
  const probe = postgres(url.toString(), { max: 1, onnotice: () => {} });
  try {
    const [r] = await probe<{ n: string }[]>`select count(*)::text as n from role_assignments`;
    if (r && Number(r.n) === counts.role_assignments) return { url: url.toString(), name };
  } catch {
    // absent or not migrated: rebuilt below
  } finally {
    await probe.end({ timeout: 5 });
  }
  log(`cold-load bench: filling ${name} at scale ${scale}`);
  const t0 = performance.now();
  const created = await createDatabase(adminUrl, name);
  await migrateDatabase(created);
  await loadDatasetIntoPostgres(created, datasetShape(scale), log);
  return { url: created, name, fillMs: performance.now() - t0 };
}

export async function runColdLoadBench(log: (l: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<ColdLoadResult> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error("cold-load bench: DATABASE_URL is not set");
  const scale = scaleFromEnv("BENCH_PG_SCALE", 1);
  const runs = Number(process.env.BENCH_COLD_RUNS ?? 2);
  const vias = (process.env.BENCH_COLD_VIA ?? "copy,rows").split(",").map((v) => v.trim()) as SnapshotVia[];
  const heapMb = Number(process.env.BENCH_HEAP_MB ?? 4096);
  const keep = process.env.BENCH_COLD_KEEP === "1";
  const started = new Date().toISOString();
  const loadBefore = os.loadavg()[0] ?? Number.NaN;
  const { url, name, fillMs } = await datasetDatabase(adminUrl, scale, log);
  const out: ColdLoadRun[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      for (const via of vias) {
        const r = await runChild(url, scale, via, heapMb);
        log(
          `  ${via}: ${(r.wallMs / 1000).toFixed(2)} s wall, node ${(r.nodeCpuMs / 1000).toFixed(2)} CPU-s, ` +
            `PG ${r.pgCpuMs === undefined ? "n/a" : (r.pgCpuMs / 1000).toFixed(2)} CPU-s on ${r.backends} backends, ` +
            `rss ${(r.rssAfter / 2 ** 20).toFixed(0)} MiB, ${r.mismatches} mismatches, counts ${r.statsMatch ? "match" : "DIFFER"}, load ${r.loadBefore.toFixed(2)}`,
        );
        out.push(r);
      }
    }
  } finally {
    if (!keep) await dropDatabase(adminUrl, name);
  }
  return {
    scale,
    assignments: rowCounts(datasetShape(scale)).role_assignments,
    fillMs,
    runs: out,
    loadBefore,
    loadAfter: os.loadavg()[0] ?? Number.NaN,
    started,
  };
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const at = process.argv.indexOf("--child");
  if (at !== -1) {
    const arg = JSON.parse(process.argv[at + 1] ?? "{}") as { url: string; scale: number; via: SnapshotVia };
    try {
      const run = await childRun(arg.url, arg.scale, arg.via);
      process.send?.({ ok: true, run }, () => process.exit(0));
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? `\ncaused by: ${err.cause.stack ?? err.cause.message}` : "";
      process.send?.({ ok: false, error: err instanceof Error ? `${err.stack ?? err.message}${cause}` : String(err) }, () => process.exit(1));
    }
  } else {
    const r = await runColdLoadBench();
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  }
}
