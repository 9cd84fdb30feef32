// `npm run bench:lookups`: the lookups and Watch
// (issue 15), short. On the engine benchmark's synthetic dataset
// (bench/dataset.ts) at LOOKUP_BENCH_SCALE (default 0.1 = 500k assignments;
// 1 = the 5M of issue 15, which needs ~4 GB of heap and minutes to build),
// plus:
//   - organization 0 with 10,000 extra members (the "member" role on it);
//   - one principal with memberships in 1,000 avatars of organization 1.
// Measured in one process, on one snapshot, against Check in the same run:
//   LookupSubjects(doc.read, organization 0) and LookupResources(principal,
//   avatar.view, avatar): the whole answer, and each page of 1000 through the
//   same pager the RPCs use (src/rpc/lookup-pages.ts); p50 and p99 of
//   LOOKUP_BENCH_ROUNDS rounds (default 20).
//   Watch delivery lag (when DATABASE_URL is set): a server on a fresh
//   database, one Watch stream over gRPC, LOOKUP_BENCH_WRITES (default 100)
//   sequential writes by another client; commit returned -> change received.
// Prints a Markdown table for docs/benchmarks.md.

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import postgres from "postgres";
import { WatchService } from "../gen/authz/v1/watch_service_pb.js";
import { buildSnapshot, type Snapshot } from "../src/engine/snapshot.js";
import type { FollowedTable } from "../src/engine/rows.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { createApp } from "../src/main.js";
import { LookupPages } from "../src/rpc/lookup-pages.js";
import { BUILTIN_ROLES, datasetShape, datasetTables, orgId, orgRoleId } from "./dataset.js";
import { createDatabase, dropDatabase, migrateDatabase } from "./engine.js";

const SCALE = Number(process.env.LOOKUP_BENCH_SCALE ?? "0.1");
const ROUNDS = Number(process.env.LOOKUP_BENCH_ROUNDS ?? "20");
const WRITES = Number(process.env.LOOKUP_BENCH_WRITES ?? "100");
const MEMBERS = 10_000;
const AVATARS = 1_000;
const NOW = Date.parse("2026-06-01T12:00:00Z");

type Row = Record<string, unknown>;
const uuid = (group: string, n: number) => `${group}-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const member = (i: number) => uuid("0000b001", i);
const ACCOUNT = uuid("0000b002", 1);
const PRINCIPAL = uuid("0000b003", 1);
const avatar = (i: number) => uuid("0000b004", i);
const AVATAR_VIEW = uuid("0000b005", 1);

function* chain(...parts: Iterable<Row>[]): Generator<Row> {
  for (const p of parts) yield* p;
}

function extraRows(): Partial<Record<FollowedTable, Row[]>> {
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const accepted = "2024-01-01T00:00:00Z";
  return {
    users: range(MEMBERS).map((i) => ({ id: member(i), locked: false, enabled: true })),
    role_assignments: range(MEMBERS).map((i) => ({
      id: uuid("0000b006", i),
      subject_type: "user",
      subject_id: member(i),
      role_id: orgRoleId(0, 3),
      scope_type: "organization",
      scope_id: orgId(0),
      active: true,
      valid_until: null,
    })),
    accounts: [{ id: ACCOUNT, organization_id: orgId(1), active: true }],
    principals: [{ id: PRINCIPAL, account_id: ACCOUNT, subject_type: "user", subject_id: member(0), active: true, accepted_at: accepted, valid_until: null }],
    avatars: range(AVATARS).map((i) => ({ id: avatar(i), organization_id: orgId(1), active: true })),
    memberships: range(AVATARS).map((i) => ({
      id: uuid("0000b007", i),
      principal_id: PRINCIPAL,
      avatar_id: avatar(i),
      owner: i % 2 === 0,
      active: true,
      accepted_at: accepted,
      valid_until: null,
    })),
    permissions: [{ id: AVATAR_VIEW, organization_id: null, key: "avatar.view" }],
    role_permissions: [{ role_id: BUILTIN_ROLES[0].id, permission_id: AVATAR_VIEW }],
  };
}

function build(): { snapshot: Snapshot; ms: number; assignments: number } {
  const shape = datasetShape(SCALE);
  const base = datasetTables(shape) as Partial<Record<FollowedTable, Iterable<Row>>>;
  const extra = extraRows();
  const tables: Partial<Record<FollowedTable, Iterable<Row>>> = { ...base };
  for (const [t, rows] of Object.entries(extra) as Array<[FollowedTable, Row[]]>) tables[t] = { [Symbol.iterator]: () => chain(base[t] ?? [], rows) };
  const t0 = performance.now();
  const snapshot = buildSnapshot(1n, tables);
  return { snapshot, ms: performance.now() - t0, assignments: snapshot.stats().assignments };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
const ms = (x: number) => (x < 1 ? x.toFixed(3) : x.toFixed(1));

interface Measured {
  name: string;
  results: number;
  whole: number[];
  pages: number[];
}

function measure<T>(name: string, walk: () => Iterable<T>): Measured {
  const whole: number[] = [];
  const pages: number[] = [];
  let results = 0;
  for (let r = 0; r < ROUNDS; r++) {
    let t0 = performance.now();
    results = 0;
    for (const _ of walk()) results++;
    whole.push(performance.now() - t0);
    // Pages of 1000 through the RPCs' pager (a fresh one per round: the first page walks, later ones continue).
    const pager = new LookupPages(() => 0);
    const snapshotStub = { revision: 1n } as Snapshot;
    let p = { nextPageToken: "" } as { nextPageToken: string };
    let first = true;
    while (first || p.nextPageToken) {
      const token = first ? undefined : pager.token(p.nextPageToken, "bench", "bench");
      t0 = performance.now();
      p = pager.page(
        snapshotStub,
        token,
        "bench",
        1000,
        0,
        () => walk()[Symbol.iterator](),
        () => true,
      );
      pages.push(performance.now() - t0);
      first = false;
    }
  }
  return { name, results, whole, pages };
}

function checkNs(snapshot: Snapshot): number {
  const n = 200_000;
  const subject = { type: "user", id: member(7) } as const;
  const resource = { type: "organization", id: orgId(0) } as const;
  for (let i = 0; i < 10_000; i++) snapshot.check(subject, "doc.read", resource, NOW);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) snapshot.check(subject, "doc.read", resource, NOW);
  return ((performance.now() - t0) * 1e6) / n;
}

async function watchLag(adminUrl: string): Promise<number[]> {
  const name = `authz_bench_watch_${process.pid}`;
  const url = await createDatabase(adminUrl, name);
  await migrateDatabase(url);
  const app = createApp(
    loadConfig({ DATABASE_URL: url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  const writer = postgres(url, { max: 1, onnotice: () => {} });
  const abort = new AbortController();
  try {
    const { grpcPort } = await app.listen();
    await app.ready;
    const watcher = createClient(WatchService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${grpcPort}` }));
    const arrived = new Map<string, number>();
    let wake: (() => void) | undefined;
    let opened: () => void = () => {};
    const open = new Promise<void>((r) => (opened = r));
    const stream = (async () => {
      for await (const m of watcher.watch({}, { signal: abort.signal })) {
        opened();
        for (const c of m.changes) arrived.set(c.ids.id ?? "", performance.now());
        wake?.();
      }
    })().catch(() => {});
    await open;
    const lags: number[] = [];
    for (let i = 0; i < WRITES; i++) {
      const [row] = await writer<{ id: string }[]>`insert into staff (logical_key) values (${`staff:bench-${i}`}) returning id::text`;
      const committed = performance.now();
      const id = row?.id ?? "";
      while (!arrived.has(id)) await new Promise<void>((r) => (wake = r));
      lags.push((arrived.get(id) as number) - committed);
    }
    abort.abort();
    await stream;
    return lags;
  } finally {
    abort.abort();
    await writer.end({ timeout: 2 });
    await app.stop();
    await dropDatabase(adminUrl, name);
  }
}

async function main(): Promise<void> {
  const { snapshot, ms: buildMs, assignments } = build();
  console.error(`built ${assignments} assignments in ${(buildMs / 1000).toFixed(1)} s`);
  const subjects = measure("LookupSubjects(doc.read, organization with 10k members)", () =>
    snapshot.lookupSubjects("doc.read", { type: "organization", id: orgId(0) }, NOW),
  );
  const resources = measure("LookupResources(principal with 1k avatars, avatar.view, avatar)", () =>
    snapshot.lookupResources({ type: "principal", id: PRINCIPAL }, "avatar.view", "avatar", NOW),
  );
  const check = checkNs(snapshot);
  const lines = [
    `Dataset: scale ${SCALE} (${assignments} assignments), ${ROUNDS} rounds; Check on the same snapshot: ${check.toFixed(0)} ns.`,
    "",
    "| query | results | whole answer p50 / p99 (ms) | page of 1000 p50 / p99 (ms) |",
    "|---|---|---|---|",
    ...[subjects, resources].map(
      (m) => `| ${m.name} | ${m.results} | ${ms(pct(m.whole, 50))} / ${ms(pct(m.whole, 99))} | ${ms(pct(m.pages, 50))} / ${ms(pct(m.pages, 99))} |`,
    ),
  ];
  const adminUrl = process.env.DATABASE_URL;
  if (adminUrl) {
    const lags = await watchLag(adminUrl);
    lines.push(
      "",
      `Watch delivery lag, ${lags.length} writes by another client (commit returned -> change received): p50 ${ms(pct(lags, 50))} ms, p99 ${ms(pct(lags, 99))} ms, max ${ms(Math.max(...lags))} ms.`,
    );
  }
  console.log(lines.join("\n"));
}

await main();
