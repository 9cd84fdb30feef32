// The import benchmark: a generated seed-shaped document of N records (every
// kind of record a real directory has, most of them role assignments) imported
// into a fresh database through importDocument, the code `authz import` runs:
// in bulk, then the same file again (nothing changes), then a smaller file of
// the same shape one statement per record (the pre-bulk path) in the same run.
// Run alone: BENCH_ONLY=import npm run bench (BENCH_IMPORT_RECORDS, BENCH_IMPORT_ROW_RECORDS).

import { createLogger } from "../src/logger.js";
import { importDocument, type ImportSummary } from "../src/store/import.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { createDatabase, dropDatabase, migrateDatabase } from "./engine.js";

export interface ImportRun {
  records: number;
  ms: number;
  recordsPerSec: number;
  changeLog: ImportSummary["changeLog"];
}

export interface ImportBenchResult {
  bulk: ImportRun;
  /** The same file again: every record unchanged, no revision. */
  reimport: ImportRun;
  /** One statement per record (the path before bulk writing), on a smaller file of the same shape. */
  rowByRow: ImportRun;
  /** Records per section of the bulk file. */
  sections: Record<string, number>;
}

const id = (kind: number, i: number): string => `${kind.toString(16).padStart(8, "0")}-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;

/**
 * A directory of about `records` records: per organization 5 roles, 8
 * permissions, their grants, 2 accounts, 4 principals, 4 avatars with
 * memberships; users with a place in an organization; the rest are role
 * assignments (UserRole).
 */
export function importBenchDocument(records: number): Record<string, unknown[]> {
  const orgs = Math.max(1, Math.floor(records / 200));
  const users = Math.max(1, Math.floor(records / 10));
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
    push("ORGANIZATION", { id: id(2, o), tenant_id: id(1, o % tenants), name: `Org ${o}`, slug: `org-${o}` });
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

async function timedImport(url: string, doc: Record<string, unknown[]>, bulk: boolean): Promise<ImportRun> {
  const db = createPostgresClient({ url, poolMax: 2, logger: createLogger("silent"), applicationName: "authz-bench-import" });
  try {
    const t0 = performance.now();
    const s = await importDocument(db, doc, { bulk, changeLog: bulk ? "auto" : "rows" });
    const ms = performance.now() - t0;
    const records = countRecords(doc);
    return { records, ms, recordsPerSec: (records / ms) * 1000, changeLog: s.changeLog };
  } finally {
    await db.close();
  }
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
    await dropDatabase(adminUrl, name);
    await createDatabase(adminUrl, name);
    await migrateDatabase(url);
    const small = importBenchDocument(rowRecords);
    log(`import: ${countRecords(small).toLocaleString("en-US")} records one statement each`);
    const rowByRow = await timedImport(url, small, false);
    return { bulk, reimport, rowByRow, sections };
  } finally {
    await dropDatabase(adminUrl, name);
  }
}

const int = (n: number): string => Math.round(n).toLocaleString("en-US");

export function formatImportBench(r: ImportBenchResult): string {
  const row = (what: string, x: ImportRun) =>
    `| ${what} | ${int(x.records)} | ${(x.ms / 1000).toFixed(2)} s | ${int(x.recordsPerSec)} | ${x.changeLog === "reload" ? "one RELOAD row" : "one row per changed row"} |`;
  return [
    "| import | records | time | records/s | change log |",
    "|---|---:|---:|---:|---|",
    row("bulk (authz import), into an empty database", r.bulk),
    row("the same file again (nothing changes)", r.reimport),
    row("one statement per record (before bulk)", r.rowByRow),
    "",
    `Bulk ÷ one statement per record: ${(r.bulk.recordsPerSec / r.rowByRow.recordsPerSec).toFixed(1)}x. Records per section: ${Object.entries(r.sections)
      .map(([k, v]) => `${k} ${int(v)}`)
      .join(", ")}.`,
  ].join("\n");
}
