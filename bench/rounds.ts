// Rounds of CPU-timed loops in one process, for the engine's probes
// (bench/engine-stages.ts, bench/engine-layout.ts): every loop once to warm
// up, then each round times every loop in turn (CPU seconds of this
// process), so that the machine's drift falls on all of them alike. And the
// fixture both probes start from.

import { buildSnapshot, Snapshot } from "../src/engine/snapshot.js";
import type { State } from "../src/engine/state.js";
import { type CheckQuery, datasetShape, datasetTables, floorTable, makeChecks, rowCounts } from "./dataset.js";

/**
 * A probe's settings from `<PREFIX>_SCALE` (default 1), `_ROUNDS` (5) and `_CHECKS` (1,000,000), and
 * what it measures over: the dataset built at that scale, its state, 65,536 checks and the floor's table.
 */
export function probeFixture(prefix: string) {
  const env = process.env;
  const scale = Number(env[`${prefix}_SCALE`] ?? 1);
  const rounds = Number(env[`${prefix}_ROUNDS`] ?? 5);
  const n = Number(env[`${prefix}_CHECKS`] ?? 1_000_000);
  const shape = datasetShape(scale);
  const snap = buildSnapshot(0n, datasetTables(shape) as Record<string, Iterable<Record<string, unknown>>>, { ...rowCounts(shape) });
  const st: State = Snapshot.stateOf(snap);
  const Q: CheckQuery[] = makeChecks(shape, 1 << 16, 42);
  return { scale, rounds, n, shape, snap, st, now: Date.now(), Q, mask: Q.length - 1, floor: floorTable(shape.users) };
}

/**
 * The median over `rounds` of each loop's CPU ns per operation (`n` operations a call), in the order
 * given; one line per round on stderr. Each loop returns a number that is kept, so its work is not
 * optimized away.
 */
export function medianNsPerOp(names: readonly string[], loops: ReadonlyArray<() => number>, rounds: number, n: number): { medians: number[]; sink: number } {
  let sink = 0;
  const nsPer = (fn: () => number): number => {
    const t0 = process.cpuUsage();
    sink += fn();
    const d = process.cpuUsage(t0);
    return ((d.user + d.system) * 1000) / n;
  };
  for (const loop of loops) sink += loop();
  const table: number[][] = [];
  for (let r = 0; r < rounds; r++) {
    const row = loops.map(nsPer);
    table.push(row);
    process.stderr.write(`round ${r}: ${names.map((k, i) => `${k} ${(row[i] as number).toFixed(0)}`).join(", ")} ns\n`);
  }
  const medians = loops.map((_, i) => {
    const xs = table.map((row) => row[i] as number).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)] as number;
  });
  return { medians, sink };
}
