// Engine v2 against the engine it replaced (bench/legacy-engine.ts) and a
// Map.get + bit-test floor, on the synthetic dataset of bench/dataset.ts,
// each engine at each scale in a fresh child process (clean heap and RSS):
//
//   build      build time from generated rows (generation included), heap +
//              array-buffer delta per assignment, RSS after a full GC
//   check      checks per CPU-second (median of 3 rounds), the floor in the
//              same process, p50/p99 with each check timed alone, and the
//              heap growth per check over 100k checks after a full GC (0 = the
//              check path allocates nothing)
//   apply      one change at a time, timed alone: an assignment inserted and
//              deleted, a user locked and unlocked, a permission granted to
//              and taken from the root of an organization's role chain
//   lookups    (v2) LookupSubjects on an organization with up to 10k members,
//              LookupResources for a principal with 1k avatars: the first
//              page of 1000 and the whole answer
//
// The dataset gains a small lookup fixture in both engines, apart from the
// checked data: an organization of its own with up to 10k users granted its
// viewer role, one account and principal there, 1k avatars with the
// principal's memberships in them, and the built-in avatar_member role
// holding platform.p00.
//
// Run:  npm run build:bench && node dist/bench/engine-v2.js
// Env:  BENCH_SCALES  comma-separated scales (default 0.002,0.02,0.2; 1 = 5M assignments)
//       BENCH_CHECKS  checks per throughput round (default 500000)
//       BENCH_EDITS   single-change applies per kind (default 200)
//       BENCH_ENGINES which engines (default legacy,v2)
//       BENCH_HEAP_MB heap limit of the children (default 8192)

import { type ChildProcess, fork } from "node:child_process";
import { PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";

import { buildSnapshot, type Snapshot } from "../src/engine/snapshot.js";
import { settledMemory } from "./memory.js";
import type { Change } from "../src/engine/rows.js";
import {
  BUILTIN_ROLES,
  type CheckQuery,
  datasetShape,
  datasetTables,
  floorTable,
  globalPermId,
  makeChecks,
  orgId,
  orgPermId,
  orgRoleId,
  prng,
  rowCounts,
  runFloor,
  userId,
} from "./dataset.js";
import { buildEngine, type Engine as LegacyEngine } from "./legacy-engine.js";

const THIS_FILE = fileURLToPath(import.meta.url);
type Row = Record<string, unknown>;
type EngineName = "legacy" | "v2";

export interface CompareArg {
  engine: EngineName;
  scale: number;
  checks: number;
  edits: number;
}

interface Quantiles {
  p50: number;
  p99: number;
}

export interface CompareResult {
  engine: EngineName;
  scale: number;
  assignments: number;
  /** Generating the rows alone (the build's figure includes it). */
  generateMs: number;
  buildMs: number;
  /** CPU time of the build (user + system, all threads: GC helpers count too). */
  buildCpuMs: number;
  /** heapUsed + arrayBuffers after build minus before, after a full GC. */
  bytes: number;
  heapBytes: number;
  rss: number;
  maxRss: number;
  mismatches: number;
  checksPerSec: number;
  floorPerSec: number;
  checkNs: Quantiles;
  floorNs: Quantiles;
  minorGcsPerRound: number;
  bytesPerCheck: number;
  apply: Record<string, Quantiles & { n: number }>;
  lookups?: {
    members: number;
    subjectsFirstPageMs: number;
    subjectsWholeMs: number;
    subjectsFound: number;
    avatars: number;
    resourcesFirstPageMs: number;
    resourcesWholeMs: number;
    resourcesFound: number;
  };
}

// ---------------------------------------------------------------------------
// The lookup fixture

const fixtureId = (tag: string, i: number) => `${tag}-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;
const FIXTURE_ORG = fixtureId("f1000007", 0);
const FIXTURE_ROLE = fixtureId("f1000008", 0);
const FIXTURE_PERM = fixtureId("f1000009", 0);
const ACCOUNT = fixtureId("f1000001", 0);
const PRINCIPAL = fixtureId("f1000002", 0);
const avatarId = (i: number) => fixtureId("f1000003", i);
const LOOKUP_AVATARS = 1000;
const ACCEPTED = "2020-01-01T00:00:00.000Z";

function withFixture(scale: number): Record<string, Iterable<Row>> {
  const shape = datasetShape(scale);
  const base = datasetTables(shape) as Record<string, Iterable<Row>>;
  const members = Math.min(10_000, shape.users);
  const extra: Record<string, Row[]> = {
    organizations: [{ id: FIXTURE_ORG, tenant_id: null, name: "Lookups", slug: "lookups", role_structure: "multi_role" }],
    roles: [{ id: FIXTURE_ROLE, organization_id: FIXTURE_ORG, key: "viewer", name: "Viewer" }],
    permissions: [{ id: FIXTURE_PERM, organization_id: FIXTURE_ORG, key: "doc.read" }],
    accounts: [{ id: ACCOUNT, organization_id: FIXTURE_ORG, active: true }],
    principals: [{ id: PRINCIPAL, account_id: ACCOUNT, subject_type: "user", subject_id: userId(0), active: true, accepted_at: ACCEPTED, valid_until: null }],
    avatars: Array.from({ length: LOOKUP_AVATARS }, (_, i) => ({ id: avatarId(i), organization_id: FIXTURE_ORG, active: true })),
    memberships: Array.from({ length: LOOKUP_AVATARS }, (_, i) => ({
      id: fixtureId("f1000004", i),
      principal_id: PRINCIPAL,
      avatar_id: avatarId(i),
      owner: i % 10 === 0,
      active: true,
      accepted_at: ACCEPTED,
      valid_until: null,
    })),
    role_permissions: [
      { role_id: BUILTIN_ROLES[0].id, permission_id: globalPermId(0) },
      { role_id: FIXTURE_ROLE, permission_id: FIXTURE_PERM },
    ],
    role_assignments: Array.from({ length: members }, (_, u) => ({
      id: fixtureId("f1000005", u),
      subject_type: "user",
      subject_id: userId(u),
      role_id: FIXTURE_ROLE,
      scope_type: "organization",
      scope_id: FIXTURE_ORG,
      active: true,
      valid_until: null,
    })),
  };
  const out: Record<string, Iterable<Row>> = { ...base };
  for (const [t, rows] of Object.entries(extra)) {
    const first = base[t];
    out[t] = first
      ? {
          *[Symbol.iterator]() {
            yield* first;
            yield* rows;
          },
        }
      : rows;
  }
  return out;
}

// ---------------------------------------------------------------------------
// The child

const gc = (): void => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) for (let i = 0; i < 3; i++) g();
};
const q = (xs: Float64Array | number[], p: number): number => {
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};
/** Memory once the GC and V8's array-buffer sweeper are done (bench/memory.ts). */
const used = async () => {
  const m = await settledMemory();
  return { heap: m.heapUsed, all: m.heapUsed + m.arrayBuffers, rss: m.rss };
};

/** One engine behind one interface: v2 snapshots are replaced on apply, the legacy engine mutates. */
interface Subject {
  check(q: CheckQuery, now: number): boolean;
  apply(c: Change, rev: bigint): void;
}

function open(engine: EngineName, tables: Record<string, Iterable<Row>>, counts: Record<string, number>): { s: Subject; snap?: () => Snapshot } {
  if (engine === "legacy") {
    const e: LegacyEngine = buildEngine(0n, tables);
    return { s: { check: (x, now) => e.check(x.subject, x.permission, x.resource, now).allowed, apply: (c, rev) => e.apply([c], rev) } };
  }
  let snap = buildSnapshot(0n, tables, counts);
  return {
    s: {
      check: (x, now) => snap.check(x.subject, x.permission, x.resource, now).allowed,
      apply: (c, rev) => {
        snap = snap.apply([c], rev);
      },
    },
    snap: () => snap,
  };
}

async function phaseCompare(arg: CompareArg): Promise<CompareResult> {
  const log = (l: string) => process.stderr.write(`  ${arg.engine}@${arg.scale}: ${l}\n`);
  const shape = datasetShape(arg.scale);
  // Generation alone, so the build can be read net of it.
  let t = performance.now();
  let rows = 0;
  for (const it of Object.values(withFixture(arg.scale))) for (const _row of it) rows++;
  const generateMs = performance.now() - t;
  const before = await used();
  t = performance.now();
  const cpu0 = process.cpuUsage();
  const { s: engine, snap } = open(arg.engine, withFixture(arg.scale), { ...rowCounts(shape) });
  const buildMs = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  const buildCpuMs = (cpu.user + cpu.system) / 1000;
  const after = await used();
  const maxRss = process.resourceUsage().maxRSS * 1024;
  const assignments = rowCounts(shape).role_assignments;
  log(
    `generated ${rows} rows in ${(generateMs / 1000).toFixed(1)} s; built in ${(buildMs / 1000).toFixed(1)} s, ${((after.all - before.all) / assignments).toFixed(0)} B/assignment, rss ${(after.rss / 2 ** 20).toFixed(0)} MiB`,
  );

  const now = Date.now();
  const Q = makeChecks(shape, 1 << 16, 42);
  const MASK = Q.length - 1;
  let mismatches = 0;
  for (const x of Q) if (engine.check(x, now) !== x.expected) mismatches++;
  const baseline = Q.slice(0, 20_000).map((x) => engine.check(x, now));

  const floor = floorTable(shape.users);
  const runEngine = (n: number) => {
    let acc = 0;
    for (let i = 0; i < n; i++) if (engine.check(Q[i & MASK] as CheckQuery, now)) acc++;
    return acc;
  };
  let sink = runEngine(200_000) + runFloor(floor, Q, 200_000);
  let minorGcs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === 1) minorGcs++;
  });
  obs.observe({ entryTypes: ["gc"] });
  const eng: number[] = [];
  const flo: number[] = [];
  // Per CPU-second of this process (user + system), so that other load on the shared cores does not count.
  const cpuSecs = (t0: NodeJS.CpuUsage) => {
    const d = process.cpuUsage(t0);
    return (d.user + d.system) / 1e6;
  };
  for (let r = 0; r < 3; r++) {
    let t0 = process.cpuUsage();
    sink += runEngine(arg.checks);
    eng.push(arg.checks / cpuSecs(t0));
    t0 = process.cpuUsage();
    sink += runFloor(floor, Q, arg.checks);
    flo.push(arg.checks / cpuSecs(t0));
  }
  obs.disconnect();
  const minorGcsPerRound = minorGcs / 6; // engine and floor rounds together; the floor allocates nothing either
  // Bytes allocated per check: heap growth over 100k checks right after a full GC (too little to trigger a scavenge).
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  sink += runEngine(100_000);
  const bytesPerCheck = Math.max(0, process.memoryUsage().heapUsed - heap0) / 100_000;
  log(`checks ${eng.map((x) => Math.round(x)).join(", ")}/s; floor ${flo.map((x) => Math.round(x)).join(", ")}/s; ${mismatches} mismatches`);

  const lat = new Float64Array(arg.checks);
  const latF = new Float64Array(arg.checks);
  for (let i = 0; i < arg.checks; i++) {
    const x = Q[i & MASK] as CheckQuery;
    const t0 = process.hrtime.bigint();
    if (engine.check(x, now)) sink++;
    lat[i] = Number(process.hrtime.bigint() - t0);
  }
  for (let i = 0; i < arg.checks; i++) {
    const x = Q[i & MASK] as CheckQuery;
    const t0 = process.hrtime.bigint();
    const b = floor.get(x.subject.id);
    if (b !== undefined && ((b[0] as number) & (1 << x.bit)) !== 0) sink++;
    latF[i] = Number(process.hrtime.bigint() - t0);
  }

  const apply = measureApply(engine, shape.orgs, shape.users, arg.edits);
  log(
    `apply p50 ${Object.entries(apply)
      .map(([k, v]) => `${k} ${v.p50.toFixed(0)} µs`)
      .join(", ")}`,
  );
  let after2 = 0;
  for (let i = 0; i < 20_000; i++) if (engine.check(Q[i] as CheckQuery, now) !== baseline[i]) after2++;
  if (after2 > 0) throw new Error(`${after2} mismatches after reverting the edits`);

  const lookups = snap ? measureLookups(snap(), Math.min(10_000, shape.users), now) : undefined;
  if (sink === -1) log("unreachable");
  return {
    engine: arg.engine,
    scale: arg.scale,
    assignments,
    generateMs,
    buildMs,
    buildCpuMs,
    bytes: after.all - before.all,
    heapBytes: after.heap - before.heap,
    rss: after.rss,
    maxRss,
    mismatches,
    checksPerSec: q(eng, 50),
    floorPerSec: q(flo, 50),
    checkNs: { p50: q(lat, 50), p99: q(lat, 99) },
    floorNs: { p50: q(latF, 50), p99: q(latF, 99) },
    minorGcsPerRound,
    bytesPerCheck,
    apply,
    ...(lookups ? { lookups } : {}),
  };
}

function measureApply(engine: Subject, orgs: number, users: number, edits: number): CompareResult["apply"] {
  const rand = prng(99);
  let rev = 1n;
  const samples: Record<string, number[]> = {
    "assignment insert": [],
    "assignment delete": [],
    "user lock": [],
    "user unlock": [],
    "grant on chain root": [],
    "revoke on chain root": [],
  };
  const timed = (kind: string, c: Change) => {
    const t0 = process.hrtime.bigint();
    engine.apply(c, rev++);
    samples[kind]?.push(Number(process.hrtime.bigint() - t0) / 1000);
  };
  for (let i = 0; i < edits; i++) {
    const o = Math.floor(rand() * orgs);
    const u = Math.floor(rand() * users);
    const a = {
      id: fixtureId("f1000006", i),
      subject_type: "user",
      subject_id: userId(u),
      role_id: orgRoleId(o, 2),
      scope_type: "organization",
      scope_id: orgId(o),
      active: true,
      valid_until: null,
    };
    timed("assignment insert", { table: "role_assignments", op: "INSERT", oldRow: null, newRow: a });
    timed("assignment delete", { table: "role_assignments", op: "DELETE", oldRow: a, newRow: null });
    const user = { id: userId(u), locked: u % 97 === 13, enabled: u % 89 !== 7 };
    timed("user lock", { table: "users", op: "UPDATE", oldRow: user, newRow: { ...user, locked: true } });
    timed("user unlock", { table: "users", op: "UPDATE", oldRow: { ...user, locked: true }, newRow: user });
    const grant = { role_id: orgRoleId(o, 4), permission_id: orgPermId(o, 9) };
    timed("grant on chain root", { table: "role_permissions", op: "INSERT", oldRow: null, newRow: grant });
    timed("revoke on chain root", { table: "role_permissions", op: "DELETE", oldRow: grant, newRow: null });
  }
  const out: CompareResult["apply"] = {};
  for (const [k, xs] of Object.entries(samples)) out[k] = { n: xs.length, p50: q(xs, 50), p99: q(xs, 99) };
  return out;
}

function measureLookups(snap: Snapshot, members: number, now: number): NonNullable<CompareResult["lookups"]> {
  const org = { type: "organization" as const, id: FIXTURE_ORG };
  const principal = { type: "principal" as const, id: PRINCIPAL };
  const page = <T>(it: Iterable<T>, n: number): number => {
    let k = 0;
    for (const _ of it) if (++k >= n) break;
    return k;
  };
  const time = (fn: () => number): [number, number] => {
    const xs: number[] = [];
    let found = fn() + fn(); // warm-up
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      found = fn();
      xs.push(performance.now() - t0);
    }
    return [q(xs, 50), found];
  };
  const [subjectsFirstPageMs] = time(() => page(snap.lookupSubjects("doc.read", org, now), 1000));
  const [subjectsWholeMs, subjectsFound] = time(() => page(snap.lookupSubjects("doc.read", org, now), Number.MAX_SAFE_INTEGER));
  const [resourcesFirstPageMs] = time(() => page(snap.lookupResources(principal, "platform.p00", "avatar", now), 1000));
  const [resourcesWholeMs, resourcesFound] = time(() => page(snap.lookupResources(principal, "platform.p00", "avatar", now), Number.MAX_SAFE_INTEGER));
  if (resourcesFound !== LOOKUP_AVATARS) throw new Error(`lookupResources found ${resourcesFound} avatars, expected ${LOOKUP_AVATARS}`);
  return { members, subjectsFirstPageMs, subjectsWholeMs, subjectsFound, avatars: LOOKUP_AVATARS, resourcesFirstPageMs, resourcesWholeMs, resourcesFound };
}

// ---------------------------------------------------------------------------
// The parent

function runChild(arg: CompareArg, heapMb: number, timeoutMs: number): Promise<CompareResult> {
  const child: ChildProcess = fork(THIS_FILE, ["--phase", JSON.stringify(arg)], {
    execArgv: [`--max-old-space-size=${heapMb}`, "--expose-gc"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`engine-v2 ${arg.engine}@${arg.scale}: no result within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    child.once("message", (m) => {
      clearTimeout(timer);
      const msg = m as { ok: boolean; data?: CompareResult; error?: string };
      if (msg.ok && msg.data) resolve(msg.data);
      else reject(new Error(msg.error ?? "no result"));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`engine-v2 ${arg.engine}@${arg.scale}: child exited (${code})`));
    });
  });
}

export interface CompareOptions {
  scales: number[];
  checks: number;
  edits: number;
  engines: EngineName[];
  heapMb: number;
  log?: (l: string) => void;
}

export async function runEngineV2Compare(o: CompareOptions): Promise<CompareResult[]> {
  const out: CompareResult[] = [];
  for (const scale of o.scales) {
    for (const engine of o.engines) {
      o.log?.(`engine-v2: ${engine} at scale ${scale}`);
      out.push(await runChild({ engine, scale, checks: o.checks, edits: o.edits }, o.heapMb, 60 * 60_000));
    }
  }
  return out;
}

const int = (n: number) => Math.round(n).toLocaleString("en-US");
const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

export function formatCompare(rows: CompareResult[]): string {
  const out: string[] = [];
  out.push(
    "| assignments | engine | build: wall (CPU) / generating the rows alone | bytes / assignment (heap only) | RSS after build (peak) | checks per CPU-second | floor ops/s | ÷ floor | p50 / p99 | bytes allocated per check | mismatches |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    out.push(
      `| ${int(r.assignments)} | ${r.engine} | ${(r.buildMs / 1000).toFixed(1)} s (${(r.buildCpuMs / 1000).toFixed(1)} s) / ${(r.generateMs / 1000).toFixed(1)} s | ${int(r.bytes / r.assignments)} (${int(r.heapBytes / r.assignments)}) | ${mib(r.rss)} (${mib(r.maxRss)}) | ${int(r.checksPerSec)} | ${int(r.floorPerSec)} | ${(r.checksPerSec / r.floorPerSec).toFixed(2)} | ${us(r.checkNs.p50)} / ${us(r.checkNs.p99)} | ${r.bytesPerCheck.toFixed(1)} | ${r.mismatches} |`,
    );
  }
  out.push("");
  out.push("Apply of one change, timed alone (p50 / p99, µs):");
  out.push("");
  const kinds = Object.keys(rows[0]?.apply ?? {});
  out.push(`| assignments | engine | ${kinds.join(" | ")} |`);
  out.push(`|---|---|${kinds.map(() => "---").join("|")}|`);
  for (const r of rows)
    out.push(`| ${int(r.assignments)} | ${r.engine} | ${kinds.map((k) => `${r.apply[k]?.p50.toFixed(0)} / ${r.apply[k]?.p99.toFixed(0)}`).join(" | ")} |`);
  const lk = rows.filter((r) => r.lookups);
  if (lk.length) {
    out.push("");
    out.push("Lookups (v2), median of 7 runs:");
    out.push("");
    out.push(
      "| assignments | LookupSubjects(doc.read, organization with N grants): first 1000 / whole | subjects found | LookupResources(principal, avatar, 1k memberships): first 1000 / whole | avatars found |",
    );
    out.push("|---|---|---|---|---|");
    for (const r of lk) {
      const l = r.lookups as NonNullable<CompareResult["lookups"]>;
      out.push(
        `| ${int(r.assignments)} | N = ${int(l.members)}+: ${l.subjectsFirstPageMs.toFixed(2)} ms / ${l.subjectsWholeMs.toFixed(2)} ms | ${int(l.subjectsFound)} | ${l.resourcesFirstPageMs.toFixed(2)} ms / ${l.resourcesWholeMs.toFixed(2)} ms | ${int(l.resourcesFound)} |`,
      );
    }
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------
// Entry points

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const i = process.argv.indexOf("--phase");
  if (i !== -1) {
    try {
      const data = await phaseCompare(JSON.parse(process.argv[i + 1] ?? "{}") as CompareArg);
      process.send?.({ ok: true, data }, () => process.exit(0));
    } catch (err) {
      process.send?.({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () => process.exit(1));
    }
  } else {
    const env = process.env;
    const scales = (env.BENCH_SCALES ?? "0.002,0.02,0.2").split(",").map(Number);
    const engines = (env.BENCH_ENGINES ?? "legacy,v2").split(",") as EngineName[];
    const rows = await runEngineV2Compare({
      scales,
      engines,
      checks: Number(env.BENCH_CHECKS ?? 500_000),
      edits: Number(env.BENCH_EDITS ?? 200),
      heapMb: Number(env.BENCH_HEAP_MB ?? 8192),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stdout.write(`${formatCompare(rows)}\n\n<!-- ${JSON.stringify(rows)} -->\n`);
  }
}
