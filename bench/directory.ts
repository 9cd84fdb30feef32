// ManageDirectory throughput: 10,000 mutations of sign-up traffic (a user,
// its principal, the principal accepted, an invitation to an avatar, the
// invitation accepted: five mutations per sign-up) through the store's one
// write pipeline, on a fresh database. Two shapes: 10 batches of 1000
// mutations from one writer, and 1000 batches of 10 from 8 concurrent
// writers.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:directory
//
// Settings: BENCH_DIRECTORY_MUTATIONS (default 10000).

import { randomUUID } from "node:crypto";
import { createLogger } from "../src/logger.js";
import type { DirectoryMutation } from "../src/store/directory-mutations.js";
import { manageDirectory } from "../src/store/directory-writer.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import type { SqlClient } from "../src/store/sql.js";
import { createDatabase, dropDatabase, migrateDatabase } from "./engine.js";

export interface DirectoryBenchRow {
  shape: string;
  writers: number;
  mutations: number;
  seconds: number;
  mutationsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] ?? Number.NaN;
};

/** An organization with an account, and an avatar owned by a staff member's principal: where the sign-ups land. */
async function setUp(db: SqlClient): Promise<{ account: string; avatar: string }> {
  const [org, account, staff, owner, avatar] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  await manageDirectory(db, {
    mutations: [
      { kind: "upsertOrganization", id: org, name: "Bench" },
      { kind: "upsertAccount", id: account, organizationId: org },
      { kind: "upsertStaff", id: staff, logicalKey: `staff:${staff}` },
      { kind: "upsertPrincipal", id: owner, accountId: account, subject: { type: "staff", id: staff } },
      { kind: "acceptPrincipal", id: owner },
      { kind: "createAvatar", id: avatar, organizationId: org, handle: `bench-${avatar}`, ownerPrincipalId: owner },
    ],
  });
  return { account, avatar };
}

/** Five mutations: one sign-up. */
function signUp(at: { account: string; avatar: string }): DirectoryMutation[] {
  const [user, principal, membership] = [randomUUID(), randomUUID(), randomUUID()];
  return [
    { kind: "upsertUser", id: user, fields: { email: `${user}@bench.example`, firstName: "Bench", logicalKey: `user:${user}` } },
    { kind: "upsertPrincipal", id: principal, accountId: at.account, subject: { type: "user", id: user } },
    { kind: "acceptPrincipal", id: principal },
    { kind: "inviteMembership", id: membership, avatarId: at.avatar, principalId: principal, validUntil: null },
    { kind: "acceptMembership", id: membership },
  ];
}

async function run(url: string, total: number, batch: number, writers: number): Promise<DirectoryBenchRow> {
  const db = createPostgresClient({ url, poolMax: writers, logger: createLogger("silent"), applicationName: "authz-bench-directory" });
  try {
    const at = await setUp(db);
    const writes = Math.ceil(total / batch);
    const lat: number[] = [];
    let next = 0;
    const worker = async () => {
      while (next < writes) {
        next++;
        const mutations = Array.from({ length: batch / 5 }, () => signUp(at)).flat();
        const t0 = performance.now();
        await manageDirectory(db, { mutations });
        lat.push(performance.now() - t0);
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: writers }, worker));
    const seconds = (performance.now() - started) / 1000;
    return {
      shape: `${writes} batches of ${batch}`,
      writers,
      mutations: writes * batch,
      seconds,
      mutationsPerSec: (writes * batch) / seconds,
      p50Ms: pct(lat, 0.5),
      p99Ms: pct(lat, 0.99),
    };
  } finally {
    await db.close();
  }
}

export async function runDirectoryBench(adminUrl: string, total = 10_000): Promise<DirectoryBenchRow[]> {
  const name = `authz_bench_directory_${process.pid}`;
  const url = await createDatabase(adminUrl, name);
  try {
    await migrateDatabase(url);
    return [await run(url, total, 1000, 1), await run(url, total, 10, 8)];
  } finally {
    await dropDatabase(adminUrl, name);
  }
}

export function directoryBenchTable(rows: readonly DirectoryBenchRow[]): string {
  const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "–");
  return [
    "| shape | concurrent writers | mutations | seconds | mutations/s | p50 ms per batch | p99 ms per batch |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map((r) => `| ${r.shape} | ${r.writers} | ${r.mutations} | ${f(r.seconds, 1)} | ${f(r.mutationsPerSec)} | ${f(r.p50Ms, 1)} | ${f(r.p99Ms, 1)} |`),
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error("DATABASE_URL is required");
  const rows = await runDirectoryBench(adminUrl, Number(process.env.BENCH_DIRECTORY_MUTATIONS ?? 10_000));
  process.stdout.write(`${directoryBenchTable(rows)}\n`);
}
