// A/B of the bulk importer: another build's src/store/import-bulk.js (A, e.g.
// main's) against this checkout's (B), alternating A-B, B-A, ... in one run,
// each import of the bench's generated document into a freshly migrated
// database, with wall time, this process's CPU and its PostgreSQL backend's
// (from /proc). Both share one machine's load, so compare them by ratio.
//
//   npm run build && cp -r dist .ab-base        # then put A's import-bulk.js into
//   git show main:src/store/import-bulk.ts > src/store/ab.tmp.ts \
//     && npx tsc --outDir /tmp/ab --module esnext --target es2022 --moduleResolution bundler --skipLibCheck src/store/ab.tmp.ts; \
//     rm src/store/ab.tmp.ts && cp /tmp/ab/store/ab.tmp.js .ab-base/src/store/import-bulk.js
//   DATABASE_URL=postgres://... AB_RECORDS=200000 AB_ROUNDS=4 AB_A_SQL="create index ..." node scripts/import-ab.mjs
//
// AB_A_SQL runs in A's database before its import (A's schema where the
// migrations differ, e.g. an index this checkout's migrations drop); it may
// hold several statements (AB_A_SQL="$(cat a.sql)"). Against a main from before
// migration 0012: AB_A_SQL="$(cat scripts/import-ab-row-triggers.sql)".
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const records = Number(process.env.AB_RECORDS ?? 200_000);
const rounds = Number(process.env.AB_ROUNDS ?? 4);
const adminUrl = process.env.DATABASE_URL;
if (!adminUrl) throw new Error("DATABASE_URL is required");
const dirs = { A: process.env.AB_BASE ?? `${root}.ab-base`, B: `${root}dist` };
const mods = {};
for (const [k, d] of Object.entries(dirs)) {
  mods[k] = {
    imp: await import(`${d}/src/store/import.js`),
    pc: await import(`${d}/src/store/postgres-client.js`),
    lg: await import(`${d}/src/logger.js`),
  };
}
const eng = await import(`${root}dist/bench/engine.js`);
const { importBenchDocument } = await import(`${root}dist/bench/import.js`);
const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
};
const doc = importBenchDocument(records);

async function once(k) {
  const name = `authz_ab_import_${process.pid}`;
  const url = await eng.createDatabase(adminUrl, name);
  try {
    await eng.migrateDatabase(url);
    const m = mods[k];
    const db = m.pc.createPostgresClient({ url, poolMax: 1, logger: m.lg.createLogger("silent"), applicationName: "authz-import-ab" });
    try {
      if (k === "A" && process.env.AB_A_SQL) await db.exec(process.env.AB_A_SQL);
      const [b] = await db.query("select pg_backend_pid() as pid");
      const pid = Number(b.pid);
      const load = readFileSync("/proc/loadavg", "utf8").split(" ")[0];
      const p0 = cpuMs(pid);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await m.imp.importDocument(db, doc, { bulk: true, changeLog: "auto" });
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      const node = (c.user + c.system) / 1000;
      const pg = cpuMs(pid) - p0;
      return { ms, node, pg, load };
    } finally {
      await db.close();
    }
  } finally {
    await eng.dropDatabase(adminUrl, name);
  }
}

const res = { A: [], B: [] };
for (let r = 0; r < rounds; r++) {
  for (const k of r % 2 ? ["B", "A"] : ["A", "B"]) {
    const x = await once(k);
    res[k].push(x);
    const perCpu = records / ((x.node + x.pg) / 1000);
    console.log(
      `${k} ${(x.ms / 1000).toFixed(2)} s ${Math.round((records / x.ms) * 1000)} records/s; CPU ${(x.node / 1000).toFixed(2)} s + ${(x.pg / 1000).toFixed(2)} s = ${Math.round(perCpu)} records/CPU-s; load ${x.load}`,
    );
  }
}
const sum = (l, f) => l.reduce((s, x) => s + f(x), 0);
for (const k of ["A", "B"]) {
  const l = res[k];
  console.log(
    `${k} total: ${Math.round((records * l.length) / (sum(l, (x) => x.ms) / 1000))} records/s, ${Math.round((records * l.length) / (sum(l, (x) => x.node + x.pg) / 1000))} records/CPU-s (authz ${(sum(l, (x) => x.node) / l.length / 1000).toFixed(2)} s + PostgreSQL ${(sum(l, (x) => x.pg) / l.length / 1000).toFixed(2)} s per import)`,
  );
}
