// A/B of two compiled engines in ONE process: the way to judge a change to
// Check's path on a shared, loaded machine, where single runs do not resolve
// 5%. Each engine is a directory holding a compiled src/engine (e.g. main's
// dist/src/engine copied apart, and this tree's); both are built from the
// same generated rows (in the order given), then rounds of checks alternate
// between them (and the Map.get + bit-test floor), each round timed in CPU
// seconds of this process. Reported: each engine's median ÷ floor and the
// median of the per-round ratios B / A.
//
// Run:  npm run build:bench && node --expose-gc dist/bench/engine-ab.js <dirA> <dirB>
// Env:  AB_SCALE   dataset scale (default 0.2 = 1M assignments; 1 = 5M)
//       AB_ROUNDS  rounds (default 9)
//       AB_CHECKS  checks per engine per round (default 500000)

import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

import type { Snapshot } from "../src/engine/snapshot.js";
import { type CheckQuery, datasetShape, datasetTables, floorTable, makeChecks, rowCounts, runFloor } from "./dataset.js";

type Build = (rev: bigint, tables: Record<string, Iterable<unknown>>, counts: Record<string, number>) => Snapshot;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};
const cpuSecs = (t0: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1e6;
};

async function main(): Promise<void> {
  const dirs = process.argv.slice(2);
  if (dirs.length !== 2) throw new Error("usage: engine-ab.js <engine dir A> <engine dir B>");
  const scale = Number(process.env.AB_SCALE ?? 0.2);
  const rounds = Number(process.env.AB_ROUNDS ?? 9);
  const n = Number(process.env.AB_CHECKS ?? 500_000);
  const shape = datasetShape(scale);
  const counts = { ...rowCounts(shape) } as Record<string, number>;
  const snaps: Snapshot[] = [];
  for (const d of dirs) {
    const mod = (await import(pathToFileURL(resolve(d, "snapshot.js")).href)) as { buildSnapshot: Build };
    const t0 = process.cpuUsage();
    snaps.push(mod.buildSnapshot(0n, datasetTables(shape) as Record<string, Iterable<unknown>>, counts));
    process.stderr.write(`built ${d} in ${cpuSecs(t0).toFixed(1)} CPU-s\n`);
  }
  const now = Date.now();
  const Q = makeChecks(shape, 1 << 16, 42);
  const MASK = Q.length - 1;
  for (const [k, s] of snaps.entries()) {
    let bad = 0;
    for (const x of Q) if (s.check(x.subject, x.permission, x.resource, now).allowed !== x.expected) bad++;
    process.stderr.write(`engine ${k === 0 ? "A" : "B"}: ${bad} mismatches of ${Q.length}\n`);
  }
  const floor = floorTable(shape.users);
  const runEngine = (s: Snapshot): number => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const x = Q[i & MASK] as CheckQuery;
      if (s.check(x.subject, x.permission, x.resource, now).allowed) acc++;
    }
    return acc;
  };
  const timed = (fn: () => number): number => {
    const t0 = process.cpuUsage();
    sink += fn();
    return n / cpuSecs(t0);
  };
  let sink = 0;
  const a = snaps[0] as Snapshot;
  const b = snaps[1] as Snapshot;
  sink += runEngine(a) + runEngine(b) + runFloor(floor, Q, n); // warm-up
  const ra: number[] = [];
  const rb: number[] = [];
  const rf: number[] = [];
  const ratio: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const f = timed(() => runFloor(floor, Q, n));
    let x: number;
    let y: number;
    if (r % 2 === 0) {
      x = timed(() => runEngine(a));
      y = timed(() => runEngine(b));
    } else {
      y = timed(() => runEngine(b));
      x = timed(() => runEngine(a));
    }
    ra.push(x / f);
    rb.push(y / f);
    rf.push(f);
    ratio.push(y / x);
    process.stderr.write(`round ${r}: floor ${Math.round(f)}/s, A ${Math.round(x)}/s, B ${Math.round(y)}/s, B/A ${(y / x).toFixed(3)}\n`);
  }
  const out = {
    scale,
    rounds,
    checks: n,
    floor: Math.round(median(rf)),
    aPerSec: Math.round(median(ra) * median(rf)),
    bPerSec: Math.round(median(rb) * median(rf)),
    aPerFloor: Number(median(ra).toFixed(3)),
    bPerFloor: Number(median(rb).toFixed(3)),
    bOverA: Number(median(ratio).toFixed(3)),
    sink,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

await main();
