// `npm run bench`: every benchmark, one after another, printing markdown tables.
// Figures go into docs/benchmarks.md with the command that produced them.
import { formatServerStacks, runServerStacks } from "./server-stacks.js";

const rows = await runServerStacks();
process.stdout.write(`## Server stack for gRPC\n\n${formatServerStacks(rows)}\n`);
