// Sizing: what each kind of record costs the engine, so docs/operations.md can
// give memory and start-up time as a function of users (each with one
// organization membership), organizations and role assignments. The scale
// table of docs/benchmarks.md grows them together (fixed ratios), which
// cannot tell them apart; here each is doubled alone from a base shape, the
// engine built from the generated rows (bench/dataset.ts) in a fresh child
// process each, and memory and build time read after a full GC (median of
// three rounds, shapes interleaved).
//
//   npm run build:bench && node dist/bench/sizing.js [BASE_SCALE, default 0.05]
//
// Prints a markdown table and the per-record costs (the differences of the
// doubled shapes against the base, divided by the records added).
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { buildSnapshot } from "../src/engine/snapshot.js";
import { settledMemory } from "./memory.js";
import { type DatasetShape, datasetShape, datasetTables, rowCounts } from "./dataset.js";

interface Sample {
  heapMiB: number;
  rssMiB: number;
  buildMs: number;
}

const THIS_FILE = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;

function shapeOf(base: DatasetShape, users: number, orgs: number, perUser: number): DatasetShape {
  return { ...base, users, orgs, assignmentsPerUser: perUser, assignments: users * perUser, stride: Math.max(1, Math.floor(orgs / perUser)) };
}

async function child(shape: DatasetShape): Promise<Sample> {
  const before = await settledMemory();
  const t = performance.now();
  // Sized from the row counts, as loadSnapshot sizes them from the planner's estimates.
  const engine = buildSnapshot(0n, datasetTables(shape), { ...rowCounts(shape) });
  const buildMs = performance.now() - t;
  const after = await settledMemory();
  if (!engine) throw new Error("no engine");
  // The engine keeps its tables in typed arrays: their ArrayBuffers count as external memory, not heap.
  const held = (m: NodeJS.MemoryUsage) => m.heapUsed + m.external;
  return { heapMiB: (held(after) - held(before)) / MiB, rssMiB: after.rss / MiB, buildMs };
}

function measure(shape: DatasetShape): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const c = fork(THIS_FILE, ["--child", JSON.stringify(shape)], {
      execArgv: ["--expose-gc", "--max-old-space-size=4096"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    c.once("message", (m) => resolve(m as Sample));
    c.once("exit", (code) => (code === 0 ? undefined : reject(new Error(`sizing child exited ${code}`))));
  });
}

async function main(): Promise<void> {
  const base = datasetShape(Number(process.argv[2] ?? "0.05"));
  const shapes: Array<[string, DatasetShape]> = [
    ["base", base],
    ["2x users (and memberships)", shapeOf(base, base.users * 2, base.orgs, base.assignmentsPerUser)],
    ["2x organizations", shapeOf(base, base.users, base.orgs * 2, base.assignmentsPerUser)],
    ["2x assignments per user", shapeOf(base, base.users, base.orgs, base.assignmentsPerUser * 2)],
  ];
  // Three rounds, shapes interleaved, the median of each: a shared machine's noise is large.
  const samples: Sample[][] = shapes.map(() => []);
  for (let round = 0; round < 3; round++) for (const [i, [, s]] of shapes.entries()) samples[i]?.push(await measure(s));
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
  const rows = shapes.map(([name, s], i): [string, DatasetShape, Sample] => {
    const xs = samples[i] as Sample[];
    return [name, s, { heapMiB: median(xs.map((x) => x.heapMiB)), rssMiB: median(xs.map((x) => x.rssMiB)), buildMs: median(xs.map((x) => x.buildMs)) }];
  });
  console.log("| shape | users | organizations | assignments | engine memory (heap + typed arrays) | RSS | build |");
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  for (const [name, s, m] of rows) {
    console.log(
      `| ${name} | ${s.users} | ${s.orgs} | ${s.assignments} | ${m.heapMiB.toFixed(1)} MiB | ${m.rssMiB.toFixed(0)} MiB | ${m.buildMs.toFixed(0)} ms |`,
    );
  }
  const [b, u, o, a] = rows.map((r) => r[2]) as [Sample, Sample, Sample, Sample];
  // Doubling users adds users, their memberships and their assignments: the assignments' share is taken out.
  const perAssignment = { bytes: ((a.heapMiB - b.heapMiB) * MiB) / base.assignments, us: ((a.buildMs - b.buildMs) * 1000) / base.assignments };
  const perUser = {
    bytes: ((u.heapMiB - b.heapMiB) * MiB - perAssignment.bytes * base.assignments) / base.users,
    us: ((u.buildMs - b.buildMs) * 1000 - perAssignment.us * base.assignments) / base.users,
  };
  const perOrg = { bytes: ((o.heapMiB - b.heapMiB) * MiB) / base.orgs, us: ((o.buildMs - b.buildMs) * 1000) / base.orgs };
  console.log("");
  console.log("| record | heap per record | build time per record |");
  console.log("|---|---:|---:|");
  for (const [name, c] of [
    ["role assignment", perAssignment],
    ["user with one membership (its assignments apart)", perUser],
    ["organization (5 roles, 10 permissions, their grants and inheritance)", perOrg],
  ] as const) {
    console.log(`| ${name} | ${c.bytes.toFixed(0)} B | ${c.us.toFixed(2)} µs |`);
  }
}

const childIdx = process.argv.indexOf("--child");
if (childIdx >= 0) {
  const sample = await child(JSON.parse(process.argv[childIdx + 1] as string) as DatasetShape);
  process.send?.(sample, () => process.exit(0));
} else {
  await main();
}
