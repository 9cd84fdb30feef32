// Rounds of CPU-timed loops in one process, for the engine's probes
// (bench/engine-stages.ts, bench/engine-layout.ts): every loop once to warm
// up, then each round times every loop in turn (CPU seconds of this
// process), so that the machine's drift falls on all of them alike.

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
