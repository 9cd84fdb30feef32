// Reading a process's memory after a build, for the benchmarks that report
// bytes per record (bench/sizing.ts, bench/engine-v2.ts).

/**
 * Memory after full GCs once V8 has freed what they found dead: array buffers are freed by a sweeper
 * after the GC returns, so a reading right after it still counted a build's dropped pages (8-10 MiB
 * at sizing's base shape, varying from run to run). Reads until `external` stops falling (at most 50
 * reads, 20 ms apart). Needs --expose-gc.
 */
export async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc as () => void;
  let last = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 50; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
    const m = process.memoryUsage();
    if (m.external >= last) return m;
    last = m.external;
  }
  return process.memoryUsage();
}
