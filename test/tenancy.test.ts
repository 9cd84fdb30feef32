// Tenant confinement of writes: a tenant-bound credential changes, and names,
// only rows of its own tenant. Every reference of every write is checked
// before anything is written (issue: a tenant-A key granted its principal
// tenant B's admin role on B's organization, and the global avatar_owner
// role on B's avatar). Two tenants, real Postgres, a real gRPC socket.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos } from "./support/grpc-client.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const TA = id("a001", 1);
const TB = id("b001", 1);
const OA = id("a002", 1);
const OB = id("b002", 1);
const UA = id("a003", 1);
const UB = id("b003", 1);
const AA = id("a005", 1);
const AB = id("b005", 1);
const PA = id("a006", 1);
const PA2 = id("a006", 2);
const PB = id("b006", 1);
const PB2 = id("b006", 2);
const VA = id("a007", 1);
const VB = id("b007", 1);
const MA1 = id("a008", 1);
const MA2 = id("a008", 2);
const MB1 = id("b008", 1);
const MB2 = id("b008", 2);
const ADMIN_A = id("a009", 1);
const ADMIN_B = id("b009", 1);
const VIEWER_B = id("b009", 2);
const SECRETS_A = id("a010", 1);
const SECRETS_B = id("b010", 1);
const AVATAR_OWNER = "00000000-0000-4000-8000-00000000a002";
const B_NAMES = ["Beta", "beta-admin", "beta-viewer", "beta-org", "beta-bot"];

const accepted = "2024-01-01T00:00:00Z";
const DATA = {
  TENANT: [
    { id: TA, name: "Alpha", slug: "alpha" },
    { id: TB, name: "Beta", slug: "beta" },
  ],
  ORGANIZATION: [
    { id: OA, tenant_id: TA, name: "Alpha Org", slug: "alpha-org" },
    { id: OB, tenant_id: TB, name: "Beta Org", slug: "beta-org" },
  ],
  USER: [
    { id: UA, logical_key: "user:a" },
    { id: UB, logical_key: "user:b" },
  ],
  ACCOUNT: [
    { id: AA, organization_id: OA, email: "a@alpha.example", active: true },
    { id: AB, organization_id: OB, email: "b@beta.example", active: true },
  ],
  PRINCIPAL: [
    { id: PA, account_id: AA, subject_type: "user", subject_id: UA, active: true, accepted_at: accepted },
    { id: PA2, account_id: AA, subject_type: "user", subject_id: UB, active: true, accepted_at: accepted },
    { id: PB, account_id: AB, subject_type: "user", subject_id: UB, active: true, accepted_at: accepted },
    { id: PB2, account_id: AB, subject_type: "user", subject_id: UA, active: true, accepted_at: accepted },
  ],
  AVATAR: [
    { id: VA, organization_id: OA, handle: "alpha-bot", active: true },
    { id: VB, organization_id: OB, handle: "beta-bot", active: true },
  ],
  MEMBERSHIP: [
    { id: MA1, principal_id: PA, avatar_id: VA, owner: true, active: true, accepted_at: accepted },
    { id: MA2, principal_id: PA2, avatar_id: VA, owner: false, active: true, accepted_at: accepted },
    { id: MB1, principal_id: PB, avatar_id: VB, owner: true, active: true, accepted_at: accepted },
    { id: MB2, principal_id: PB2, avatar_id: VB, owner: false, active: true, accepted_at: accepted },
  ],
  Role: [
    { role_id: ADMIN_A, org_id: OA, name: "Alpha admin", key: "alpha-admin" },
    { role_id: ADMIN_B, org_id: OB, name: "Beta admin", key: "beta-admin" },
    { role_id: VIEWER_B, org_id: OB, name: "Beta viewer", key: "beta-viewer" },
  ],
  Permission: [
    { permission_id: SECRETS_A, org_id: OA, name: "secrets.read" },
    { permission_id: SECRETS_B, org_id: OB, name: "secrets.read" },
  ],
  CAPABILITY: [{ key: "avatar.transfer" }],
  RolePermission: [
    { role_id: ADMIN_A, permission_id: SECRETS_A },
    { role_id: ADMIN_B, permission_id: SECRETS_B },
  ],
  ROLE_PERMISSION: [{ id: id("a011", 1), role_id: AVATAR_OWNER, capability_key: "avatar.transfer" }],
  ROLE_ASSIGNMENT: [{ id: id("b012", 1), account_id: AB, role_id: ADMIN_B, scope_type: "organization", scope_id: OB, active: true }],
  RateLimitPolicy: [
    { policy_id: 1, name: "per-org", scope: "organization", limit_count: 10, window_sec: 60 },
    { policy_id: 2, name: "shared", scope: "global", limit_count: 10, window_sec: 60 },
  ],
};

let t: TestDatabase;
let app: App;
let port: number;
const protos = loadProtos();
const keys: Record<string, string> = {};

async function addKey(name: string, scopes: Scope[], tenant: string | null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  return key;
}

type Reply = { code: grpc.status | 0; message: string; value?: Record<string, unknown> };

async function call(service: string, method: string, req: unknown, key: string): Promise<Reply> {
  const c = client(protos, service, port);
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  try {
    return await new Promise<Reply>((resolve) => {
      (c[method] as Function).call(c, req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Record<string, unknown>) =>
        resolve(err ? { code: err.code, message: err.details } : { code: 0, message: "", value: res }),
      );
    });
  } finally {
    c.close();
  }
}

const manage = (mutations: unknown[], key = keys.alpha as string, extra: Record<string, unknown> = {}) =>
  call("authz.v1.AdminService", "ManageRoles", { mutations, ...extra }, key);
const check = (subject: string, permission: string, type: string, resource: string) =>
  call(
    "authz.v1.PermissionService",
    "Check",
    { subject: { type: "principal", id: subject }, permission, resource: { type, id: resource }, consistency: { fully_consistent: true } },
    keys.root as string,
  );

/** PERMISSION_DENIED, and the message names nothing of tenant B that the caller did not supply. */
function expectDenied(r: Reply): void {
  expect(r.code, r.message).toBe(grpc.status.PERMISSION_DENIED);
  for (const name of B_NAMES) expect(r.message).not.toContain(name);
}

const count = async (sql: string): Promise<number> => Number((await t.raw.unsafe(sql))[0]?.n);

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, DATA);
  keys.alpha = await addKey("alpha-admin", ["admin", "check", "ratelimit"], TA);
  keys.root = await addKey("root", ["admin", "check", "ratelimit"], null);
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  port = (await app.listen()).grpcPort;
  await app.ready;
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await t?.drop();
});

describe("a tenant-bound key cannot grant itself another tenant's access", () => {
  it("tenant B's admin role on B's organization, by id or by key: PERMISSION_DENIED, and Check stays NO_GRANT", async () => {
    const before = await count("select count(*)::int as n from role_assignments");
    const byId = await manage([{ assign_role: { subject: { type: "principal", id: PA }, role: { id: ADMIN_B }, scope: { type: "organization", id: OB } } }]);
    expectDenied(byId);
    const byKey = await manage([
      {
        assign_role: {
          subject: { type: "principal", id: PA },
          role: { key: { organization_id: OB, key: "beta-admin" } },
          scope: { type: "organization", id: OB },
        },
      },
    ]);
    expect(byKey.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(await count("select count(*)::int as n from role_assignments")).toBe(before);
    expect((await check(PA, "secrets.read", "organization", OB)).value?.reason).toBe("DECISION_REASON_NO_GRANT");
  });

  it("the global avatar_owner role on B's avatar, or on the global scope: PERMISSION_DENIED; on its own avatar it works", async () => {
    expectDenied(await manage([{ assign_role: { subject: { type: "principal", id: PA2 }, role: { id: AVATAR_OWNER }, scope: { type: "avatar", id: VB } } }]));
    expectDenied(await manage([{ assign_role: { subject: { type: "principal", id: PA2 }, role: { id: AVATAR_OWNER } } }]));
    expect((await check(PA2, "avatar.transfer", "avatar", VB)).value?.allowed).toBe(false);
    const own = await manage([{ assign_role: { subject: { type: "principal", id: PA2 }, role: { id: AVATAR_OWNER }, scope: { type: "avatar", id: VA } } }]);
    expect(own.code, own.message).toBe(0);
    expect((await check(PA2, "avatar.transfer", "avatar", VA)).value?.allowed).toBe(true);
  });

  it("a principal of another tenant cannot be given a role on its own scopes either", async () => {
    expectDenied(await manage([{ assign_role: { subject: { type: "principal", id: PB }, role: { id: ADMIN_A }, scope: { type: "organization", id: OA } } }]));
  });

  it("a batch that mixes an allowed change with a refused one writes nothing", async () => {
    const before = await count("select count(*)::int as n from permissions");
    const r = await manage([
      { upsert_permission: { key: { organization_id: OA, key: "alpha.extra" } } },
      { grant_permission: { role: { id: VIEWER_B }, permission: { id: SECRETS_B } } },
    ]);
    expectDenied(r);
    expect(await count("select count(*)::int as n from permissions")).toBe(before);
  });
});

describe("no-op writes and lookups on another tenant's rows are refused, not answered", () => {
  it("removing a link that does not exist between B's roles, deleting or re-using B's role: PERMISSION_DENIED", async () => {
    expectDenied(await manage([{ remove_inheritance: { role: { id: VIEWER_B }, parent: { id: ADMIN_B } } }]));
    expectDenied(await manage([{ revoke_permission: { role: { id: VIEWER_B }, permission: { id: SECRETS_B } } }]));
    expectDenied(await manage([{ delete_role: { id: ADMIN_B } }]));
    expectDenied(await manage([{ upsert_role: { id: ADMIN_B, key: { organization_id: OA, key: "taken-id" } } }]));
    expect(await count(`select count(*)::int as n from roles where id = '${ADMIN_B}'`)).toBe(1);
  });

  it("unassigning B's assignment by id is refused; an unknown id is a no-op", async () => {
    expectDenied(await manage([{ unassign_role: { assignment_id: id("b012", 1) } }]));
    const unknown = await manage([{ unassign_role: { assignment_id: id("ffff", 99) } }]);
    expect(unknown.code, unknown.message).toBe(0);
    expect((unknown.value?.results as Array<{ changed: boolean }> | undefined)?.[0]?.changed).toBe(false);
  });

  it("global roles and permissions can be referred to but not changed", async () => {
    expectDenied(await manage([{ upsert_permission: { key: { organization_id: "", key: "global.new" } } }]));
    expectDenied(await manage([{ grant_permission: { role: { id: AVATAR_OWNER }, permission: { key: { organization_id: "", key: "avatar.transfer" } } } }]));
    const ok = await manage([{ add_inheritance: { role: { id: ADMIN_A }, parent: { id: AVATAR_OWNER } } }]);
    expect(ok.code, ok.message).toBe(0);
  });
});

describe("ownership writes are confined", () => {
  const admin = "authz.v1.AdminService";
  it("a transfer of B's avatar, or to a membership of B, is refused; B's owner stays", async () => {
    expectDenied(await call(admin, "TransferOwnership", { avatar_id: VB, from_membership_id: MB1, to_membership_id: MB2 }, keys.alpha as string));
    expectDenied(await call(admin, "TransferOwnership", { avatar_id: VA, from_membership_id: MA1, to_membership_id: MB2 }, keys.alpha as string));
    expect(await count(`select count(*)::int as n from memberships where id = '${MB1}' and owner`)).toBe(1);
  });

  it("accept, decline, cancel and list on B's pending transfer are refused", async () => {
    const pending = await call(
      admin,
      "TransferOwnership",
      { avatar_id: VB, from_membership_id: MB1, to_membership_id: MB2, mode: "TRANSFER_MODE_REQUEST" },
      keys.root as string,
    );
    expect(pending.code, pending.message).toBe(0);
    const transferId = (pending.value?.transfer as { id: string } | undefined)?.id ?? "";
    for (const m of ["AcceptOwnershipTransfer", "DeclineOwnershipTransfer", "CancelOwnershipTransfer"]) {
      expectDenied(await call(admin, m, { transfer_id: transferId }, keys.alpha as string));
    }
    expectDenied(await call(admin, "ListOwnershipTransfers", { avatar_id: VB }, keys.alpha as string));
    expect(await count(`select count(*)::int as n from ownership_transfers where id = '${transferId}' and status = 'pending'`)).toBe(1);
  });
});

describe("rate-limit writes are confined", () => {
  const rl = "authz.v1.RateLimitService";
  it("policies are global: a bound key cannot create them; it assigns them to its own organizations only", async () => {
    expectDenied(
      await call(
        rl,
        "ManageRateLimits",
        { mutations: [{ upsert_policy: { name: "mine", scope: "organization", limit_count: 5, window_sec: 1 } }] },
        keys.alpha as string,
      ),
    );
    expectDenied(
      await call(rl, "ManageRateLimits", { mutations: [{ assign: { policy: "per-org", subject: { type: "organization", id: OB } } }] }, keys.alpha as string),
    );
    expectDenied(
      await call(rl, "ManageRateLimits", { mutations: [{ assign: { policy: "per-org", subject: { type: "user", id: UA } } }] }, keys.alpha as string),
    );
    const own = await call(
      rl,
      "ManageRateLimits",
      { mutations: [{ assign: { policy: "per-org", subject: { type: "organization", id: OA } } }] },
      keys.alpha as string,
    );
    expect(own.code, own.message).toBe(0);
  });

  it("a bound key neither assigns nor unassigns a policy of scope global, even on its own organization (its counter is every tenant's)", async () => {
    for (const kind of ["assign", "unassign"]) {
      const r = await call(
        rl,
        "ManageRateLimits",
        { mutations: [{ [kind]: { policy: "shared", subject: { type: "organization", id: OA } } }] },
        keys.alpha as string,
      );
      expectDenied(r);
      expect(r.message).toContain('"shared" of scope global');
    }
    expect(await count("select count(*)::int as n from rate_limit_assignments where policy_id = 2")).toBe(0);
    const unbound = await call(
      rl,
      "ManageRateLimits",
      { mutations: [{ assign: { policy: "shared", subject: { type: "organization", id: OA } } }] },
      keys.root as string,
    );
    expect(unbound.code, unbound.message).toBe(0);
  });
});

describe("idempotency keys belong to their caller", () => {
  it("the same key used by two callers names two requests; each caller's retry replays its own answer", async () => {
    const k = { idempotency_key: "shared-key-1" };
    const a1 = await manage([{ upsert_permission: { key: { organization_id: OA, key: "idem.alpha" } } }], keys.alpha, k);
    const r1 = await manage([{ upsert_permission: { key: { organization_id: OB, key: "idem.root" } } }], keys.root, k);
    expect(a1.code, a1.message).toBe(0);
    expect(r1.code, r1.message).toBe(0);
    const a2 = await manage([{ upsert_permission: { key: { organization_id: OA, key: "idem.alpha" } } }], keys.alpha, k);
    expect(a2.value).toEqual(a1.value);
    const other = await manage([{ upsert_permission: { key: { organization_id: OA, key: "idem.other" } } }], keys.alpha, k);
    expect(other.code).toBe(grpc.status.ALREADY_EXISTS);
  });
});

describe("the database backstop", () => {
  it("authz_assert_tenant refuses an assignment whose subject and scope lie in different tenants", async () => {
    const outcome = await t.raw
      .begin(async (tx) => {
        await tx`insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id)
                 values ('principal', ${PA}, ${AVATAR_OWNER}, 'avatar', ${VB})`;
        await tx`select authz_assert_tenant(${TA}::uuid)`;
        return "committed";
      })
      .catch((err: { code?: string }) => err.code);
    expect(outcome).toBe("42501");
  });
});
