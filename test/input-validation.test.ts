// Input that passes the byte-level bounds (test/input-bounds.test.ts) but is
// still not valid: tampered page tokens, out-of-range Timestamps, page sizes,
// non-finite Struct numbers, and what NOT_FOUND messages quote of the input.
// Each case runs against the real server over a socket (gRPC, and Connect
// where cheap) and expects INVALID_ARGUMENT naming the field, never INTERNAL
// or SQL text.
import { readFileSync } from "node:fs";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListOwnershipTransfersRequestSchema, ManageRolesRequestSchema } from "../gen/authz/v1/admin_service_pb.js";
import {
  GetOrganizationRequestSchema,
  GetStaffRequestSchema,
  GetTenantRequestSchema,
  GetUserRequestSchema,
  ListOrganizationsRequestSchema,
  ListRateLimitAssignmentsRequestSchema,
  ListRateLimitPoliciesRequestSchema,
  ListUsersRequestSchema,
  ManageDirectoryRequestSchema,
} from "../gen/authz/v1/directory_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { DEMO } from "./support/demo-decisions.js";
import { type Answer, connectUnary, frame, grpcCall, grpcWeb } from "./support/edge-calls.js";

let t: TestDatabase;
let app: App;
let base = "";
let key = "";
let client: grpc.Client;
const auth = () => ({ "x-api-key": key });

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  const minted = mintApiKey("input-admin", ["check", "ratelimit", "admin"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes) values (${minted.record.id}, 'input-admin', ${minted.record.secretSha256}, ${minted.record.scopes})`;
  key = minted.key;
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  const ports = await app.listen();
  await app.ready;
  base = `http://127.0.0.1:${ports.httpPort}`;
  client = new grpc.Client(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  client?.close();
  await app?.stop();
  await t?.drop();
});

/** A gRPC call with a message built from its schema. */
const call = <D extends DescMessage>(path: string, schema: D, init: MessageInitShape<D>): Promise<Answer> =>
  grpcCall(client, path, toBinary(schema, create(schema, init)), auth());

/** A Connect JSON call; the answer's body when it succeeds. */
async function connectJson(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...auth() },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** No SQL or driver text in a message a caller sees. */
const SQL_TEXT = /sql|syntax|select |where |uuid:|type integer|out of range for type|22P02|22003|22008|22009/i;

function expectInvalid(a: Answer, field: string, reason = "INVALID_ARGUMENT"): void {
  expect({ code: a.code, reason: a.reason, field: a.metadata?.["field"] }).toEqual({ code: "INVALID_ARGUMENT", reason, field });
  expect(a.message).toContain(field);
  expect(a.message).not.toMatch(SQL_TEXT);
}

describe("directory page tokens", () => {
  const FOREIGN = "page_token is not a token of this request";
  const tamper = (token: string, k: unknown): string => {
    const t = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Record<string, unknown>;
    return Buffer.from(JSON.stringify({ ...t, k })).toString("base64url");
  };
  async function firstToken(rpc: string): Promise<string> {
    const page = await connectJson(`/authz.v1.DirectoryService/${rpc}`, { pageSize: 1 });
    expect(page.status).toBe(200);
    const token = page.body["nextPageToken"];
    expect(typeof token).toBe("string");
    return token as string;
  }

  const cases: Array<[string, DescMessage, unknown[]]> = [
    ["ListUsers", ListUsersRequestSchema, ["zzz", "", "\u0000", 5, null, "00000003-0000-4000-8000-00000000000"]],
    ["ListOrganizations", ListOrganizationsRequestSchema, ["abc", "' or 1=1 --"]],
    ["ListRateLimitPolicies", ListRateLimitPoliciesRequestSchema, ["abc", "1.5", "0x10", "1e3", "99999999999999999999", "2147483648", " 1", ""]],
    // A bigint key: past int8, or not an integer at all.
    ["ListRateLimitAssignments", ListRateLimitAssignmentsRequestSchema, ["abc", "1.5", "1e3", "9223372036854775808", "-9223372036854775809", "01", " 1", ""]],
  ];
  for (const [rpc, schema, keys] of cases) {
    it(`${rpc}: a token whose key is not a key of the listing is refused like a foreign token`, async () => {
      const token = await firstToken(rpc);
      // The untouched token still pages.
      expect((await call(`/authz.v1.DirectoryService/${rpc}`, schema, { pageSize: 1, pageToken: token } as never)).code).toBe("OK");
      for (const k of keys) {
        const a = await call(`/authz.v1.DirectoryService/${rpc}`, schema, { pageSize: 1, pageToken: tamper(token, k) } as never);
        expectInvalid(a, "page_token");
        expect(a.message).toContain(FOREIGN);
      }
      const viaConnect = await connectUnary(
        `${base}/authz.v1.DirectoryService/${rpc}`,
        JSON.stringify({ pageSize: 1, pageToken: tamper(token, keys[0]) }),
        "application/json",
        auth(),
      );
      expectInvalid(viaConnect, "page_token");
    });
  }
});

describe("Timestamps", () => {
  const MEMBERSHIP = "00000008-0000-4000-8000-000000000001";
  const MANAGE_DIRECTORY = "/authz.v1.DirectoryService/ManageDirectory";
  const MANAGE_ROLES = "/authz.v1.AdminService/ManageRoles";
  type Ts = { seconds: bigint; nanos?: number };
  const assignRole = (validUntil: Ts) =>
    toBinary(
      ManageRolesRequestSchema,
      create(ManageRolesRequestSchema, {
        mutations: [
          {
            mutation: {
              case: "assignRole",
              value: {
                subject: { type: "user", id: DEMO.user.alice },
                role: { ref: { case: "key", value: { organizationId: DEMO.org.eng, key: "avatar_member" } } },
                scope: { type: "organization", id: DEMO.org.eng },
                validUntil,
              },
            },
          },
        ],
      }),
    );
  const directory = (mutation: MessageInitShape<typeof ManageDirectoryRequestSchema>["mutations"]) =>
    toBinary(ManageDirectoryRequestSchema, create(ManageDirectoryRequestSchema, { mutations: mutation }));

  const outOfRange: Array<[string, Ts]> = [
    ["year 10000", { seconds: 253_402_300_800n }],
    ["the largest Date", { seconds: 8_640_000_000_000n }],
    ["past the largest Date", { seconds: 8_640_000_000_001n }],
    ["year -248", { seconds: -70_000_000_000n }],
    ["the smallest Date", { seconds: -8_640_000_000_000n }],
    ["year 0", { seconds: -62_135_596_801n }],
  ];

  it("outside 0001-01-01..9999-12-31 is INVALID_ARGUMENT naming the field, on gRPC, gRPC-Web and Connect", async () => {
    const field = "mutations[0].assign_role.valid_until";
    for (const [what, ts] of outOfRange) {
      const body = assignRole(ts);
      const answers = {
        grpc: await grpcCall(client, MANAGE_ROLES, body, auth()),
        connect: await connectUnary(`${base}${MANAGE_ROLES}`, body, "application/proto", auth()),
        "grpc-web": await grpcWeb(`${base}${MANAGE_ROLES}`, frame(0, body), auth()),
      };
      for (const [protocol, a] of Object.entries(answers)) {
        expect({ what, protocol, code: a.code }).toEqual({ what, protocol, code: "INVALID_ARGUMENT" });
        expectInvalid(a, field);
        expect(a.message).toBe(`${field} must be a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z`);
      }
    }
  });

  it("nanos outside 0..999999999 is INVALID_ARGUMENT naming the nanos", async () => {
    for (const nanos of [1_000_000_000, -1, 2_147_483_647, -2_147_483_648]) {
      const a = await grpcCall(client, MANAGE_ROLES, assignRole({ seconds: 1_900_000_000n, nanos }), auth());
      expectInvalid(a, "mutations[0].assign_role.valid_until.nanos");
    }
  });

  it("every Timestamp field of ManageDirectory is bounded", async () => {
    const bad = { seconds: 253_402_300_800n };
    const cases: Array<[string, MessageInitShape<typeof ManageDirectoryRequestSchema>["mutations"]]> = [
      ["mutations[0].upsert_user.created_at", [{ mutation: { case: "upsertUser", value: { id: DEMO.user.alice, createdAt: bad } } }]],
      ["mutations[0].upsert_user.last_active_at", [{ mutation: { case: "upsertUser", value: { id: DEMO.user.alice, lastActiveAt: bad } } }]],
      ["mutations[0].set_membership_valid_until.valid_until", [{ mutation: { case: "setMembershipValidUntil", value: { id: MEMBERSHIP, validUntil: bad } } }]],
      ["mutations[0].accept_membership.accepted_at", [{ mutation: { case: "acceptMembership", value: { id: MEMBERSHIP, acceptedAt: bad } } }]],
      ["mutations[0].accept_principal.accepted_at", [{ mutation: { case: "acceptPrincipal", value: { id: DEMO.principal.bobEng, acceptedAt: bad } } }]],
      ["mutations[0].upsert_principal.valid_until", [{ mutation: { case: "upsertPrincipal", value: { id: DEMO.principal.bobEng, validUntil: bad } } }]],
      ["mutations[0].upsert_principal.accepted_at", [{ mutation: { case: "upsertPrincipal", value: { id: DEMO.principal.bobEng, acceptedAt: bad } } }]],
      [
        "mutations[0].invite_membership.valid_until",
        [
          {
            mutation: {
              case: "inviteMembership",
              value: { avatarId: "00000007-0000-4000-8000-000000000001", principalId: DEMO.principal.bobEng, validUntil: bad },
            },
          },
        ],
      ],
    ];
    for (const [field, mutations] of cases) expectInvalid(await grpcCall(client, MANAGE_DIRECTORY, directory(mutations), auth()), field);
  });

  it("the ends of the range are accepted and stored", async () => {
    const set = (validUntil: Ts) => directory([{ mutation: { case: "setMembershipValidUntil", value: { id: MEMBERSHIP, validUntil } } }]);
    const stored = async () =>
      (
        await t.raw<
          { v: string }[]
        >`select to_char(valid_until at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as v from memberships where id = ${MEMBERSHIP}`
      )[0]?.v;
    expect(await grpcCall(client, MANAGE_DIRECTORY, set({ seconds: 253_402_300_799n, nanos: 999_999_999 }), auth())).toMatchObject({ code: "OK" });
    expect(await stored()).toMatch(/^9999-12-31T23:59:59\.999/);
    expect(await grpcCall(client, MANAGE_DIRECTORY, set({ seconds: -62_135_596_800n }), auth())).toMatchObject({ code: "OK" });
    expect(await stored()).toBe("0001-01-01T00:00:00.000000");
    await t.raw`update memberships set valid_until = null where id = ${MEMBERSHIP}`;
  });
});

describe("google.protobuf.Struct numbers", () => {
  const MANAGE_DIRECTORY = "/authz.v1.DirectoryService/ManageDirectory";
  const upsertOrg = (metadata: Record<string, unknown>) =>
    toBinary(
      ManageDirectoryRequestSchema,
      create(ManageDirectoryRequestSchema, {
        mutations: [{ mutation: { case: "upsertOrganization", value: { id: DEMO.org.eng, metadata: metadata as never } } }],
      }),
    );

  it("NaN and ±Infinity are INVALID_ARGUMENT naming the field, not stored as null", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ k: Number.NaN }, "mutations[0].upsert_organization.metadata.k"],
      [{ k: Number.POSITIVE_INFINITY }, "mutations[0].upsert_organization.metadata.k"],
      [{ a: { b: [1, Number.NEGATIVE_INFINITY] } }, "mutations[0].upsert_organization.metadata.a.b[1]"],
    ];
    for (const [metadata, field] of cases) {
      const a = await grpcCall(client, MANAGE_DIRECTORY, upsertOrg(metadata), auth());
      expectInvalid(a, field);
    }
    const json = `{"mutations":[{"upsertOrganization":{"id":"${DEMO.org.eng}","metadata":{"k":1e999}}}]}`;
    expectInvalid(await connectUnary(`${base}${MANAGE_DIRECTORY}`, json, "application/json", auth()), "mutations[0].upsert_organization.metadata.k");
    const [row] = await t.raw<{ m: string }[]>`select metadata::text as m from organizations where id = ${DEMO.org.eng}`;
    expect(row?.m ?? "").not.toContain("null");
    // Finite numbers still pass.
    expect(await grpcCall(client, MANAGE_DIRECTORY, upsertOrg({ k: 1.5e300 }), auth())).toMatchObject({ code: "OK" });
  });
});

describe("page sizes", () => {
  const AVATAR = "00000007-0000-4000-8000-000000000001";

  it("ListOwnershipTransfers takes 0..1000 like every other list, and refuses more", async () => {
    for (const pageSize of [1001, 2_147_483_647, -1]) {
      const a = await call("/authz.v1.AdminService/ListOwnershipTransfers", ListOwnershipTransfersRequestSchema, { avatarId: AVATAR, pageSize });
      expectInvalid(a, "page_size");
      expect(a.message).toBe("page_size must be 0 (the default, 50) to 1000");
      const other = await call("/authz.v1.DirectoryService/ListUsers", ListUsersRequestSchema, { pageSize });
      expectInvalid(other, "page_size");
    }
    for (const pageSize of [0, 1, 1000]) {
      expect((await call("/authz.v1.AdminService/ListOwnershipTransfers", ListOwnershipTransfersRequestSchema, { avatarId: AVATAR, pageSize })).code).toBe(
        "OK",
      );
    }
    const viaConnect = await connectUnary(
      `${base}/authz.v1.AdminService/ListOwnershipTransfers`,
      JSON.stringify({ avatarId: AVATAR, pageSize: 1001 }),
      "application/json",
      auth(),
    );
    expectInvalid(viaConnect, "page_size");
  });
});

describe("NOT_FOUND messages", () => {
  it("quote a short printable prefix of the key they were asked for, naming the field", async () => {
    const cases: Array<[string, MessageInitShape<DescMessage>, string, DescMessage]> = [
      ["GetTenant", { by: { case: "slug", value: "s".repeat(4000) } }, "slug", GetTenantRequestSchema],
      ["GetUser", { by: { case: "email", value: `\u202e${"a".repeat(4000)}` } }, "email", GetUserRequestSchema],
      ["GetUser", { by: { case: "logicalKey", value: `x\u0007\u200f${"b".repeat(4000)}` } }, "logical_key", GetUserRequestSchema],
      ["GetStaff", { by: { case: "logicalKey", value: "\u202ac".repeat(1000) } }, "logical_key", GetStaffRequestSchema],
      ["GetOrganization", { slug: `\u2066${"o".repeat(4000)}` }, "slug", GetOrganizationRequestSchema],
    ];
    for (const [rpc, init, field, schema] of cases) {
      const a = await call(`/authz.v1.DirectoryService/${rpc}`, schema, init as never);
      expect({ rpc, code: a.code, reason: a.reason }).toEqual({ rpc, code: "NOT_FOUND", reason: "NOT_FOUND" });
      expect(a.message).toContain(` with ${field} "`);
      expect(a.message.length).toBeLessThan(120);
      expect(a.message).toMatch(/^[\x20-\x7e…]+$/);
    }
    const tenant = await call("/authz.v1.DirectoryService/GetTenant", GetTenantRequestSchema, { by: { case: "slug", value: "s".repeat(4000) } });
    expect(tenant.message).toBe(`tenant with slug "${"s".repeat(64)}…" not found`);
    const user = await call("/authz.v1.DirectoryService/GetUser", GetUserRequestSchema, { by: { case: "email", value: `\u202e${"a".repeat(4000)}` } });
    expect(user.message).toBe(`user with email "?${"a".repeat(63)}…" not found`);
    // An id is named as it is.
    const missing = "00000003-0000-4000-8000-0000000000ff";
    const byId = await call("/authz.v1.DirectoryService/GetUser", GetUserRequestSchema, { by: { case: "id", value: missing } });
    expect(byId).toMatchObject({ code: "NOT_FOUND", message: `user ${missing} not found` });
    const viaConnect = await connectUnary(
      `${base}/authz.v1.DirectoryService/GetTenant`,
      JSON.stringify({ slug: "\u202e".repeat(1300) }),
      "application/json",
      auth(),
    );
    expect(viaConnect).toMatchObject({ code: "NOT_FOUND", message: `tenant with slug "${"?".repeat(64)}…" not found` });
  });
});
