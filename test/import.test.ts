import { execFile } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectPath } from "../src/paths.js";
import { ImportError, importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

const run = promisify(execFile);
const demo = () => JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")) as Record<string, unknown[]>;

let t: TestDatabase;
beforeAll(async () => {
  t = await freshDatabase();
});
afterAll(async () => {
  await t?.drop();
});

const counts = async () =>
  (
    await t.raw<{ n: string }[]>`
      select (select count(*) from users) || '/' || (select count(*) from role_assignments) || '/' ||
             (select count(*) from memberships) || '/' || (select revision from authz_revision) as n`
  )[0]?.n;

describe("directory import", () => {
  it("a broken file writes nothing and names the offending record", async () => {
    const doc = demo();
    // A role assignment pointing at a role that does not exist, after many valid records.
    doc.ROLE_ASSIGNMENT = [
      ...(doc.ROLE_ASSIGNMENT ?? []),
      {
        id: "0000ffff-0000-4000-8000-000000000001",
        account_id: (doc.ACCOUNT?.[0] as { id: string } | undefined)?.id,
        role_id: "0000ffff-0000-4000-8000-00000000dead",
        scope_type: "global",
        scope_id: null,
      },
    ];
    const before = await counts();
    const err = await importDocument(t.client, doc).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportError);
    const message = (err as ImportError).message;
    expect(message).toContain(`ROLE_ASSIGNMENT[${(doc.ROLE_ASSIGNMENT.length - 1).toString()}] (id=0000ffff-0000-4000-8000-000000000001)`);
    expect(message).toMatch(/refers to a record that does not exist: \(role_id\)=\(0000ffff-0000-4000-8000-00000000dead\)/);
    expect(message).not.toMatch(/insert into|select /i);
    expect(await counts()).toBe(before);
  });

  it("keeps a timestamp's microseconds, so that re-importing the same records changes nothing", async () => {
    const doc = { Permission: [{ permission_id: "0000ab01-0000-4000-8000-000000000001", name: "micro.read", created_at: "2026-11-30T10:01:31.089855+00:00" }] };
    expect((await importDocument(t.client, doc)).sections.Permission?.inserted).toBe(1);
    const [row] = await t.raw<{ at: string }[]>`
      select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as at from permissions where id = '0000ab01-0000-4000-8000-000000000001'`;
    expect(row?.at).toBe("2026-11-30T10:01:31.089855");
    const again = await importDocument(t.client, doc);
    expect(again.sections.Permission).toMatchObject({ inserted: 0, updated: 0 });
    expect(again.revisionAfter).toBe(again.revisionBefore);
  });

  it("refuses a timestamp whose instant is outside 0001-9999 UTC (an offset can carry it there), and cuts past microseconds", async () => {
    const perm = (id: string, created_at: string) => ({ Permission: [{ permission_id: id, name: `edge.${id.slice(-2)}`, created_at }] });
    const before = await counts();
    for (const at of ["9999-12-31T23:59:59.999999-01:00", "0001-01-01T00:00:00+01:00"]) {
      const err = await importDocument(t.client, perm("0000ab02-0000-4000-8000-000000000001", at)).catch((e: unknown) => e);
      expect(err, at).toBeInstanceOf(ImportError);
      expect((err as ImportError).message).toMatch(/created_at.*between 0001-01-01 and 9999-12-31 UTC/);
    }
    expect(await counts()).toBe(before);
    await importDocument(t.client, {
      Permission: [
        { permission_id: "0000ab02-0000-4000-8000-000000000002", name: "edge.last", created_at: "9999-12-31T23:59:59.9999999Z" },
        { permission_id: "0000ab02-0000-4000-8000-000000000003", name: "edge.lower", created_at: "2024-01-01t00:00:00.123456z" },
      ],
    });
    const rows = await t.raw<{ key: string; at: string }[]>`
      select key, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as at from permissions where key in ('edge.last', 'edge.lower') order by key`;
    expect(rows).toEqual([
      { key: "edge.last", at: "9999-12-31T23:59:59.999999" },
      { key: "edge.lower", at: "2024-01-01T00:00:00.123456" },
    ]);
  });

  it("a rate-limit policy name the API could not call it by is refused, naming the record", async () => {
    const doc = { RateLimitPolicy: [{ name: "Imported Policy ü", scope: "user", limit_count: 5, window_sec: 60 }] };
    const before = await counts();
    const err = await importDocument(t.client, doc).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportError);
    expect((err as ImportError).message).toMatch(/RateLimitPolicy\[0\].*name must be 1 to 128 characters of letters, digits and "\._:-"/);
    expect(await counts()).toBe(before);
    const ok = await importDocument(t.client, { RateLimitPolicy: [{ name: "imported.policy", scope: "user", limit_count: 5, window_sec: 60 }] });
    expect(ok.sections.RateLimitPolicy?.inserted).toBe(1);
  });

  it("a constraint refusal names the record (a second active owner of an avatar)", async () => {
    const doc = demo();
    const members = doc.MEMBERSHIP as Array<{ owner?: boolean; avatar_id: string; active?: boolean }>;
    const owner = members.find((m) => m.owner && m.active !== false) as { avatar_id: string };
    const second = members.findIndex((m) => !m.owner && m.avatar_id === owner.avatar_id);
    (members[second] as { owner: boolean }).owner = true;
    const before = await counts();
    await expect(importDocument(t.client, doc)).rejects.toThrow(/MEMBERSHIP\[\d+\] \(id=[0-9a-f-]+\): conflicts with an existing record/);
    expect(await counts()).toBe(before);
  });

  it("imports the demo dataset, and a re-import changes nothing (no new revision)", async () => {
    const first = await importDocument(t.client, demo());
    expect(BigInt(first.revisionAfter)).toBe(BigInt(first.revisionBefore) + 1n);
    expect(first.sections.User?.inserted).toBeGreaterThanOrEqual(5);
    const view = await t.raw<{ user_role: string; inherited: string[]; perms: string[] }[]>`
      select user_role, inherited_user_roles_plus_current_role as inherited, user_permissions as perms
        from user_organization_info where user_role = 'owner' limit 1`;
    expect(view[0]?.inherited).toEqual(["admin", "member", "owner"]);
    expect(view[0]?.perms.length).toBeGreaterThan(5);

    const again = await importDocument(t.client, demo());
    expect(again.revisionAfter).toBe(first.revisionAfter);
    for (const [section, c] of Object.entries(again.sections)) {
      expect({ section, inserted: c.inserted, updated: c.updated }).toEqual({ section, inserted: 0, updated: 0 });
    }
  });

  it("an edit in a re-import updates only that record", async () => {
    const doc = demo();
    const user = (doc.User as Array<{ locked?: boolean; user_id: string }>).find((u) => !u.locked) as { locked?: boolean; user_id: string };
    user.locked = true;
    const r = await importDocument(t.client, doc);
    expect(r.sections.User).toMatchObject({ inserted: 0, updated: 1 });
    expect(BigInt(r.revisionAfter)).toBe(BigInt(r.revisionBefore) + 1n);
    const [row] = await t.raw<{ locked: boolean }[]>`select locked from users where id = ${user.user_id}`;
    expect(row?.locked).toBe(true);
  });

  it("refuses a file that gives a user a second role in a single_role_in_hierarchy organization, naming both", async () => {
    const doc = demo();
    const info = (doc.UserOrganizationInfo as Array<{ user_id: string; org_id: string; org_role_structure: string; additional_roles?: string[] }>).find(
      (u) => u.org_role_structure === "single_role_in_hierarchy" && u.user_id.endsWith("3"),
    ) as { user_id: string; org_id: string; additional_roles?: string[] };
    info.additional_roles = ["admin"];
    const before = await counts();
    await expect(importDocument(t.client, doc)).rejects.toThrow(
      new RegExp(`role structure rule: user ${info.user_id} holds 2 roles \\("admin", "member"\\) in single_role_in_hierarchy organization ${info.org_id}`),
    );
    expect(await counts()).toBe(before);
  });

  it("--dry-run through the CLI reports changes and writes nothing; bad JSON is a clear error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "authz-import-"));
    const file = join(dir, "one.json");
    writeFileSync(file, JSON.stringify({ STAFF: [{ id: "0000eeee-0000-4000-8000-000000000001", logical_key: "staff:dry" }] }));
    const cli = projectPath("dist/src/cli.js");
    const env = { ...process.env, DATABASE_URL: t.url };
    const before = await counts();
    const { stdout } = await run("node", [cli, "import", file, "--dry-run"], { env });
    expect(JSON.parse(stdout)).toMatchObject({ dryRun: true, sections: { STAFF: { inserted: 1 } } });
    expect(await counts()).toBe(before);
    expect(await t.raw`select 1 from staff where logical_key = 'staff:dry'`).toHaveLength(0);

    writeFileSync(file, "{ not json");
    const bad = await run("node", [cli, "import", file], { env }).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 1 });
    expect((bad as { stderr: string }).stderr).toMatch(/cannot read .* as JSON/);
  });
});
