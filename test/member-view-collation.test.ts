// The view user_organization_info (ListOrganizationMembers, the export) sorts
// its key arrays as the engine does, byte-wise, also on a database whose
// default collation is a language's (docs/data-model.md, UserOrganizationInfo:
// "in key order"). Real Postgres, a database created with an ICU collation.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../src/store/migrate.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

let t: TestDatabase;
beforeAll(async () => {
  t = await freshDatabase({ icuLocale: "en" });
  await migrate(t.client);
});
afterAll(async () => {
  await t?.drop();
});

describe("user_organization_info on a database with a language's collation", () => {
  it("lists role and permission keys in byte order, as the engine sorts them", async () => {
    const [tenant, org, user] = [randomUUID(), randomUUID(), randomUUID()];
    const keys = ["b.x", "B.y", "a-z", "A_z"];
    await t.raw.begin(async (sql) => {
      await sql`insert into tenants (id, name, slug) values (${tenant}, 't', 't')`;
      await sql`insert into organizations (id, tenant_id, name, slug, role_structure) values (${org}, ${tenant}, 'o', 'o', 'multi_role')`;
      await sql`insert into users (id, logical_key) values (${user}, ${`user:${user}`})`;
      await sql`insert into user_organizations (user_id, organization_id) values (${user}, ${org})`;
      for (const key of keys) {
        const [role] = await sql<{ id: string }[]>`insert into roles (organization_id, key, name) values (${org}, ${key}, ${key}) returning id::text`;
        const [perm] = await sql<{ id: string }[]>`insert into permissions (organization_id, key) values (${org}, ${key}) returning id::text`;
        await sql`insert into role_permissions (role_id, permission_id) values (${role?.id as string}, ${perm?.id as string})`;
        await sql`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id) values ('user', ${user}, ${role?.id as string}, 'organization', ${org})`;
      }
    });
    const [row] = await t.raw<{ additional_roles: string[]; user_permissions: string[] }[]>`
      select additional_roles, user_permissions from user_organization_info where user_id = ${user}`;
    const bytewise = [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(bytewise).toEqual(["A_z", "B.y", "a-z", "b.x"]);
    expect(row?.additional_roles).toEqual(bytewise);
    expect(row?.user_permissions).toEqual(bytewise);
    // The database's own order is not byte order (else this test would prove nothing).
    const own = await t.raw<{ k: string }[]>`select k from unnest(${keys}::text[]) k order by k`;
    expect(own.map((r) => r.k)).not.toEqual(bytewise);
  });
});
