// One conformance suite for the store's roles, run against real Postgres and
// against the embedded PGlite: the migrations, the write pipeline (writes,
// idempotency, expected_revision, confinement), revision numbering and the
// change log a replica replays, the snapshot reader, ownership, rate-limit
// writes, tenant lookups, API keys and retention behave the same on both.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthzError } from "../src/errors.js";
import { createLogger } from "../src/logger.js";
import { projectPath } from "../src/paths.js";
import { insertApiKey, listApiKeys, readActiveApiKeys, revokeApiKey } from "../src/store/api-key-store.js";
import { readLatestRevision, startChangeFeed } from "../src/store/change-feed.js";
import { importDocument } from "../src/store/import.js";
import { loadSnapshot, startLiveEngine } from "../src/store/live-engine.js";
import { manageRateLimits } from "../src/store/manage-rate-limits.js";
import { manageRoles } from "../src/store/manage-roles.js";
import { migrate } from "../src/store/migrate.js";
import { transferOwnership } from "../src/store/ownership.js";
import { type Filters, listPage, readAt } from "../src/store/directory-reads.js";
import { createPgliteClient } from "../src/store/pglite-client.js";
import { pruneHistory } from "../src/store/retention.js";
import { type SqlClient, SqlError } from "../src/store/sql.js";
import { fromSqlError } from "../src/store/write-errors.js";
import { rowTenant } from "../src/store/tenant-lookup.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";

const ENG = DEMO.org.eng;
const ACME = DEMO.tenant.acme;
const BOT = DEMO.avatar.acmeBot;
const ALICE = DEMO.user.alice;
const CAROL = DEMO.user.carol;
const demo = () => JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as unknown;
const silent = createLogger("silent");

interface Backend {
  name: string;
  open(): Promise<{ db: SqlClient; close(): Promise<void> }>;
}

let pg: TestDatabase | undefined;
const BACKENDS: Backend[] = [
  {
    name: "postgres",
    async open() {
      pg = await freshDatabase({ empty: true });
      return { db: pg.client, close: () => (pg as TestDatabase).drop() };
    },
  },
  {
    name: "pglite",
    async open() {
      const db = await createPgliteClient();
      return { db, close: () => db.close() };
    },
  },
];

describe.each(BACKENDS)("the store on $name", (backend) => {
  let db: SqlClient;
  let close: () => Promise<void> = async () => {};
  beforeAll(async () => {
    ({ db, close } = await backend.open());
    await migrate(db);
    await importDocument(db, demo());
  }, 60_000);
  afterAll(async () => {
    await close();
  });

  it("numbers a write after commit, and replays it from the change log", async () => {
    const before = await readLatestRevision(db);
    const r = await manageRoles(db, { mutations: [{ kind: "upsertPermission", organizationId: ENG, key: "conformance.read" }] });
    expect(BigInt(r.revision)).toBe(before + 1n);
    expect(await readLatestRevision(db)).toBe(before + 1n);
    const rows = await db.query<{ table_name: string; op: string }>("select table_name, op from authz_changes where revision = $1::text::bigint order by id", [
      r.revision,
    ]);
    expect(rows).toEqual([{ table_name: "permissions", op: "INSERT" }]);
  });

  it("a snapshot decides as the demo's hand-checked rows say, and a live engine follows a later write", async () => {
    const snap = await loadSnapshot(db);
    expect(snap.check({ type: "user", id: ALICE }, "billing.manage", { type: "organization", id: ENG }, Date.now()).allowed).toBe(true);
    const feed = await startChangeFeed(db, silent, 60_000);
    const live = await startLiveEngine(db, feed, silent);
    try {
      const w = await manageRoles(db, {
        mutations: [
          { kind: "upsertPermission", organizationId: ENG, key: "conformance.write" },
          { kind: "upsertRole", organizationId: ENG, key: "conformance-role" },
          { kind: "grantPermission", role: { organizationId: ENG, key: "conformance-role" }, permission: { organizationId: ENG, key: "conformance.write" } },
          {
            kind: "assignRole",
            subject: { type: "user", id: CAROL },
            role: { organizationId: ENG, key: "conformance-role" },
            scope: { type: "organization", id: ENG },
            validUntil: null,
            // Engineering is single_role_in_hierarchy and Carol is a member there: the new role replaces that one.
            replace: true,
          },
        ],
      });
      const fresh = await live.atLeast(BigInt(w.revision), 5000);
      expect(fresh.check({ type: "user", id: CAROL }, "conformance.write", { type: "organization", id: ENG }, Date.now()).allowed).toBe(true);
    } finally {
      await live.stop();
      await feed.stop();
    }
  });

  it("replays an idempotent write, refuses a reused key and a moved expected_revision", async () => {
    const m = [{ kind: "upsertPermission" as const, organizationId: ENG, key: "conformance.idem" }];
    const first = await manageRoles(db, { mutations: m, idempotencyKey: "conformance-1" });
    expect(await manageRoles(db, { mutations: m, idempotencyKey: "conformance-1" })).toEqual(first);
    await expect(
      manageRoles(db, { mutations: [{ kind: "upsertPermission", organizationId: ENG, key: "other" }], idempotencyKey: "conformance-1" }),
    ).rejects.toMatchObject({ code: "ALREADY_EXISTS", reason: "IDEMPOTENCY_KEY_REUSED" });
    const head = await readLatestRevision(db);
    const ok = await manageRoles(db, {
      mutations: [{ kind: "upsertPermission", organizationId: ENG, key: "conformance.pre" }],
      expectedRevision: head.toString(),
    });
    expect(BigInt(ok.revision)).toBe(head + 1n);
    await expect(
      manageRoles(db, { mutations: [{ kind: "upsertPermission", organizationId: ENG, key: "conformance.late" }], expectedRevision: head.toString() }),
    ).rejects.toMatchObject({ code: "FAILED_PRECONDITION", reason: "REVISION_MOVED" });
  });

  it("a taken id is ALREADY_EXISTS saying so, without the constraint's name", async () => {
    const id = "0000c0f1-0000-4000-8000-000000000001";
    const insert = (slug: string) => db.query("insert into tenants (id, name, slug) values ($1::text::uuid, 'Taken', $2::text)", [id, slug]);
    await insert("conformance-taken-1");
    const err = await insert("conformance-taken-2").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SqlError);
    const mapped = fromSqlError(err as SqlError, "mutations[0].upsert_tenant");
    expect(mapped).toMatchObject({ code: "ALREADY_EXISTS", message: "mutations[0].upsert_tenant: its id is already taken by another record" });
  });

  it("confines a tenant-bound writer before it writes", async () => {
    const other = "0000c0f0-0000-4000-8000-000000000001";
    await db.query("insert into tenants (id, name, slug) values ($1::text::uuid, 'Other', 'conformance-other')", [other]);
    const err = await manageRoles(
      db,
      { mutations: [{ kind: "upsertPermission", organizationId: ENG, key: "conformance.bound" }] },
      { id: "key:conformance", tenantId: other },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthzError);
    expect(err).toMatchObject({ code: "PERMISSION_DENIED", reason: "OTHER_TENANT" });
    expect(await rowTenant(db, "organizations", ENG)).toBe(ACME);
    expect(await rowTenant(db, "avatars", BOT)).toBe(ACME);
    expect(await rowTenant(db, "organizations", "0000c0f0-0000-4000-8000-0000000000ff")).toBeUndefined();
  });

  it("transfers an avatar's ownership and writes rate-limit policies through the same pipeline", async () => {
    const owner = await db.query<{ id: string }>("select id::text as id from memberships where avatar_id = $1::text::uuid and owner and active", [BOT]);
    const target = await db.query<{ id: string }>(
      `select m.id::text as id from memberships m join principals p on p.id = m.principal_id
        where m.avatar_id = $1::text::uuid and not m.owner and m.active and m.accepted_at is not null and p.active and p.accepted_at is not null limit 1`,
      [BOT],
    );
    const t = await transferOwnership(
      db,
      { avatarId: BOT, fromMembershipId: owner[0]?.id ?? "", toMembershipId: target[0]?.id ?? "" },
      { defaultRequestTtlMs: 60_000 },
    );
    expect(t.transfer.status).toBe("completed");
    const rl = await manageRateLimits(db, { mutations: [{ kind: "upsertPolicy", name: "conformance", scope: "user", limitCount: 5, windowSec: 1 }] });
    expect(rl.results[0]?.changed).toBe(true);
  });

  it("reads rate-limit assignments back (DirectoryService): paged by their bigint id, confined to a tenant", async () => {
    const page = (filters: Filters<"rateLimitAssignments">, pageToken: string, tenantId: string | null) =>
      readAt(db, { tenantId }, (tx) => listPage(tx, "rateLimitAssignments", filters, { pageSize: 3, pageToken }, tenantId));
    const first = await page({}, "", ACME);
    expect(first.value.rows).toHaveLength(3);
    const rest = await page({}, first.value.nextPageToken, ACME);
    const all = [...first.value.rows, ...rest.value.rows];
    expect(rest.value.nextPageToken).toBe("");
    // The demo's four: two users with a place in Acme, Acme's two organizations.
    expect(all.map((r) => `${r.policy}→${r.userId ?? r.organizationId}`).sort()).toEqual([
      `api-per-org→${DEMO.org.eng}`,
      `api-per-org→${DEMO.org.sales}`,
      `api-per-user→${DEMO.user.bob}`,
      `export-per-user→${CAROL}`,
    ]);
    expect((await page({ policy: "api-per-org" }, "", null)).value.rows.map((r) => r.organizationId)).toEqual([ENG, DEMO.org.sales]);
    expect((await page({}, "", "0000c0f0-0000-4000-8000-0000000000ff")).value.rows).toEqual([]);
  });

  it("stores, reads and revokes API keys", async () => {
    await insertApiKey(db, { id: "00c0f0c0f0c0f0c0", name: "conformance", secretSha256: "a".repeat(64), scopes: ["check"], tenantId: null });
    expect((await readActiveApiKeys(db)).map((k) => k.id)).toContain("00c0f0c0f0c0f0c0");
    expect(await revokeApiKey(db, "00c0f0c0f0c0f0c0")).toBe(true);
    expect(await revokeApiKey(db, "00c0f0c0f0c0f0c0")).toBe(false);
    expect((await readActiveApiKeys(db)).map((k) => k.id)).not.toContain("00c0f0c0f0c0f0c0");
    expect((await listApiKeys(db)).find((k) => k.id === "00c0f0c0f0c0f0c0")?.revoked_at).toBeTruthy();
  });

  it("retention drops numbered history only", async () => {
    await db.query("insert into staff (logical_key) values ('staff:conformance')");
    const pruned = await pruneHistory(db, { changeLogHours: 0, idempotencyHours: 0 });
    expect(pruned.changes).toBeGreaterThan(0);
    const pending = await db.query<{ n: number }>("select count(*)::int as n from authz_changes where revision is null");
    expect(Number(pending[0]?.n)).toBe(1);
    expect(await readLatestRevision(db)).toBeGreaterThan(0n);
  });

  // Migration 0012: the organization rules run once per statement over its new rows.
  it("refuses a statement whose rows break an organization rule, naming the first such row, and writes none of them", async () => {
    const SALES = DEMO.org.sales;
    const [mine, theirs, perm, user] = [
      "0000c0f1-0000-4000-8000-000000000001",
      "0000c0f1-0000-4000-8000-000000000002",
      "0000c0f1-0000-4000-8000-000000000003",
      "0000c0f1-0000-4000-8000-000000000004",
    ];
    await db.query(
      "insert into roles (id, organization_id, key, name) values ($1::text::uuid, $3::text::uuid, 'conf-mine', 'M'), ($2::text::uuid, $4::text::uuid, 'conf-theirs', 'T')",
      [mine, theirs, ENG, SALES],
    );
    await db.query("insert into permissions (id, organization_id, key) values ($1::text::uuid, $2::text::uuid, 'conf.theirs')", [perm, SALES]);
    await db.query("insert into users (id) values ($1::text::uuid)", [user]);
    const refusal = async (text: string, params: unknown[]) => {
      const err = await db.query(text, params).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SqlError);
      return err as SqlError;
    };
    const assign = `insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
      select 'user', $1::text::uuid, (e->>0)::uuid, e->>1, (e->>2)::uuid from jsonb_array_elements($2::text::jsonb) e`;
    // Row 0 is fine, rows 1 (their role on ENG) and 2 (my role on SALES's avatar) are not: row 1 is named.
    const rows = [
      [mine, "organization", ENG],
      [theirs, "organization", ENG],
      [mine, "avatar", DEMO.avatar.salesDesk],
    ];
    const err = await refusal(assign, [user, JSON.stringify(rows)]);
    expect(err).toMatchObject({ code: "23514", constraint: "role_assignments_scope_in_role_organization" });
    expect(err.message).toBe(`role ${theirs} of organization ${SALES} cannot be assigned on organization ${ENG}`);
    expect(await refusal(assign, [user, JSON.stringify([rows[0], rows[2]])])).toMatchObject({
      message: `role ${mine} of organization ${ENG} cannot be assigned on avatar ${DEMO.avatar.salesDesk}`,
    });
    expect(await db.query("select 1 from role_assignments where subject_id = $1::text::uuid", [user])).toHaveLength(0);
    // An update is checked too.
    await db.query(assign, [user, JSON.stringify([rows[0], [mine, "avatar", DEMO.avatar.engNews]])]);
    expect(
      await refusal("update role_assignments set scope_id = $2::text::uuid where subject_id = $1::text::uuid and scope_type = 'organization'", [user, SALES]),
    ).toMatchObject({
      code: "23514",
      message: `role ${mine} of organization ${ENG} cannot be assigned on organization ${SALES}`,
    });
    expect(await refusal("insert into role_permissions (role_id, permission_id) values ($1::text::uuid, $2::text::uuid)", [mine, perm])).toMatchObject({
      code: "23514",
      constraint: "role_permissions_same_organization",
      message: `role ${mine} cannot hold permission ${perm} of another organization`,
    });
    expect(
      await refusal(
        "insert into user_organizations (user_id, organization_id, primary_role_id) values ($1::text::uuid, $2::text::uuid, $3::text::uuid), ($1::text::uuid, $4::text::uuid, $3::text::uuid)",
        [user, SALES, theirs, ENG],
      ),
    ).toMatchObject({
      code: "23514",
      constraint: "user_organizations_primary_role_organization",
      message: `role ${theirs} is not a role of organization ${ENG}`,
    });
    expect(await db.query("select 1 from user_organizations where user_id = $1::text::uuid", [user])).toHaveLength(0);
  });
});
