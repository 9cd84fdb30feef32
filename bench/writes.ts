// Write throughput: ManageRoles through the store's one write pipeline, at 1
// and 16 concurrent writers, single-mutation writes and 10-mutation batches,
// beside `pgbench -N` (Postgres' own simple-update workload) on the same
// server in the same run. The ratio is what counts: these machines are noisy.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node dist/bench/writes.js
//
// Settings: BENCH_WRITE_SECONDS (per measurement, default 8), BENCH_WRITE_CONCURRENCY (default "1,16"),
// BENCH_WRITE_BASELINE: the root of another checkout, built with `npm run build:bench` (e.g. an older
// commit in a temporary git worktree): its ManageRoles is measured too, right after this one, on the
// same database and against the same pgbench figure, as "(baseline)" rows.

import { execFileSync } from "node:child_process";
import { createLogger } from "../src/logger.js";
import { manageRoles, type Mutation } from "../src/store/manage-roles.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { createDatabase, dropDatabase, migrateDatabase } from "./engine.js";

export interface WriteBenchRow {
  writer: string;
  concurrency: number;
  mutationsPerWrite: number;
  writesPerSec: number;
  mutationsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** writes/s (pgbench: transactions/s) relative to pgbench -N at the same concurrency. */
  vsPgbench: number;
}

const ORG = "0000be01-0000-4000-8000-000000000001";

function pgbench(url: string, clients: number, seconds: number): number {
  const u = new URL(url);
  const args = ["-h", u.hostname, "-p", u.port || "5432", "-U", decodeURIComponent(u.username || "postgres"), u.pathname.slice(1)];
  execFileSync("pgbench", ["-i", "-q", "-s", "1", ...args], { stdio: "ignore" });
  const out = execFileSync("pgbench", ["-N", "-n", "-c", String(clients), "-j", String(Math.min(clients, 2)), "-T", String(seconds), ...args], {
    encoding: "utf8",
  });
  const m = /tps = ([\d.]+)/.exec(out);
  if (!m) throw new Error(`pgbench printed no tps:\n${out}`);
  return Number(m[1]);
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] ?? NaN;
};

/** The ManageRoles of one build: this one, or the baseline's (BENCH_WRITE_BASELINE). */
interface Writer {
  manageRoles: typeof manageRoles;
  createPostgresClient: typeof createPostgresClient;
}

async function baselineWriter(root: string): Promise<Writer> {
  const roles = (await import(`${root}/dist/src/store/manage-roles.js`)) as Pick<Writer, "manageRoles">;
  const client = (await import(`${root}/dist/src/store/postgres-client.js`)) as Pick<Writer, "createPostgresClient">;
  return { manageRoles: roles.manageRoles, createPostgresClient: client.createPostgresClient };
}

async function manageRolesRun(writer: Writer, url: string, concurrency: number, batch: number, seconds: number, tag: string) {
  const db = writer.createPostgresClient({ url, poolMax: concurrency, logger: createLogger("silent"), applicationName: "authz-bench-writes" });
  const lat: number[] = [];
  let n = 0;
  const end = performance.now() + seconds * 1000;
  try {
    await db.query(`insert into organizations (id, name) values ($1::text::uuid, 'Bench') on conflict do nothing`, [ORG]);
    const worker = async (w: number) => {
      for (let i = 0; performance.now() < end; i++) {
        const mutations: Mutation[] = Array.from({ length: batch }, (_, j) => ({
          kind: "upsertPermission" as const,
          organizationId: ORG,
          key: `bench.${tag}.${w}.${i}.${j}`,
        }));
        const t0 = performance.now();
        await writer.manageRoles(db, { mutations });
        lat.push(performance.now() - t0);
        n++;
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
    const secs = (performance.now() - started) / 1000;
    return { writesPerSec: n / secs, p50: pct(lat, 0.5), p99: pct(lat, 0.99) };
  } finally {
    await db.close();
  }
}

export async function runWriteBench(adminUrl: string, opts: { seconds: number; concurrency: number[]; baseline?: string }): Promise<WriteBenchRow[]> {
  const name = `authz_bench_writes_${process.pid}`;
  const url = await createDatabase(adminUrl, name);
  const rows: WriteBenchRow[] = [];
  const writers: Array<[string, Writer]> = [["", { manageRoles, createPostgresClient }]];
  if (opts.baseline) writers.push([" (baseline)", await baselineWriter(opts.baseline)]);
  try {
    await migrateDatabase(url);
    for (const c of opts.concurrency) {
      const tps = pgbench(url, c, opts.seconds);
      rows.push({
        writer: "pgbench -N",
        concurrency: c,
        mutationsPerWrite: 3,
        writesPerSec: tps,
        mutationsPerSec: tps * 3,
        p50Ms: NaN,
        p99Ms: NaN,
        vsPgbench: 1,
      });
      for (const batch of [1, 10]) {
        for (const [label, w] of writers) {
          const r = await manageRolesRun(w, url, c, batch, opts.seconds, `${c}x${batch}${label ? "b" : ""}`);
          rows.push({
            writer: `ManageRoles, ${batch} mutation${batch > 1 ? "s" : ""} per write${label}`,
            concurrency: c,
            mutationsPerWrite: batch,
            writesPerSec: r.writesPerSec,
            mutationsPerSec: r.writesPerSec * batch,
            p50Ms: r.p50,
            p99Ms: r.p99,
            vsPgbench: r.writesPerSec / tps,
          });
        }
      }
    }
  } finally {
    await dropDatabase(adminUrl, name);
  }
  return rows;
}

export function writeBenchTable(rows: readonly WriteBenchRow[]): string {
  const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "–");
  const lines = [
    "| writer | concurrent writers | writes/s | mutations/s | p50 ms | p99 ms | writes/s ÷ pgbench -N tps |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map(
      (r) => `| ${r.writer} | ${r.concurrency} | ${f(r.writesPerSec)} | ${f(r.mutationsPerSec)} | ${f(r.p50Ms, 1)} | ${f(r.p99Ms, 1)} | ${f(r.vsPgbench, 2)} |`,
    ),
  ];
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error("DATABASE_URL is required");
  const seconds = Number(process.env.BENCH_WRITE_SECONDS ?? 8);
  const concurrency = (process.env.BENCH_WRITE_CONCURRENCY ?? "1,16").split(",").map(Number);
  const baseline = process.env.BENCH_WRITE_BASELINE;
  const rows = await runWriteBench(adminUrl, { seconds, concurrency, ...(baseline ? { baseline } : {}) });
  process.stdout.write(`${writeBenchTable(rows)}\n`);
}
