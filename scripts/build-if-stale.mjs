#!/usr/bin/env node
// Builds dist/ (src and gen with tsconfig.build.json, and the web console)
// only when it is missing or older than its sources, so `npm ci` (the prepare
// script) leaves a built service and `npm start` on a built checkout starts
// at once instead of running tsc every time; then the embedded mode's PGlite
// snapshots (scripts/embedded-snapshot.mjs). Staleness is judged by
// modification times: the newest file under src/, gen/, migrations/ and
// console/, the tsconfig files and the lockfile against the time the last
// successful build recorded in dist/.build-stamp. A production install (no
// src/, or no TypeScript because dev dependencies were omitted) has nothing
// to build and keeps the dist/ it was shipped with.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stamp = join(root, "dist", ".build-stamp");
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const name of readdirSync(path)) max = Math.max(max, newest(join(path, name)));
  return max;
}

const force = process.argv.includes("--force");
if (!existsSync(join(root, "src")) || !existsSync(tsc)) {
  if (!force) process.exit(0);
  process.stderr.write("authz: cannot build: src/ or TypeScript (a dev dependency) is missing\n");
  process.exit(1);
}
const inputs = ["src", "gen", "migrations", "console", "tsconfig.json", "tsconfig.build.json", "package-lock.json"]
  .map((p) => join(root, p))
  .filter(existsSync);
const sourcesAt = Math.max(...inputs.map(newest));
const built = existsSync(stamp) ? Number(readFileSync(stamp, "utf8").trim()) : Number.NaN;
if (!force && built >= sourcesAt) process.exit(0);

if (!force) process.stderr.write("authz: building dist/ (sources changed since the last build)\n");
const started = Date.now();
const run = (args) => {
  const r = spawnSync(process.execPath, args, { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run([tsc, "-p", join(root, "tsconfig.build.json")]);
// The web console: its modules (tsc) and static files, served from dist/console.
if (existsSync(join(root, "console", "tsconfig.json"))) {
  run([tsc, "-p", join(root, "console", "tsconfig.json")]);
  run([join(root, "scripts", "build-console.mjs")]);
}
// The bin of package.json: npx runs it directly, and tsc does not set the executable bit.
chmodSync(join(root, "dist", "src", "cli.js"), 0o755);
// The embedded mode's PGlite snapshots (skipped when the ones there still match).
const snap = spawnSync(process.execPath, [join(root, "scripts", "embedded-snapshot.mjs")], { stdio: "inherit" });
if (snap.status !== 0) process.exit(snap.status ?? 1);
// The stamp holds the newest source's time as read before tsc ran (not the
// clock's): a file saved while tsc ran is newer and builds again next time.
writeFileSync(stamp, `${sourcesAt}\n`);
if (!force) process.stderr.write(`authz: built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
