// DirectoryService over real sockets on real Postgres: every directory entity
// created, changed, (de)activated, deleted and read back through the API;
// errors with their codes and reasons; a failed batch writes nothing;
// tenant-bound keys confined; the directory scope; Connect JSON and gRPC-Web
// on the same service.
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetTenantRequestSchema } from "../gen/authz/v1/directory_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos } from "./support/grpc-client.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const T1 = id("d001", 1);
const T2 = id("d001", 2);
const O1 = id("d002", 1);
const O2 = id("d002", 2);
const ALICE = id("d003", 1);
const BOB = id("d003", 2);
const OPS = id("d004", 1);
const ACC1 = id("d005", 1);
const ACC2 = id("d005", 2);
const P_ALICE = id("d006", 1);
const P_OPS = id("d006", 2);
const P_BOB2 = id("d006", 3);
const AV1 = id("d007", 1);
const AV2 = id("d007", 2);
const M_OWNER = id("d008", 1);
const M_ALICE = id("d008", 2);
const M_OWNER2 = id("d008", 3);
const MISSING = id("dead", 1);

let t: TestDatabase;
let app: App;
let ports: { grpcPort: number; httpPort: number };
const protos = loadProtos();
const keys: Record<string, string> = {};

async function addKey(name: string, scopes: Scope[], tenant: string | null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  return key;
}

type Reply = { code: number; message: string; reason?: string; value: Record<string, any> };

async function call(service: string, method: string, req: unknown, key: string): Promise<Reply> {
  const c = client(protos, service, ports.grpcPort);
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  try {
    return await new Promise<Reply>((resolve) => {
      (c[method] as Function).call(c, req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Record<string, unknown>) =>
        resolve(err ? { code: err.code, message: err.details, value: {} } : { code: 0, message: "", value: res }),
      );
    });
  } finally {
    c.close();
  }
}

const dir = (method: string, req: unknown, key = keys.root as string) => call("authz.v1.DirectoryService", method, req, key);
const manage = (mutations: unknown[], key = keys.root as string, extra: Record<string, unknown> = {}) => dir("ManageDirectory", { mutations, ...extra }, key);
const fresh = (revision: string) => ({ consistency: { at_least_as_fresh: revision } });

async function ok(r: Promise<Reply>): Promise<Record<string, any>> {
  const reply = await r;
  expect(reply.code, reply.message).toBe(0);
  return reply.value;
}

async function check(subject: { type: string; id: string }, permission: string, resource: { type: string; id: string }, revision: string): Promise<string> {
  const r = await ok(call("authz.v1.PermissionService", "Check", { subject, permission, resource, ...fresh(revision) }, keys.root as string));
  return r.reason as string;
}

const count = async (table: string): Promise<number> => Number((await t.raw.unsafe(`select count(*)::int as n from ${table}`))[0]?.n);
const ts = (iso: string) => ({ seconds: String(Math.floor(Date.parse(iso) / 1000)), nanos: 0 });

beforeAll(async () => {
  t = await freshDatabase();
  keys.root = await addKey("root", ["admin", "check"], null);
  keys.directory = await addKey("directory-only", ["directory"], null);
  keys.checkOnly = await addKey("check-only", ["check"], null);
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ports = await app.listen();
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

describe("ManageDirectory writes every entity and the reads give it back", () => {
  let rev = "0";

  it("creates tenants, organizations, users, staff, accounts, principals, an avatar with its owner, and an invitation in one batch", async () => {
    const res = await ok(
      manage([
        { upsert_tenant: { id: T1, name: "Acme", slug: "acme" } },
        { upsert_tenant: { id: T2, name: "Globex", slug: "globex" } },
        { upsert_organization: { id: O1, tenant_id: T1, name: "Acme Eng", slug: "eng", role_structure: "single_role_in_hierarchy" } },
        { upsert_organization: { id: O2, tenant_id: T2, name: "Globex Ops", slug: "ops", role_structure: "multi_role" } },
        {
          upsert_user: {
            id: ALICE,
            email: "alice@acme.example",
            email_confirmed: true,
            username: "alice",
            first_name: "Alice",
            last_name: "Liddell",
            picture_url: "https://acme.example/a.png",
            has_password: true,
            update_password_required: false,
            mfa_enabled: true,
            can_create_orgs: true,
            legacy_user_id: "legacy-1",
            logical_key: "user:alice",
            created_at: ts("2024-01-02T03:04:05Z"),
            last_active_at: ts("2024-06-01T00:00:00Z"),
          },
        },
        { upsert_user: { id: BOB, email: "bob@globex.example", logical_key: "user:bob" } },
        { upsert_staff: { id: OPS, logical_key: "staff:ops" } },
        { upsert_account: { id: ACC1, organization_id: O1, email: "billing@acme.example" } },
        { upsert_account: { id: ACC2, organization_id: O2 } },
        { upsert_principal: { id: P_ALICE, account_id: ACC1, subject: { type: "user", id: ALICE }, region: "eu", personality_key: "p1" } },
        { accept_principal: { id: P_ALICE } },
        { upsert_principal: { id: P_OPS, account_id: ACC1, subject: { type: "staff", id: OPS }, accepted_at: ts("2024-01-01T00:00:00Z") } },
        { upsert_principal: { id: P_BOB2, account_id: ACC2, subject: { type: "user", id: BOB }, accepted_at: ts("2024-01-01T00:00:00Z") } },
        { create_avatar: { id: AV1, organization_id: O1, handle: "acme-bot", owner_principal_id: P_OPS, owner_membership_id: M_OWNER } },
        { create_avatar: { id: AV2, organization_id: O2, handle: "globex-bot", owner_principal_id: P_BOB2, owner_membership_id: M_OWNER2 } },
        { invite_membership: { id: M_ALICE, avatar_id: AV1, principal_id: P_ALICE } },
      ]),
    );
    expect(res.results).toHaveLength(16);
    expect(res.results.every((r: { changed: boolean }) => r.changed)).toBe(true);
    expect(res.results[0].id).toBe(T1);
    rev = res.revision;
    expect(BigInt(rev)).toBeGreaterThan(0n);
  });

  it("reads each record back at the write's revision, with every field", async () => {
    const u = await ok(dir("GetUser", { logical_key: "user:alice", ...fresh(rev) }));
    expect(BigInt(u.revision)).toBeGreaterThanOrEqual(BigInt(rev));
    expect(u.user).toMatchObject({
      id: ALICE,
      email: "alice@acme.example",
      email_confirmed: true,
      username: "alice",
      first_name: "Alice",
      last_name: "Liddell",
      picture_url: "https://acme.example/a.png",
      has_password: true,
      mfa_enabled: true,
      can_create_orgs: true,
      legacy_user_id: "legacy-1",
      logical_key: "user:alice",
      locked: false,
      enabled: true,
    });
    expect(u.user.created_at.seconds).toBe(ts("2024-01-02T03:04:05Z").seconds);
    expect((await ok(dir("GetUser", { email: "alice@acme.example" }))).user.id).toBe(ALICE);
    expect((await ok(dir("GetUser", { legacy_user_id: "legacy-1" }))).user.id).toBe(ALICE);
    expect((await ok(dir("GetTenant", { slug: "acme" }))).tenant).toMatchObject({ id: T1, name: "Acme" });
    expect((await ok(dir("GetOrganization", { tenant_id: T1, slug: "eng" }))).organization).toMatchObject({
      id: O1,
      tenant_id: T1,
      name: "Acme Eng",
      role_structure: "single_role_in_hierarchy",
    });
    expect((await ok(dir("GetStaff", { logical_key: "staff:ops" }))).staff.id).toBe(OPS);
    expect((await ok(dir("GetAccount", { id: ACC1 }))).account).toMatchObject({ organization_id: O1, email: "billing@acme.example", active: true });
    const p = (await ok(dir("GetPrincipal", { id: P_ALICE }))).principal;
    expect(p).toMatchObject({ account_id: ACC1, subject: { type: "user", id: ALICE }, region: "eu", personality_key: "p1", active: true });
    expect(p.accepted_at).toBeTruthy();
    const av = await ok(dir("GetAvatar", { organization_id: O1, handle: "acme-bot" }));
    expect(av.avatar).toMatchObject({ id: AV1, active: true });
    expect(av.owner).toMatchObject({ id: M_OWNER, principal_id: P_OPS, owner: true });
    const ms = await ok(dir("ListMemberships", { avatar_id: AV1 }));
    expect(ms.memberships.map((m: { id: string }) => m.id).sort()).toEqual([M_OWNER, M_ALICE].sort());
    expect(ms.current_owner.id).toBe(M_OWNER);
    expect(ms.memberships.find((m: { id: string }) => m.id === M_ALICE).accepted_at).toBeNull();
    expect((await ok(dir("ListMemberships", { principal_id: P_ALICE }))).memberships.map((m: { id: string }) => m.id)).toEqual([M_ALICE]);
    expect((await ok(dir("ListPrincipals", { subject: { type: "staff", id: OPS } }))).principals.map((x: { id: string }) => x.id)).toEqual([P_OPS]);
    expect((await ok(dir("ListPrincipals", { account_id: ACC1 }))).principals).toHaveLength(2);
    expect((await ok(dir("ListAccounts", { organization_id: O2 }))).accounts.map((a: { id: string }) => a.id)).toEqual([ACC2]);
    expect((await ok(dir("ListAvatars", { organization_id: O2 }))).avatars.map((a: { id: string }) => a.id)).toEqual([AV2]);
    expect((await ok(dir("ListOrganizations", { tenant_id: T2 }))).organizations.map((o: { id: string }) => o.id)).toEqual([O2]);
    expect((await ok(dir("ListTenants", {}))).tenants.map((x: { id: string }) => x.id)).toEqual([T1, T2]);
    expect((await ok(dir("ListStaff", {}))).staff.map((x: { id: string }) => x.id)).toEqual([OPS]);
  });

  it("an invitation accepted grants the avatar_member role; the user locked is denied; off-boarding refused while owning, then done", async () => {
    const grant = await ok(
      call(
        "authz.v1.AdminService",
        "ManageRoles",
        {
          mutations: [
            { upsert_permission: { key: { key: "avatar.post" } } },
            { grant_permission: { role: { key: { key: "avatar_member" } }, permission: { key: { key: "avatar.post" } } } },
          ],
        },
        keys.root as string,
      ),
    );
    const alice = { type: "principal", id: P_ALICE };
    const avatar = { type: "avatar", id: AV1 };
    expect(await check(alice, "avatar.post", avatar, grant.revision)).toBe("DECISION_REASON_NO_GRANT");
    const accepted = await ok(manage([{ accept_membership: { id: M_ALICE } }]));
    expect(await check(alice, "avatar.post", avatar, accepted.revision)).toBe("DECISION_REASON_GRANTED");
    const again = await ok(manage([{ accept_membership: { id: M_ALICE } }]));
    expect(again.results[0].changed).toBe(false);

    const locked = await ok(manage([{ set_user_status: { user_id: ALICE, locked: true } }]));
    expect((await ok(dir("GetUser", { id: ALICE, ...fresh(locked.revision) }))).user.locked).toBe(true);
    expect(await check(alice, "avatar.post", avatar, locked.revision)).toBe("DECISION_REASON_SUBJECT_LOCKED");
    const unlocked = await ok(manage([{ set_user_status: { user_id: ALICE, locked: false, enabled: false } }]));
    expect(await check(alice, "avatar.post", avatar, unlocked.revision)).toBe("DECISION_REASON_SUBJECT_DISABLED");
    await ok(manage([{ set_user_status: { user_id: ALICE, enabled: true } }]));

    // The staff member owns AV1 through P_OPS: deleting it is refused and names the avatar.
    const refused = await manage([{ delete_staff: { id: OPS } }]);
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused.message).toContain(AV1);
    expect(refused.message).toContain("TransferOwnership");

    const before = await count("principals");
    const gone = await ok(manage([{ delete_user: { id: ALICE } }]));
    expect(await count("principals")).toBe(before - 1);
    expect(await check(alice, "avatar.post", avatar, gone.revision)).toBe("DECISION_REASON_SUBJECT_NOT_FOUND");
    expect((await dir("GetUser", { id: ALICE, ...fresh(gone.revision) })).code).toBe(grpc.status.NOT_FOUND);
    expect((await ok(dir("ListMemberships", { avatar_id: AV1 }))).memberships.map((m: { id: string }) => m.id)).toEqual([M_OWNER]);
  });

  it("changes, deactivates and reactivates accounts, principals, avatars and memberships; a no-op reports unchanged", async () => {
    const r = await ok(
      manage([
        { upsert_tenant: { id: T1, name: "Acme Corp" } },
        { upsert_tenant: { id: T1, name: "Acme Corp" } },
        { upsert_organization: { id: O1, name: "Acme Engineering" } },
        { upsert_account: { id: ACC1, email: "" } },
        { set_account_active: { id: ACC2, active: false } },
        { set_principal_active: { id: P_BOB2, active: false } },
        { upsert_principal: { id: P_BOB2, valid_until: ts("2031-01-01T00:00:00Z"), identity_id: MISSING } },
        { update_avatar: { id: AV2, handle: "globex-robot" } },
        { set_avatar_active: { id: AV2, active: false } },
        { set_membership_valid_until: { id: M_OWNER2, valid_until: ts("2032-01-01T00:00:00Z") } },
        { upsert_staff: { id: OPS, logical_key: "staff:ops2" } },
      ]),
    );
    expect(r.results.map((x: { changed: boolean }) => x.changed)).toEqual([true, false, true, true, true, true, true, true, true, true, true]);
    const at = fresh(r.revision);
    expect((await ok(dir("GetTenant", { id: T1, ...at }))).tenant.name).toBe("Acme Corp");
    expect((await ok(dir("GetAccount", { id: ACC1, ...at }))).account.email).toBe("");
    expect((await ok(dir("GetAccount", { id: ACC2, ...at }))).account.active).toBe(false);
    const p = (await ok(dir("GetPrincipal", { id: P_BOB2, ...at }))).principal;
    expect(p).toMatchObject({ active: false, identity_id: MISSING });
    expect(p.valid_until.seconds).toBe(ts("2031-01-01T00:00:00Z").seconds);
    expect((await ok(dir("GetAvatar", { id: AV2, ...at }))).avatar).toMatchObject({ handle: "globex-robot", active: false });
    expect((await ok(dir("GetStaff", { id: OPS, ...at }))).staff.logical_key).toBe("staff:ops2");
    const back = await ok(
      manage([
        { set_account_active: { id: ACC2, active: true } },
        { set_principal_active: { id: P_BOB2, active: true } },
        { set_avatar_active: { id: AV2, active: true } },
        { set_membership_valid_until: { id: M_OWNER2 } },
      ]),
    );
    expect((await ok(dir("ListMemberships", { avatar_id: AV2, ...fresh(back.revision) }))).current_owner.valid_until).toBeNull();
  });

  it("a user's place in an organization: the single-role rule, replace, the UserOrganizationInfo shape, removal", async () => {
    const roles = await ok(
      call(
        "authz.v1.AdminService",
        "ManageRoles",
        {
          mutations: [
            { upsert_role: { key: { organization_id: O1, key: "viewer" } } },
            { upsert_role: { key: { organization_id: O1, key: "editor" } } },
            { add_inheritance: { role: { key: { organization_id: O1, key: "editor" } }, parent: { key: { organization_id: O1, key: "viewer" } } } },
            { upsert_permission: { key: { organization_id: O1, key: "doc.read" } } },
            { grant_permission: { role: { key: { organization_id: O1, key: "viewer" } }, permission: { key: { organization_id: O1, key: "doc.read" } } } },
          ],
        },
        keys.root as string,
      ),
    );
    expect(roles.revision).toBeTruthy();
    const viewer = { key: { organization_id: O1, key: "viewer" } };
    const editor = { key: { organization_id: O1, key: "editor" } };
    const added = await ok(manage([{ add_user_to_organization: { user_id: BOB, organization_id: O1, primary_role: viewer } }]));
    expect(await check({ type: "user", id: BOB }, "doc.read", { type: "organization", id: O1 }, added.revision)).toBe("DECISION_REASON_GRANTED");
    const refused = await manage([{ set_primary_role: { user_id: BOB, organization_id: O1, primary_role: editor } }]);
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused.message).toContain('"viewer"');
    const replaced = await ok(manage([{ set_primary_role: { user_id: BOB, organization_id: O1, primary_role: editor, replace: true } }]));
    const members = await ok(dir("ListOrganizationMembers", { organization_id: O1, ...fresh(replaced.revision) }));
    expect(members.members).toEqual([
      expect.objectContaining({
        user_id: BOB,
        org_id: O1,
        user_role: "editor",
        url_safe_org_name: "eng",
        org_role_structure: "single_role_in_hierarchy",
        inherited_user_roles_plus_current_role: ["editor", "viewer"],
        user_permissions: ["doc.read"],
        additional_roles: [],
      }),
    ]);
    expect((await ok(dir("ListUsers", { organization_id: O1 }))).users.map((u: { id: string }) => u.id)).toEqual([BOB]);
    const assignments = await ok(dir("ListAssignments", { subject: { type: "user", id: BOB } }));
    expect(assignments.assignments.map((a: { role_key: string }) => a.role_key)).toEqual(["editor"]);
    const onOrg = await ok(dir("ListAssignments", { scope: { type: "organization", id: O1 } }));
    expect(onOrg.assignments).toEqual([
      expect.objectContaining({ subject: { type: "user", id: BOB }, role_key: "editor", scope: { type: "organization", id: O1 } }),
    ]);
    expect((await ok(dir("ListAssignments", { scope: { type: "global", id: "" } }))).assignments).toEqual([]);
    expect((await dir("ListAssignments", { subject: { type: "group", id: BOB } })).code).toBe(grpc.status.INVALID_ARGUMENT);
    const listed = await ok(dir("ListRoles", { organization_id: O1 }));
    const ed = listed.roles.find((x: { key: string }) => x.key === "editor");
    const vw = listed.roles.find((x: { key: string }) => x.key === "viewer");
    expect(ed.parent_role_ids).toEqual([vw.id]);
    expect(vw.permission_keys).toEqual(["doc.read"]);
    expect((await ok(dir("ListRoles", {}))).roles.map((x: { key: string }) => x.key)).toEqual(expect.arrayContaining(["avatar_member", "avatar_owner"]));
    expect((await ok(dir("ListPermissionDefinitions", { organization_id: O1 }))).permissions.map((x: { key: string }) => x.key)).toEqual(["doc.read"]);
    const removed = await ok(manage([{ remove_user_from_organization: { user_id: BOB, organization_id: O1 } }]));
    expect(await check({ type: "user", id: BOB }, "doc.read", { type: "organization", id: O1 }, removed.revision)).toBe("DECISION_REASON_NO_GRANT");
    expect((await ok(dir("ListOrganizationMembers", { organization_id: O1 }))).members).toEqual([]);
  });

  it("a multi_role organization lets a user hold several roles, and cannot become single_role_in_hierarchy while one does", async () => {
    await ok(
      call(
        "authz.v1.AdminService",
        "ManageRoles",
        { mutations: ["ops", "audit"].map((key) => ({ upsert_role: { key: { organization_id: O2, key } } })) },
        keys.root as string,
      ),
    );
    await ok(manage([{ add_user_to_organization: { user_id: BOB, organization_id: O2, primary_role: { key: { organization_id: O2, key: "ops" } } } }]));
    const second = await ok(
      manage([{ set_primary_role: { user_id: BOB, organization_id: O2, primary_role: { key: { organization_id: O2, key: "audit" } } } }]),
    );
    const [member] = (await ok(dir("ListOrganizationMembers", { organization_id: O2, ...fresh(second.revision) }))).members;
    expect(member).toMatchObject({ user_id: BOB, user_role: "audit", additional_roles: ["ops"] });
    const refused = await manage([{ upsert_organization: { id: O2, role_structure: "single_role_in_hierarchy" } }]);
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused.message).toContain(`user ${BOB} holds 2 roles ("audit", "ops")`);
  });

  it("lists a role key once when an organization role and a global role it inherits share it, as ListPermissions does", async () => {
    const lead = { key: { organization_id: O1, key: "lead" } };
    const globalLead = { key: { key: "lead" } };
    await ok(
      call(
        "authz.v1.AdminService",
        "ManageRoles",
        { mutations: [{ upsert_role: globalLead }, { upsert_role: lead }, { add_inheritance: { role: lead, parent: globalLead } }] },
        keys.root as string,
      ),
    );
    const placed = await ok(manage([{ add_user_to_organization: { user_id: BOB, organization_id: O1, primary_role: lead } }]));
    const members = (await ok(dir("ListOrganizationMembers", { organization_id: O1, ...fresh(placed.revision) }))).members;
    const member = members.find((m: { user_id: string }) => m.user_id === BOB);
    expect(member).toMatchObject({ user_role: "lead", inherited_user_roles_plus_current_role: ["lead"], additional_roles: [] });
    const listed = await ok(
      call(
        "authz.v1.PermissionService",
        "ListPermissions",
        { subject: { type: "user", id: BOB }, resource: { type: "organization", id: O1 }, ...fresh(placed.revision) },
        keys.root as string,
      ),
    );
    const onOrg = listed.scopes.find((e: { scope?: { id: string } }) => e.scope?.id === O1);
    expect(onOrg.inherited_user_roles_plus_current_role).toEqual(member.inherited_user_roles_plus_current_role);
    await ok(manage([{ remove_user_from_organization: { user_id: BOB, organization_id: O1 } }]));
  });

  it("lists the rate-limit policies with every field", async () => {
    await t.raw`insert into rate_limit_policies (id, name, scope, limit_count, window_sec, description, algorithm, failure_mode, shadow)
                values (7, 'per-user', 'user', 10, 60, 'ten a minute', 'token_bucket', 'closed', true)`;
    const r = await ok(dir("ListRateLimitPolicies", { consistency: { fully_consistent: true } }));
    expect(r.policies).toEqual([
      expect.objectContaining({
        id: 7,
        name: "per-user",
        scope: "user",
        limit_count: 10,
        window_sec: 60,
        description: "ten a minute",
        algorithm: "token_bucket",
        failure_mode: "closed",
        shadow: true,
      }),
    ]);
  });
});

describe("ManageDirectory deletes every kind of record", () => {
  const T3 = id("d0a1", 1);
  const O3 = id("d0a2", 1);
  const O4 = id("d0a2", 2);
  const A3 = id("d0a5", 1);
  const S3 = id("d0a4", 1);
  const U3 = id("d0a3", 1);
  const P3O = id("d0a6", 1);
  const P3U = id("d0a6", 2);
  const V3 = id("d0a7", 1);
  const V4 = id("d0a7", 2);
  const M3A = id("d0a8", 1);
  const M3B = id("d0a8", 2);

  it("memberships (decline, revoke), avatars, principals, accounts, staff, users; tenants and organizations with and without cascade", async () => {
    await ok(
      manage([
        { upsert_tenant: { id: T3, name: "Hooli", slug: "hooli" } },
        { upsert_organization: { id: O3, tenant_id: T3, name: "Hooli XYZ" } },
        { upsert_organization: { id: O4, tenant_id: T3, name: "Hooli Labs" } },
        { upsert_account: { id: A3, organization_id: O3 } },
        { upsert_staff: { id: S3, logical_key: "staff:hooli" } },
        { upsert_user: { id: U3, email: "gavin@hooli.example" } },
        { upsert_principal: { id: P3O, account_id: A3, subject: { type: "staff", id: S3 }, accepted_at: ts("2024-01-01T00:00:00Z") } },
        { upsert_principal: { id: P3U, account_id: A3, subject: { type: "user", id: U3 }, accepted_at: ts("2024-01-01T00:00:00Z") } },
        { create_avatar: { id: V3, organization_id: O3, handle: "hooli-bot", owner_principal_id: P3O } },
        { create_avatar: { id: V4, organization_id: O4, handle: "labs-bot", owner_principal_id: P3O } },
        { invite_membership: { id: M3A, avatar_id: V3, principal_id: P3U } },
        { invite_membership: { id: M3B, avatar_id: V4, principal_id: P3U } },
        { accept_membership: { id: M3B } },
      ]),
    );
    const accepted = await manage([{ decline_membership: { id: M3B } }]);
    expect(accepted.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(accepted.message).toContain("revoke");
    const declined = await ok(manage([{ decline_membership: { id: M3A } }, { revoke_membership: { id: M3B } }]));
    expect(declined.results.map((r: { changed: boolean }) => r.changed)).toEqual([true, true]);
    expect((await ok(dir("ListMemberships", { principal_id: P3U, ...fresh(declined.revision) }))).memberships).toEqual([]);

    const notEmpty = await manage([{ delete_tenant: { id: T3 } }]);
    expect(notEmpty.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(notEmpty.message).toContain("2 organizations");
    // The account's staff principal owns avatars: refused, naming them.
    const owning = await manage([{ delete_account: { id: A3 } }]);
    expect(owning.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(owning.message).toContain(V3);

    const gone = await ok(
      manage([
        { delete_avatar: { id: V3 } },
        { delete_principal: { id: P3U } },
        { delete_user: { id: U3 } },
        { delete_organization: { id: O4, cascade: true } },
        { delete_account: { id: A3 } },
        { delete_staff: { id: S3 } },
        { delete_organization: { id: O3 } },
        { delete_tenant: { id: T3 } },
      ]),
    );
    const at = fresh(gone.revision);
    for (const [method, req] of [
      ["GetTenant", { id: T3 }],
      ["GetOrganization", { id: O3 }],
      ["GetOrganization", { id: O4 }],
      ["GetAccount", { id: A3 }],
      ["GetStaff", { id: S3 }],
      ["GetUser", { id: U3 }],
      ["GetPrincipal", { id: P3O }],
      ["GetPrincipal", { id: P3U }],
      ["GetAvatar", { id: V3 }],
      ["GetAvatar", { id: V4 }],
    ] as const) {
      expect((await dir(method, { ...req, ...at })).code, `${method} ${JSON.stringify(req)}`).toBe(grpc.status.NOT_FOUND);
    }
    expect((await manage([{ delete_avatar: { id: V3 } }])).code).toBe(grpc.status.NOT_FOUND);
  });

  it("a membership named by an ownership transfer can be revoked: the transfer history of that membership goes with it", async () => {
    const [o6, a6, s6, p6a, p6b, v6, m6a, m6b] = [
      id("d0c2", 1),
      id("d0c5", 1),
      id("d0c4", 1),
      id("d0c6", 1),
      id("d0c6", 2),
      id("d0c7", 1),
      id("d0c8", 1),
      id("d0c8", 2),
    ];
    await ok(
      manage([
        { upsert_organization: { id: o6, name: "Raviga" } },
        { upsert_account: { id: a6, organization_id: o6 } },
        { upsert_staff: { id: s6, logical_key: "staff:raviga" } },
        { upsert_principal: { id: p6a, account_id: a6, subject: { type: "staff", id: s6 }, accepted_at: ts("2024-01-01T00:00:00Z") } },
        { upsert_principal: { id: p6b, account_id: a6, subject: { type: "user", id: BOB }, accepted_at: ts("2024-01-01T00:00:00Z") } },
        { create_avatar: { id: v6, organization_id: o6, handle: "raviga-bot", owner_principal_id: p6a, owner_membership_id: m6a } },
        { invite_membership: { id: m6b, avatar_id: v6, principal_id: p6b } },
        { accept_membership: { id: m6b, accepted_at: ts("2024-01-02T00:00:00Z") } },
      ]),
    );
    await ok(call("authz.v1.AdminService", "TransferOwnership", { avatar_id: v6, from_membership_id: m6a, to_membership_id: m6b }, keys.root as string));
    expect(await count(`ownership_transfers where avatar_id = '${v6}'`)).toBe(1);
    const revoked = await ok(manage([{ revoke_membership: { id: m6a } }]));
    expect(revoked.results[0].changed).toBe(true);
    expect(await count(`ownership_transfers where avatar_id = '${v6}'`)).toBe(0);
    expect((await ok(dir("GetAvatar", { id: v6, ...fresh(revoked.revision) }))).owner.id).toBe(m6b);
  });

  it("a tenant deleted with cascade takes its organizations, avatars and memberships along", async () => {
    const [t4, o5, a5, s5, p5, v5] = [id("d0b1", 1), id("d0b2", 1), id("d0b5", 1), id("d0b4", 1), id("d0b6", 1), id("d0b7", 1)];
    await ok(
      manage([
        { upsert_tenant: { id: t4, name: "Pied Piper", slug: "pied-piper" } },
        { upsert_organization: { id: o5, tenant_id: t4, name: "PP" } },
        { upsert_account: { id: a5, organization_id: o5 } },
        { upsert_staff: { id: s5, logical_key: "staff:pp" } },
        { upsert_principal: { id: p5, account_id: a5, subject: { type: "staff", id: s5 }, accepted_at: ts("2024-01-01T00:00:00Z") } },
        { create_avatar: { id: v5, organization_id: o5, handle: "pp-bot", owner_principal_id: p5 } },
      ]),
    );
    const res = await ok(manage([{ delete_tenant: { id: t4, cascade: true } }]));
    expect(res.results[0]).toEqual({ id: t4, changed: true });
    expect(await count(`memberships where avatar_id = '${v5}'`)).toBe(0);
    expect(await count(`principals where id = '${p5}'`)).toBe(0);
    expect(await count(`staff where id = '${s5}'`)).toBe(1);
  });
});

describe("ManageDirectory errors", () => {
  it("an unknown reference is NOT_FOUND naming the field, and the failed batch writes nothing", async () => {
    const before = { tenants: await count("tenants"), changes: await count("authz_changes") };
    const r = await manage([{ upsert_tenant: { name: "Initech", slug: "initech" } }, { upsert_account: { organization_id: MISSING } }]);
    expect(r.code).toBe(grpc.status.NOT_FOUND);
    expect(r.message).toContain("mutations[1].upsert_account.organization_id");
    expect({ tenants: await count("tenants"), changes: await count("authz_changes") }).toEqual(before);
  });

  it("a duplicate slug, handle or logical_key is ALREADY_EXISTS, naming the conflicting record only within the caller's tenant", async () => {
    // A tenant's slug and a user's logical key are unique across tenants: the holder is not named.
    const slug = await manage([{ upsert_tenant: { name: "Other", slug: "globex" } }]);
    expect(slug.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(slug.message).toContain('"globex" is already taken');
    expect(slug.message).not.toContain(T2);
    const handle = await manage([{ create_avatar: { organization_id: O2, handle: "globex-robot", owner_principal_id: P_BOB2 } }]);
    expect(handle.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(handle.message).toContain(AV2);
    const key = await manage([{ upsert_user: { logical_key: "user:bob" } }]);
    expect(key.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(key.message).not.toContain(BOB);
  });

  it("malformed fields are INVALID_ARGUMENT; rule violations FAILED_PRECONDITION with their reason", async () => {
    expect((await manage([{ upsert_tenant: { id: "not-a-uuid", name: "x", slug: "x" } }])).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await manage([{ upsert_organization: { name: "x", slug: "Not A Slug" } }])).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await manage([{ upsert_organization: { id: O1, role_structure: "flat" } }])).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await manage([{ upsert_tenant: { id: MISSING, name: "no slug" } }])).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await manage([])).code).toBe(grpc.status.INVALID_ARGUMENT);
    const notEmpty = await manage([{ delete_organization: { id: O1 } }]);
    expect(notEmpty.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(notEmpty.message).toMatch(/accounts/);
    const owner = await manage([{ revoke_membership: { id: M_OWNER } }]);
    expect(owner.code).toBe(grpc.status.FAILED_PRECONDITION);
    const lastOwner = await manage([{ set_membership_active: { id: M_OWNER, active: false } }]);
    expect(lastOwner.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(lastOwner.message).toContain("owner");
  });

  it("expected_revision and idempotency_key behave as in ManageRoles", async () => {
    const stale = await manage([{ upsert_staff: { logical_key: "staff:late" } }], keys.root, { expected_revision: "1" });
    expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
    const first = await ok(manage([{ upsert_staff: { logical_key: "staff:once" } }], keys.root, { idempotency_key: "k-1" }));
    const retry = await ok(manage([{ upsert_staff: { logical_key: "staff:once" } }], keys.root, { idempotency_key: "k-1" }));
    expect(retry).toEqual(first);
    expect(await count("staff where logical_key = 'staff:once'")).toBe(1);
  });

  it("reads honour the consistency options: a token newer than any handed out is INVALID_ARGUMENT", async () => {
    const far = await dir("ListTenants", { consistency: { at_least_as_fresh: "999999999" } });
    expect(far.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(far.message).toContain("newest revision");
    expect((await dir("ListTenants", { consistency: { at_least_as_fresh: "not-a-revision" } })).code).toBe(grpc.status.INVALID_ARGUMENT);
    const full = await ok(dir("ListTenants", { consistency: { fully_consistent: true } }));
    const written = await ok(manage([{ upsert_staff: { logical_key: "staff:consistency" } }]));
    const after = await ok(dir("GetStaff", { logical_key: "staff:consistency", consistency: { at_least_as_fresh: written.revision } }));
    expect(BigInt(after.revision)).toBeGreaterThanOrEqual(BigInt(written.revision));
    expect(BigInt(written.revision)).toBeGreaterThan(BigInt(full.revision));
  });

  it("pages are complete and bound to their request", async () => {
    const users = Array.from({ length: 5 }, (_, i) => ({ upsert_user: { id: id("d00e", i + 1), email: "same@example.com" } }));
    await ok(manage(users));
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await ok(dir("ListUsers", { email: "same@example.com", page_size: 2, page_token: token }));
      seen.push(...page.users.map((u: { id: string }) => u.id));
      token = page.next_page_token;
      pages++;
    } while (token !== "");
    expect(pages).toBe(3);
    expect(seen).toEqual(users.map((u) => u.upsert_user.id));
    const first = await ok(dir("ListUsers", { email: "same@example.com", page_size: 2 }));
    expect((await dir("ListUsers", { page_size: 2, page_token: first.next_page_token })).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await dir("ListUsers", { page_size: 5000 })).code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("scopes and tenants", () => {
  it("the directory scope (or admin) is needed; check alone is PERMISSION_DENIED", async () => {
    expect((await dir("ListTenants", {}, keys.checkOnly)).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await dir("ListTenants", {}, keys.directory)).code).toBe(0);
    expect((await manage([{ upsert_staff: { logical_key: "staff:scoped" } }], keys.directory)).code).toBe(0);
  });

  it("a tenant-bound key writes and reads only its tenant's directory", async () => {
    keys.t1 = await addKey("acme-directory", ["directory"], T1);
    // The server picks a new key up through NOTIFY: wait (bounded) until it is known.
    const end = Date.now() + 5000;
    while (Date.now() < end && (await dir("ListTenants", {}, keys.t1)).code === grpc.status.UNAUTHENTICATED) await new Promise((r) => setTimeout(r, 20));
    const own = await manage([{ upsert_account: { organization_id: O1, email: "own@acme.example" } }], keys.t1);
    expect(own.code, own.message).toBe(0);
    const before = await count("accounts");
    for (const m of [
      { upsert_account: { organization_id: O2 } },
      { set_avatar_active: { id: AV2, active: false } },
      { upsert_organization: { id: O2, name: "Mine now" } },
      { upsert_organization: { name: "Tenantless" } },
      { upsert_user: { email: "x@example.com" } },
      { invite_membership: { avatar_id: AV2, principal_id: P_OPS } },
      { delete_tenant: { id: T2, cascade: true } },
    ]) {
      const r = await manage([{ upsert_account: { organization_id: O1 } }, m], keys.t1);
      expect(r.code, JSON.stringify(m)).toBe(grpc.status.PERMISSION_DENIED);
      expect(r.message).not.toContain("Globex");
    }
    expect(await count("accounts")).toBe(before);
    expect((await ok(dir("ListOrganizations", {}, keys.t1))).organizations.map((o: { id: string }) => o.id)).toEqual([O1]);
    expect((await ok(dir("ListTenants", {}, keys.t1))).tenants.map((x: { id: string }) => x.id)).toEqual([T1]);
    expect((await dir("GetOrganization", { id: O2 }, keys.t1)).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await dir("GetAvatar", { id: AV2 }, keys.t1)).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await ok(dir("ListAccounts", { organization_id: O2 }, keys.t1))).accounts).toEqual([]);
    expect((await dir("GetUser", { id: BOB }, keys.t1)).code).toBe(grpc.status.NOT_FOUND);
    expect((await ok(dir("ListUsers", {}, keys.t1))).users.map((u: { id: string }) => u.id)).not.toContain(BOB);
  });
});

describe("Connect and gRPC-Web", () => {
  it("Connect JSON writes an organization with metadata and reads it back", async () => {
    const post = (method: string, body: unknown) =>
      fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.DirectoryService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": keys.root as string },
        body: JSON.stringify(body),
      });
    const orgId = id("d002", 9);
    const w = await post("ManageDirectory", {
      mutations: [{ upsertOrganization: { id: orgId, tenantId: T2, name: "Globex Lab", slug: "lab", metadata: { plan: "pro", seats: 5 } } }],
    });
    expect(w.status).toBe(200);
    const { revision } = (await w.json()) as { revision: string };
    const r = await post("GetOrganization", { id: orgId, consistency: { atLeastAsFresh: revision } });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { organization: { metadata: unknown; slug: string }; revision: string };
    expect(body.organization).toMatchObject({ slug: "lab", metadata: { plan: "pro", seats: 5 } });
  });

  it("gRPC-Web reads a tenant", async () => {
    const msg = toBinary(GetTenantRequestSchema, create(GetTenantRequestSchema, { by: { case: "slug", value: "globex" } }));
    const frame = new Uint8Array(5 + msg.length);
    new DataView(frame.buffer).setUint32(1, msg.length);
    frame.set(msg, 5);
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.DirectoryService/GetTenant`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "x-api-key": keys.root as string },
      body: frame,
    });
    expect(res.status).toBe(200);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const text = new TextDecoder().decode(bytes);
    expect(text).toContain("Globex");
    expect(text).toMatch(/grpc-status: ?0/);
  });
});

describe("ListRateLimitAssignments: the assignments ManageRateLimits writes, read back", () => {
  const TA = id("d0a1", 1);
  const TB = id("d0a1", 2);
  const OA = id("d0a2", 1);
  const OB = id("d0a2", 2);
  const UA = id("d0a3", 1); // a place in OA (tenant A)
  const UB = id("d0a3", 2); // a principal in OB's account (tenant B)
  const UN = id("d0a3", 3); // nowhere
  const ACC_B = id("d0a4", 1);
  const P_UB = id("d0a5", 1);
  const rateLimits = (mutations: unknown[]) => call("authz.v1.RateLimitService", "ManageRateLimits", { mutations }, keys.root as string);
  const list = (req: Record<string, unknown>, key = keys.root as string) => dir("ListRateLimitAssignments", req, key);
  type Rec = { id: string; policy_id: number; policy: string; user_id: string; organization_id: string; created_at: unknown };
  /** "policy→target" per record, in the order listed. */
  const shown = (r: Record<string, any>) => (r.assignments as Rec[]).map((a) => `${a.policy}→${a.user_id || a.organization_id}`);
  let written = "0";
  let policyIds: Record<string, number> = {};

  beforeAll(async () => {
    await ok(
      manage([
        { upsert_tenant: { id: TA, name: "RL A", slug: "rl-a" } },
        { upsert_tenant: { id: TB, name: "RL B", slug: "rl-b" } },
        { upsert_organization: { id: OA, tenant_id: TA, name: "RL A org", slug: "rl-a" } },
        { upsert_organization: { id: OB, tenant_id: TB, name: "RL B org", slug: "rl-b" } },
        { upsert_user: { id: UA, email: "ua@rl.example" } },
        { upsert_user: { id: UB, email: "ub@rl.example" } },
        { upsert_user: { id: UN, email: "un@rl.example" } },
        { upsert_account: { id: ACC_B, organization_id: OB } },
        { upsert_principal: { id: P_UB, account_id: ACC_B, subject: { type: "user", id: UB } } },
      ]),
    );
    await ok(
      call("authz.v1.AdminService", "ManageRoles", { mutations: [{ upsert_role: { key: { organization_id: OA, key: "rl-member" } } }] }, keys.root as string),
    );
    await ok(manage([{ add_user_to_organization: { user_id: UA, organization_id: OA, primary_role: { key: { organization_id: OA, key: "rl-member" } } } }]));
    const org = (oid: string) => ({ type: "organization", id: oid });
    const user = (uid: string) => ({ type: "user", id: uid });
    const res = await ok(
      rateLimits([
        { upsert_policy: { name: "rla-org", scope: "organization", limit_count: 10, window_sec: 60 } },
        { upsert_policy: { name: "rla-user", scope: "user", limit_count: 10, window_sec: 60 } },
        { upsert_policy: { name: "rla-global", scope: "global", limit_count: 10, window_sec: 60 } },
        { assign: { policy: "rla-org", subject: org(OA) } },
        { assign: { policy: "rla-org", subject: org(OB) } },
        { assign: { policy: "rla-user", subject: user(UA) } },
        { assign: { policy: "rla-user", subject: user(UB) } },
        { assign: { policy: "rla-global", subject: org(OA) } },
        { assign: { policy: "rla-user", subject: user(UN) } },
      ]),
    );
    written = res.revision;
    policyIds = { "rla-org": res.results[0].policy_id, "rla-user": res.results[1].policy_id, "rla-global": res.results[2].policy_id };
    keys.rlA = await addKey("rl-a-directory", ["directory"], TA);
    const end = Date.now() + 5000;
    while (Date.now() < end && (await dir("ListTenants", {}, keys.rlA)).code === grpc.status.UNAUTHENTICATED) await new Promise((r) => setTimeout(r, 20));
  });

  it("lists every assignment in id order with its policy, target and time, at the write's revision", async () => {
    const r = await ok(list({ ...fresh(written) }));
    expect(BigInt(r.revision)).toBeGreaterThanOrEqual(BigInt(written));
    // Other tests of this file may have assigned none: the six of this block are all there is.
    expect(shown(r)).toEqual([`rla-org→${OA}`, `rla-org→${OB}`, `rla-user→${UA}`, `rla-user→${UB}`, `rla-global→${OA}`, `rla-user→${UN}`]);
    const ids = (r.assignments as Rec[]).map((a) => BigInt(a.id));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
    expect(r.assignments[0]).toMatchObject({ policy_id: policyIds["rla-org"], policy: "rla-org", organization_id: OA, user_id: "" });
    expect(r.assignments[2]).toMatchObject({ policy_id: policyIds["rla-user"], policy: "rla-user", user_id: UA, organization_id: "" });
    expect(Number(r.assignments[0].created_at.seconds)).toBeGreaterThan(Date.parse("2024-01-01") / 1000);
    expect(r.next_page_token).toBe("");
  });

  it("filters by policy name, organization, user, and policy with organization", async () => {
    const at = { consistency: { fully_consistent: true } };
    expect(shown(await ok(list({ policy: "rla-org", ...at })))).toEqual([`rla-org→${OA}`, `rla-org→${OB}`]);
    expect(shown(await ok(list({ organization_id: OA, ...at })))).toEqual([`rla-org→${OA}`, `rla-global→${OA}`]);
    expect(shown(await ok(list({ user_id: UB, ...at })))).toEqual([`rla-user→${UB}`]);
    expect(shown(await ok(list({ policy: "rla-global", organization_id: OA, ...at })))).toEqual([`rla-global→${OA}`]);
    expect(shown(await ok(list({ policy: "rla-global", organization_id: OB, ...at })))).toEqual([]);
    // Upper-case UUIDs name the same rows.
    expect(shown(await ok(list({ user_id: UA.toUpperCase(), ...at })))).toEqual([`rla-user→${UA}`]);
  });

  it("pages of one are complete, each at a revision, and a token works only with the request it came from", async () => {
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await ok(list({ policy: "rla-user", page_size: 1, page_token: token }));
      expect(page.assignments).toHaveLength(1);
      expect(BigInt(page.revision)).toBeGreaterThanOrEqual(BigInt(written));
      seen.push(...shown(page));
      token = page.next_page_token;
      pages++;
    } while (token !== "" && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual([`rla-user→${UA}`, `rla-user→${UB}`, `rla-user→${UN}`]);

    const first = await ok(list({ policy: "rla-user", page_size: 1 }));
    for (const other of [
      { policy: "rla-org", page_size: 1 },
      { policy: "rla-user", page_size: 2 },
      { policy: "rla-user", user_id: UB, page_size: 1 },
    ]) {
      const r = await list({ ...other, page_token: first.next_page_token });
      expect(r.code, JSON.stringify(other)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(r.message).toContain("page_token");
    }
    expect((await list({ page_token: "not-a-token" })).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await list({ page_size: 5000 })).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("a malformed filter is INVALID_ARGUMENT naming it; an unknown policy is NOT_FOUND", async () => {
    for (const [req, field] of [
      [{ organization_id: "not-a-uuid" }, "organization_id"],
      [{ user_id: "00000000-0000-0000-0000-00000000000" }, "user_id"],
      [{ organization_id: OA, user_id: UA }, "user_id"],
      [{ policy: "no spaces allowed" }, "policy"],
    ] as const) {
      const r = await list(req);
      expect(r.code, JSON.stringify(req)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(r.message).toContain(field);
    }
    const unknown = await list({ policy: "rla-nobody" });
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    expect(unknown.message).toContain('"rla-nobody"');
  });

  it("a tenant-bound key sees its organizations' assignments and those of users with a place in its tenant, nothing of another tenant", async () => {
    const at = { consistency: { fully_consistent: true } };
    expect(shown(await ok(list(at, keys.rlA)))).toEqual([`rla-org→${OA}`, `rla-user→${UA}`, `rla-global→${OA}`]);
    expect(shown(await ok(list({ policy: "rla-user", ...at }, keys.rlA)))).toEqual([`rla-user→${UA}`]);
    // Another tenant's organization or user: an empty list, as ListAccounts and ListUsers answer.
    expect((await ok(list({ organization_id: OB, ...at }, keys.rlA))).assignments).toEqual([]);
    expect((await ok(list({ user_id: UB, ...at }, keys.rlA))).assignments).toEqual([]);
    expect((await ok(list({ user_id: UN, ...at }, keys.rlA))).assignments).toEqual([]);
    expect((await ok(dir("ListAccounts", { organization_id: OB }, keys.rlA))).accounts).toEqual([]);
    // Paging stays inside the tenant.
    const p1 = await ok(list({ page_size: 2 }, keys.rlA));
    const p2 = await ok(list({ page_size: 2, page_token: p1.next_page_token }, keys.rlA));
    expect([...shown(p1), ...shown(p2)]).toEqual([`rla-org→${OA}`, `rla-user→${UA}`, `rla-global→${OA}`]);
    expect(p2.next_page_token).toBe("");
    // The directory scope is needed, as for every directory read.
    expect((await list({}, keys.checkOnly)).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it("answers over Connect JSON too", async () => {
    const res = await fetch(`http://127.0.0.1:${ports.httpPort}/authz.v1.DirectoryService/ListRateLimitAssignments`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": keys.root as string },
      body: JSON.stringify({ organizationId: OA, consistency: { atLeastAsFresh: written } }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { assignments: Array<Record<string, unknown>>; revision: string; nextPageToken?: string };
    expect(body.assignments.map((a) => a.policy)).toEqual(["rla-org", "rla-global"]);
    expect(body.assignments[0]).toMatchObject({ policyId: policyIds["rla-org"], organizationId: OA });
    expect(typeof body.assignments[0]?.id).toBe("string"); // int64 in proto3 JSON
    expect(String(body.assignments[0]?.createdAt)).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(BigInt(body.revision)).toBeGreaterThanOrEqual(BigInt(written));
  });
});
