// `npm run bench`: every benchmark, one after another, printing markdown tables.
// Figures go into docs/benchmarks.md with the command that produced them.
//
// BENCH_ONLY picks a subset, comma-separated: stacks (server stacks), engine
// (all of the decision-engine parts), the engine parts inproc, pgload, grpc,
// lag, or ratelimit. Default: everything. Each benchmark's own variables are described at
// the top of bench/server-stacks.ts and bench/engine.ts.
import { ENGINE_PARTS, formatEngineBench, runEngineBench } from "./engine.js";
import { formatRateLimitBench, runRateLimitBench } from "./ratelimit.js";
import { formatServerStacks, runServerStacks } from "./server-stacks.js";

const only = (process.env["BENCH_ONLY"] ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const known = new Set<string>(["stacks", "engine", "ratelimit", ...ENGINE_PARTS]);
for (const name of only) if (!known.has(name)) throw new Error(`BENCH_ONLY: unknown benchmark ${name} (known: ${[...known].join(", ")})`);
const wants = (name: string) => only.length === 0 || only.includes(name);

if (wants("stacks")) {
  const rows = await runServerStacks();
  process.stdout.write(`## Server stack for gRPC\n\n${formatServerStacks(rows)}\n\n`);
}
const engineParts = ENGINE_PARTS.filter((p) => wants("engine") || only.includes(p));
if (engineParts.length > 0) {
  const r = await runEngineBench({ parts: engineParts });
  process.stdout.write(`## Decision engine\n\n${formatEngineBench(r)}\n`);
}
if (wants("ratelimit")) {
  const rows = await runRateLimitBench();
  process.stdout.write(`## Rate limits\n\n${formatRateLimitBench(rows)}\n`);
}
