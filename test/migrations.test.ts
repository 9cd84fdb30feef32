import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { createApp } from "../src/main.js";
import { loadMigrations, migrate } from "../src/store/migrate.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

let t: TestDatabase;
beforeAll(async () => {
  t = await freshDatabase({ empty: true });
});
afterAll(async () => {
  await t?.drop();
});

describe("migrations", () => {
  it("apply to an empty database, then are a no-op when re-run", async () => {
    const all = (await loadMigrations()).map((m) => m.name);
    expect(all.slice(0, 2)).toEqual(["0001_unified_model", "0002_builtin_roles_idempotency"]);
    const first = await migrate(t.client);
    expect(first.applied).toEqual(all);
    const tables = await t.raw<{ n: number }[]>`
      select count(*)::int as n from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`;
    expect(tables[0]?.n).toBeGreaterThanOrEqual(20);
    const second = await migrate(t.client);
    expect(second.applied).toEqual([]);
    expect(second.current).toBe(first.current);
  });

  it("a server without AUTHZ_MIGRATE refuses a schema older than its build, naming what is missing", async () => {
    const start = async (url: string) => {
      const app = createApp(
        loadConfig({ DATABASE_URL: url, AUTHZ_MIGRATE: "false", AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
        createLogger("silent"),
      );
      await app.listen();
      const failed = await app.ready.then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      await app.stop();
      return failed;
    };
    const all = (await loadMigrations()).map((m) => m.name);
    const never = await freshDatabase({ empty: true });
    const behind = await freshDatabase();
    try {
      expect((await start(never.url))?.message).toMatch(new RegExp(`${all.length} migration\\(s\\) not applied .*run \`authz migrate\``));
      const last = all[all.length - 1] as string;
      const [row] = await behind.raw<{ version: number; checksum: string }[]>`delete from authz_migrations where name = ${last} returning version, checksum`;
      expect((await start(behind.url))?.message).toContain(`1 migration(s) not applied (${last})`);
      await behind.raw`insert into authz_migrations (version, name, checksum) values (${row?.version ?? 0}, ${last}, ${row?.checksum ?? ""})`;
      expect(await start(behind.url)).toBeUndefined();
    } finally {
      await never.drop();
      await behind.drop();
    }
  }, 60_000);

  it("apply exactly once when several replicas start at the same moment", async () => {
    const other = await freshDatabase({ empty: true });
    const clients = Array.from({ length: 4 }, () => createPostgresClient({ url: other.url, poolMax: 1, logger: createLogger("silent") }));
    try {
      const results = await Promise.all(clients.map((c) => migrate(c)));
      const all = (await loadMigrations()).map((m) => m.name);
      const applied = results.flatMap((r) => r.applied);
      expect(applied).toEqual(all);
      const rows = await other.raw`select version from authz_migrations`;
      expect(rows).toHaveLength(all.length);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await other.drop();
    }
  });

  it("refuse to run when an applied migration's file was edited", async () => {
    const [m] = await loadMigrations();
    if (!m) throw new Error("no migrations found");
    await expect(migrate(t.client, [{ ...m, checksum: "0".repeat(64) }])).rejects.toThrow(/changed after it was applied/);
  });
});

describe("schema invariants", () => {
  const org1 = "a0000000-0000-4000-8000-000000000001";
  const org2 = "a0000000-0000-4000-8000-000000000002";
  beforeAll(async () => {
    await t.raw`insert into organizations (id, name, slug) values (${org1}, 'One', 'one'), (${org2}, 'Two', 'two')`;
    await t.raw`insert into roles (id, organization_id, key, name) values
      ('b0000000-0000-4000-8000-000000000001', ${org1}, 'owner', 'Owner'),
      ('b0000000-0000-4000-8000-000000000002', ${org1}, 'admin', 'Admin'),
      ('b0000000-0000-4000-8000-000000000003', ${org2}, 'admin', 'Admin'),
      ('b0000000-0000-4000-8000-000000000004', null, 'global', 'Global')`;
  });

  it("a role key is unique within its organization but not across organizations", async () => {
    await expect(t.raw`insert into roles (organization_id, key, name) values (${org1}, 'admin', 'Again')`).rejects.toThrow(/roles_organization_key/);
    await expect(t.raw`insert into roles (organization_id, key, name) values (null, 'global', 'Again')`).rejects.toThrow(/roles_organization_key/);
  });

  it("no role inherits itself, directly or through a cycle", async () => {
    await expect(t.raw`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000001')`).rejects.toThrow(
      /role_inheritance_not_self/,
    );
    await t.raw`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002')`;
    await expect(t.raw`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000002', 'b0000000-0000-4000-8000-000000000001')`).rejects.toThrow(
      /would form a cycle/,
    );
  });

  it("two concurrent transactions cannot each add half of a cycle", async () => {
    await t.raw`insert into roles (id, organization_id, key, name) values
      ('b0000000-0000-4000-8000-000000000011', ${org1}, 'x', 'X'), ('b0000000-0000-4000-8000-000000000012', ${org1}, 'y', 'Y')`;
    const a = t.raw.begin(async (tx) => {
      await tx`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000011', 'b0000000-0000-4000-8000-000000000012')`;
      await new Promise((r) => setTimeout(r, 200));
    });
    await new Promise((r) => setTimeout(r, 50));
    const b = t.raw.begin(async (tx) => {
      await tx`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000012', 'b0000000-0000-4000-8000-000000000011')`;
    });
    const results = await Promise.allSettled([a, b]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const edges = await t.raw`select 1 from role_inheritance where role_id in ('b0000000-0000-4000-8000-000000000011', 'b0000000-0000-4000-8000-000000000012')`;
    expect(edges).toHaveLength(1);
  });

  it("inheritance stays inside one organization or reaches global roles", async () => {
    await expect(t.raw`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000002', 'b0000000-0000-4000-8000-000000000003')`).rejects.toThrow(
      /another organization/,
    );
    await t.raw`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000002', 'b0000000-0000-4000-8000-000000000004')`;
    await expect(t.raw`insert into role_inheritance values ('b0000000-0000-4000-8000-000000000004', 'b0000000-0000-4000-8000-000000000003')`).rejects.toThrow(
      /another organization/,
    );
  });

  it("an organization's role is assigned only inside that organization", async () => {
    await t.raw`insert into users (id) values ('c0000000-0000-4000-8000-000000000001')`;
    await expect(t.raw`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
      values ('user', 'c0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002', 'organization', ${org2})`).rejects.toThrow(
      /cannot be assigned/,
    );
    await t.raw`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
      values ('user', 'c0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002', 'organization', ${org1})`;
  });

  it("polymorphic subjects and scopes have real foreign keys", async () => {
    await expect(t.raw`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
      values ('account', 'c0000000-0000-4000-8000-00000000dead', 'b0000000-0000-4000-8000-000000000004', 'global', null)`).rejects.toThrow(
      /role_assignments_account_id_fkey/,
    );
    await expect(t.raw`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
      values ('user', 'c0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000004', 'avatar', 'c0000000-0000-4000-8000-00000000dead')`).rejects.toThrow(
      /role_assignments_avatar_scope_id_fkey/,
    );
  });

  it("an avatar has at most one active owner membership", async () => {
    await t.raw`insert into accounts (id, organization_id) values ('d0000000-0000-4000-8000-000000000001', ${org1})`;
    await t.raw`insert into principals (id, account_id, subject_type, subject_id) values
      ('d1000000-0000-4000-8000-000000000001', 'd0000000-0000-4000-8000-000000000001', 'user', 'c0000000-0000-4000-8000-000000000001')`;
    await t.raw`insert into users (id) values ('c0000000-0000-4000-8000-000000000002')`;
    await t.raw`insert into principals (id, account_id, subject_type, subject_id) values
      ('d1000000-0000-4000-8000-000000000002', 'd0000000-0000-4000-8000-000000000001', 'user', 'c0000000-0000-4000-8000-000000000002')`;
    // An active avatar needs its owner from the first committed instant (migration 0003).
    await t.raw.begin(async (sql) => {
      await sql`insert into avatars (id, organization_id, handle) values ('e0000000-0000-4000-8000-000000000001', ${org1}, 'bot')`;
      await sql`insert into memberships (principal_id, avatar_id, owner) values
        ('d1000000-0000-4000-8000-000000000001', 'e0000000-0000-4000-8000-000000000001', true)`;
    });
    await expect(t.raw`insert into memberships (principal_id, avatar_id, owner) values
      ('d1000000-0000-4000-8000-000000000002', 'e0000000-0000-4000-8000-000000000001', true)`).rejects.toThrow(/memberships_one_active_owner/);
    // An inactive former owner does not count.
    await t.raw`insert into memberships (principal_id, avatar_id, owner, active) values
      ('d1000000-0000-4000-8000-000000000002', 'e0000000-0000-4000-8000-000000000001', true, false)`;
  });
});
