#!/usr/bin/env node
// Writes dist/embedded/{schema,seeded}.tar.gz, the PGlite data directories the
// embedded mode starts from (src/store/embedded-snapshot.ts), unless ones
// matching the installed PGlite, migrations/ and examples/demo.json are there. Run by
// build-if-stale.mjs after tsc; needs the built dist/.
import { writeSnapshots } from "../dist/src/store/embedded-snapshot.js";

const started = Date.now();
const wrote = await writeSnapshots();
if (wrote > 0) process.stderr.write(`authz: ${wrote} embedded snapshot(s) written in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
