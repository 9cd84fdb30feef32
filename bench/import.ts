// The import benchmark: a generated seed-shaped document of N records (every
// kind of record a real directory has, most of them role assignments) imported
// into a fresh database through importDocument, the code `authz import` runs:
// in bulk, then the same file again (nothing changes), then a smaller file of
// the same shape one statement per record (the pre-bulk path) in the same run.
// Then the scale curve: the bulk import alone at each size of BENCH_IMPORT_SCALES.
// Run alone: BENCH_ONLY=import npm run bench (BENCH_IMPORT_RECORDS, BENCH_IMPORT_ROW_RECORDS,
// BENCH_IMPORT_SCALES; 5,000,000 needs node --max-old-space-size=12288 for the generated document).

import { readFileSync } from "node:fs";
import { createLogger } from "../src/logger.js";
import { importDocument, type ImportSummary } from "../src/store/import.js";
import { CHUNK_ROWS } from "../src/store/import-bulk.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { createDatabase, dropDatabase, migrateDatabase } from "./engine.js";

export interface ImportRun {
  records: number;
  ms: number;
  recordsPerSec: number;
  changeLog: ImportSummary["changeLog"];
  /** CPU time of this process and of the import's PostgreSQL backend (from /proc; undefined when PostgreSQL is not local). */
  cpuMs?: { node: number; postgres: number | undefined };
}

export interface ImportBenchResult {
  bulk: ImportRun;
  /** The same file again: every record unchanged, no revision. */
  reimport: ImportRun;
  /** One statement per record (the path before bulk writing), on a smaller file of the same shape. */
  rowByRow: ImportRun;
  /** Records per section of the bulk file. */
  sections: Record<string, number>;
  /** PostgreSQL backend CPU per role-assignment row, by how the table is constrained (the importer's statement). */
  rowCostUs?: Array<{ table: string; rows: number; cpuUsPerRow: number }>;
  /** The bulk import at each size of BENCH_IMPORT_SCALES, each into a fresh database. */
  curve?: ImportRun[];
}

/**
 * The same new role assignments inserted, with the importer's statement, into
 * role_assignments as shipped, with its triggers off, and into copies with
 * its indexes only and with nothing: where PostgreSQL's time per row goes.
 */
async function rowCosts(url: string, records: number, rows: number): Promise<ImportBenchResult["rowCostUs"]> {
  const db = createPostgresClient({ url, poolMax: 1, logger: createLogger("silent"), applicationName: "authz-bench-import" });
  const out: NonNullable<ImportBenchResult["rowCostUs"]> = [];
  try {
    const [backend] = await db.query<{ pid: number }>("select pg_backend_pid() as pid");
    const pid = Number(backend?.pid);
    // New pairs: each user with role-0 of other organizations (the file assigns role-0 only on the user's own place).
    const { users, orgs } = benchShape(records);
    const assignments: string[][] = [];
    for (let k = 1; assignments.length < 4 * rows && k < orgs; k++) {
      for (let u = 0; u < users && assignments.length < 4 * rows; u++) assignments.push([id(3, u), id(4, ((u + k) % orgs) * 5)]);
    }
    const variants: Array<[string, string, string | undefined]> = [
      ["role_assignments, as shipped", "role_assignments", undefined],
      ["role_assignments, its triggers off", "role_assignments", "alter table role_assignments disable trigger user"],
      [
        "a copy with its indexes, no foreign keys or triggers",
        "bench_ra_indexed",
        "create table bench_ra_indexed (like role_assignments including defaults including indexes)",
      ],
      ["a copy without indexes", "bench_ra_bare", "create table bench_ra_bare (like role_assignments including defaults)"],
    ];
    for (const [i, [label, table, pre]] of variants.entries()) {
      const part = assignments.slice(i * rows, (i + 1) * rows);
      if (part.length < rows) break;
      await db
        .readWriteTx(async (tx) => {
          await tx.query("select set_config('authz.bulk_log', 'on', true)");
          if (pre) await tx.query(pre);
          const c0 = processCpuMs(pid);
          for (let at = 0; at < part.length; at += CHUNK_ROWS) {
            await tx.query(
              `insert into ${table} (subject_type, subject_id, role_id, scope_type, scope_id)
             select 'user', (e.r->>0)::uuid, (e.r->>1)::uuid, 'organization', ro.organization_id
               from jsonb_array_elements($1::text::jsonb) e(r) join roles ro on ro.id = (e.r->>1)::uuid
             on conflict do nothing`,
              [JSON.stringify(part.slice(at, at + CHUNK_ROWS))],
            );
          }
          const c1 = processCpuMs(pid);
          if (c0 !== undefined && c1 !== undefined) out.push({ table: label, rows: part.length, cpuUsPerRow: ((c1 - c0) * 1000) / part.length });
          throw new RolledBack();
        })
        .catch((err: unknown) => {
          if (!(err instanceof RolledBack)) throw err;
        });
    }
  } finally {
    await db.close();
  }
  return out;
}

class RolledBack extends Error {}

const id = (kind: number, i: number): string => `${kind.toString(16).padStart(8, "0")}-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;

/**
 * A directory of about `records` records: per organization 5 roles, 8
 * permissions, their grants, 2 accounts, 4 principals, 4 avatars with
 * memberships; users with a place in an organization; the rest are role
 * assignments (UserRole).
 */
const benchShape = (records: number) => ({ orgs: Math.max(1, Math.floor(records / 200)), users: Math.max(1, Math.floor(records / 10)) });

export function importBenchDocument(records: number): Record<string, unknown[]> {
  const { orgs, users } = benchShape(records);
  const doc: Record<string, Array<Record<string, unknown>>> = {
    TENANT: [],
    ORGANIZATION: [],
    User: [],
    Role: [],
    Permission: [],
    RolePermission: [],
    ACCOUNT: [],
    PRINCIPAL: [],
    AVATAR: [],
    MEMBERSHIP: [],
    UserOrganizationInfo: [],
    UserRole: [],
  };
  const push = (s: string, r: Record<string, unknown>) => (doc[s] as Array<Record<string, unknown>>).push(r);
  const tenants = Math.max(1, Math.floor(orgs / 100));
  for (let t = 0; t < tenants; t++) push("TENANT", { id: id(1, t), name: `Tenant ${t}`, slug: `tenant-${t}` });
  for (let u = 0; u < users; u++) push("User", { user_id: id(3, u), email: `user${u}@example.test`, locked: false, created_at: 1_700_000_000 + u });
  for (let o = 0; o < orgs; o++) {
    // multi_role: users hold several roles per organization (the rest of the file assigns them).
    push("ORGANIZATION", { id: id(2, o), tenant_id: id(1, o % tenants), name: `Org ${o}`, slug: `org-${o}`, role_structure: "multi_role" });
    for (let p = 0; p < 8; p++) push("Permission", { permission_id: id(5, o * 8 + p), org_id: id(2, o), name: `perm.${p}` });
    for (let r = 0; r < 5; r++) {
      push("Role", { role_id: id(4, o * 5 + r), org_id: id(2, o), name: `Role ${r}`, key: `role-${r}` });
      for (let p = r; p < 8; p += 2) push("RolePermission", { role_id: id(4, o * 5 + r), permission_id: id(5, o * 8 + p) });
    }
    for (let a = 0; a < 2; a++) push("ACCOUNT", { id: id(6, o * 2 + a), organization_id: id(2, o), email: `acct${a}@org${o}.test` });
    for (let v = 0; v < 4; v++) push("AVATAR", { id: id(8, o * 4 + v), organization_id: id(2, o), handle: `avatar-${v}` });
    for (let p = 0; p < 4; p++) {
      const principal = o * 4 + p;
      push("PRINCIPAL", {
        id: id(7, principal),
        account_id: id(6, o * 2 + (p % 2)),
        subject_type: "user",
        subject_id: id(3, (o * 7 + p) % users),
        accepted_at: "2026-01-01T00:00:00Z",
      });
      push("MEMBERSHIP", {
        id: id(9, principal),
        principal_id: id(7, principal),
        avatar_id: id(8, principal),
        owner: true,
        accepted_at: "2026-01-01T00:00:00Z",
      });
    }
  }
  for (let u = 0; u < users; u++) push("UserOrganizationInfo", { user_id: id(3, u), org_id: id(2, u % orgs), user_role: "role-0" });
  const used = Object.values(doc).reduce((n, l) => n + l.length, 0);
  // The rest: role assignments, each (user, role) once.
  for (let i = 0; i < records - used; i++) {
    const u = i % users;
    const round = Math.floor(i / users);
    const o = (u + round) % orgs;
    push("UserRole", { user_id: id(3, u), role_id: id(4, o * 5 + 1 + (round % 4)) });
  }
  return doc;
}

const countRecords = (doc: Record<string, unknown[]>): number => Object.values(doc).reduce((n, l) => n + l.length, 0);

/** CPU milliseconds of a local process so far (utime + stime), or undefined when it cannot be read. */
function processCpuMs(pid: number): number | undefined {
  try {
    const fields = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] as string).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

async function timedImport(url: string, doc: Record<string, unknown[]>, bulk: boolean): Promise<ImportRun> {
  // One connection, so the import's PostgreSQL backend is the one whose CPU is read.
  const db = createPostgresClient({ url, poolMax: 1, logger: createLogger("silent"), applicationName: "authz-bench-import" });
  try {
    const [backend] = await db.query<{ pid: number }>("select pg_backend_pid() as pid");
    const pg0 = processCpuMs(Number(backend?.pid));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const s = await importDocument(db, doc, { bulk, changeLog: bulk ? "auto" : "rows" });
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const pg1 = processCpuMs(Number(backend?.pid));
    const records = countRecords(doc);
    const postgres = pg0 !== undefined && pg1 !== undefined ? pg1 - pg0 : undefined;
    return { records, ms, recordsPerSec: (records / ms) * 1000, changeLog: s.changeLog, cpuMs: { node: (cpu.user + cpu.system) / 1000, postgres } };
  } finally {
    await db.close();
  }
}

/** The bulk import of generated files of each size, each into a freshly migrated database (the scale curve). */
export async function runImportCurve(adminUrl: string, sizes: readonly number[], log: (l: string) => void): Promise<ImportRun[]> {
  const out: ImportRun[] = [];
  for (const size of sizes) {
    const name = `authz_bench_import_curve_${process.pid}`;
    const url = await createDatabase(adminUrl, name);
    try {
      await migrateDatabase(url);
      const doc = importBenchDocument(size);
      log(`import curve: ${countRecords(doc).toLocaleString("en-US")} records in bulk`);
      const run = await timedImport(url, doc, true);
      log(`import curve: ${Math.round(run.recordsPerSec).toLocaleString("en-US")} records/s`);
      out.push(run);
    } finally {
      await dropDatabase(adminUrl, name);
    }
  }
  return out;
}

export async function runImportBench(adminUrl: string, records: number, rowRecords: number, log: (l: string) => void): Promise<ImportBenchResult> {
  const doc = importBenchDocument(records);
  const sections = Object.fromEntries(Object.entries(doc).map(([k, v]) => [k, v.length]));
  const name = `authz_bench_import_${process.pid}`;
  const url = await createDatabase(adminUrl, name);
  try {
    await migrateDatabase(url);
    log(`import: ${countRecords(doc).toLocaleString("en-US")} records in bulk`);
    const bulk = await timedImport(url, doc, true);
    log(`import: ${Math.round(bulk.recordsPerSec).toLocaleString("en-US")} records/s; the same file again`);
    const reimport = await timedImport(url, doc, true);
    log("import: PostgreSQL's CPU per role-assignment row, by constraint");
    const rowCostUs = await rowCosts(url, records, Math.min(40_000, Math.floor(records / 5)));
    await dropDatabase(adminUrl, name);
    await createDatabase(adminUrl, name);
    await migrateDatabase(url);
    const small = importBenchDocument(rowRecords);
    log(`import: ${countRecords(small).toLocaleString("en-US")} records one statement each`);
    const rowByRow = await timedImport(url, small, false);
    return { bulk, reimport, rowByRow, sections, rowCostUs };
  } finally {
    await dropDatabase(adminUrl, name);
  }
}

const int = (n: number): string => Math.round(n).toLocaleString("en-US");

export function formatImportBench(r: ImportBenchResult): string {
  const cpu = (x: ImportRun) => {
    const c = x.cpuMs;
    if (!c || c.postgres === undefined) return "n/a | n/a";
    return `${(c.node / 1000).toFixed(2)} s + ${(c.postgres / 1000).toFixed(2)} s | ${int(x.records / ((c.node + c.postgres) / 1000))}`;
  };
  const row = (what: string, x: ImportRun) =>
    `| ${what} | ${int(x.records)} | ${(x.ms / 1000).toFixed(2)} s | ${int(x.recordsPerSec)} | ${cpu(x)} | ${x.changeLog === "reload" ? "one RELOAD row" : "one row per changed row"} |`;
  return [
    "| import | records | time | records/s | CPU: authz + its PostgreSQL backend | records per CPU-second | change log |",
    "|---|---:|---:|---:|---:|---:|---|",
    row("bulk (authz import), into an empty database", r.bulk),
    row("the same file again (nothing changes)", r.reimport),
    row("one statement per record (before bulk)", r.rowByRow),
    "",
    `Bulk ÷ one statement per record: ${(r.bulk.recordsPerSec / r.rowByRow.recordsPerSec).toFixed(1)}x. Records per section: ${Object.entries(r.sections)
      .map(([k, v]) => `${k} ${int(v)}`)
      .join(", ")}.`,
    ...(r.curve?.length
      ? [
          "",
          "Scale curve: the same generator at each size, in bulk, each into a freshly migrated database:",
          "",
          "| records | time | records/s | CPU: authz + its PostgreSQL backend | records per CPU-second |",
          "|---:|---:|---:|---:|---:|",
          ...r.curve.map((x) => `| ${int(x.records)} | ${(x.ms / 1000).toFixed(2)} s | ${int(x.recordsPerSec)} | ${cpu(x)} |`),
        ]
      : []),
    ...(r.rowCostUs?.length
      ? [
          "",
          "PostgreSQL backend CPU per new role assignment, the importer's statement, 5,000 rows per statement (rolled back after each):",
          "",
          "| into | rows | CPU per row |",
          "|---|---:|---:|",
          ...r.rowCostUs.map((x) => `| ${x.table} | ${int(x.rows)} | ${x.cpuUsPerRow.toFixed(1)} µs |`),
        ]
      : []),
  ].join("\n");
}
