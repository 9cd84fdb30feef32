// Writes docs/errors.md from the error catalogue (src/errors.ts, built into dist/).
// Usage: npm run docs:errors
import { writeFileSync } from "node:fs";
import { renderErrorsDoc } from "../dist/src/errors.js";

writeFileSync(new URL("../docs/errors.md", import.meta.url), renderErrorsDoc());
process.stdout.write("docs/errors.md written from src/errors.ts\n");
