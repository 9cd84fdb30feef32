// The npm registry reachable from our CI machines serves only the Linux
// builds of @bufbuild/buf, so `npm install` writes a package-lock.json
// without the other platforms' optional packages and `npm ci` (npm 11) then
// refuses the lock as out of sync. This adds those entries back, marked
// optional and platform-bound, so npm skips them on Linux without fetching.
// Run after any `npm install`: `node scripts/fix-lockfile.mjs`.
import { readFileSync, writeFileSync } from "node:fs";

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const buf = lock.packages["node_modules/@bufbuild/buf"];
const platforms = {
  "darwin-arm64": ["darwin", "arm64"],
  "darwin-x64": ["darwin", "x64"],
  "linux-aarch64": ["linux", "arm64"],
  "linux-armv7": ["linux", "arm"],
  "linux-x64": ["linux", "x64"],
  "win32-arm64": ["win32", "arm64"],
  "win32-x64": ["win32", "x64"],
};
let added = 0;
for (const [name, [os, cpu]] of Object.entries(platforms)) {
  const key = `node_modules/@bufbuild/buf-${name}`;
  if (lock.packages[key]) continue;
  lock.packages[key] = {
    version: buf.version,
    cpu: [cpu],
    dev: true,
    license: "Apache-2.0",
    optional: true,
    os: [os],
    engines: { node: ">=12" },
  };
  added++;
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`fix-lockfile: ${added} platform entr${added === 1 ? "y" : "ies"} added`);
