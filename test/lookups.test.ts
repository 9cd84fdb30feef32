// LookupSubjects and LookupResources over real sockets: gRPC (unary paged and
// server streaming) and Connect (server streaming), against Check on the same
// server; paging at one revision across a write; tenancy; malformed input.
// Two tenants, a global grant to a staff member and a cross-tenant (mixed)
// global grant, an expired assignment.
import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  LookupSubjectsRequestSchema,
  LookupSubjectsResponseSchema,
  PermissionService,
  StreamLookupResourcesRequestSchema,
  StreamLookupResourcesResponseSchema,
} from "../gen/authz/v1/permission_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import type { Scope } from "../src/auth/caller.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos } from "./support/grpc-client.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const [TA, TB, OA, OB] = [id("a001", 1), id("b001", 1), id("a002", 1), id("b002", 1)];
const [UA, UB, S] = [id("a003", 1), id("b003", 1), id("c004", 1)];
const [AA, AB] = [id("a005", 1), id("b005", 1)];
const [PA, PA2, PB, PB2] = [id("a006", 1), id("a006", 2), id("b006", 1), id("b006", 2)];
const [VA, VA2, VB] = [id("a007", 1), id("a007", 2), id("b007", 1)];
const [ADMIN_A, ADMIN_B] = [id("a009", 1), id("b009", 1)];
const STAFF_GRANT = id("c012", 1);
const AVATAR_OWNER = "00000000-0000-4000-8000-00000000a002";
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
  STAFF: [{ id: S, logical_key: "staff:s" }],
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
    { id: VA2, organization_id: OA, handle: "alpha-bot-2", active: true },
    { id: VB, organization_id: OB, handle: "beta-bot", active: true },
  ],
  MEMBERSHIP: [
    { id: id("a008", 1), principal_id: PA, avatar_id: VA, owner: true, active: true, accepted_at: accepted },
    { id: id("a008", 2), principal_id: PA2, avatar_id: VA, owner: false, active: true, accepted_at: accepted },
    { id: id("a008", 3), principal_id: PA2, avatar_id: VA2, owner: true, active: true, accepted_at: accepted },
    { id: id("b008", 1), principal_id: PB, avatar_id: VB, owner: true, active: true, accepted_at: accepted },
  ],
  Role: [
    { role_id: ADMIN_A, org_id: OA, name: "Alpha admin", key: "alpha-admin" },
    { role_id: ADMIN_B, org_id: OB, name: "Beta admin", key: "beta-admin" },
  ],
  Permission: [
    { permission_id: id("a010", 1), org_id: OA, name: "secrets.read" },
    { permission_id: id("b010", 1), org_id: OB, name: "secrets.read" },
  ],
  CAPABILITY: [{ key: "avatar.transfer" }],
  RolePermission: [
    { role_id: ADMIN_A, permission_id: id("a010", 1) },
    { role_id: ADMIN_B, permission_id: id("b010", 1) },
  ],
  ROLE_PERMISSION: [{ id: id("a011", 1), role_id: AVATAR_OWNER, capability_key: "avatar.transfer" }],
  ROLE_ASSIGNMENT: [
    { id: id("a012", 1), account_id: AA, role_id: ADMIN_A, scope_type: "organization", scope_id: OA, active: true },
    // Expired: grants nothing.
    { id: id("a012", 2), subject_type: "principal", subject_id: PA2, role_id: ADMIN_A, scope_type: "organization", scope_id: OA, valid_until: accepted },
    { id: id("b012", 1), account_id: AB, role_id: ADMIN_B, scope_type: "organization", scope_id: OB, active: true },
    // Global grants: a staff member, and tenant B's account (a mixed grant, reaching tenant A's avatars too).
    { id: STAFF_GRANT, subject_type: "staff", subject_id: S, role_id: AVATAR_OWNER, scope_type: "global", active: true },
    { id: id("b012", 2), account_id: AB, role_id: AVATAR_OWNER, scope_type: "global", active: true },
  ],
};

const SUBJECTS = [
  ...[UA, UB].map((i) => ({ type: "user", id: i })),
  { type: "staff", id: S },
  ...[AA, AB].map((i) => ({ type: "account", id: i })),
  ...[PA, PA2, PB, PB2].map((i) => ({ type: "principal", id: i })),
];
const RESOURCES = [
  ...[TA, TB].map((i) => ({ type: "tenant", id: i })),
  ...[OA, OB].map((i) => ({ type: "organization", id: i })),
  ...[VA, VA2, VB].map((i) => ({ type: "avatar", id: i })),
];
const PERMISSIONS = ["secrets.read", "avatar.transfer", "nothing.here"];

let t: TestDatabase;
let app: App;
let port = 0;
let httpPort = 0;
const protos = loadProtos();
const keys: Record<string, string> = {};
type Svc = ReturnType<typeof client>;
let perms: Svc;

async function addKey(name: string, scopes: Scope[], tenant: string | null): Promise<string> {
  const { key, record } = mintApiKey(name, scopes, tenant);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${record.id}, ${name}, ${record.secretSha256}, ${record.scopes}, ${tenant})`;
  return key;
}

type Reply<T> = { code: number; message: string; reason?: string; value?: T };

function call<T>(method: string, req: unknown, key = keys.root as string): Promise<Reply<T>> {
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  return new Promise((resolve) => {
    (perms[method] as Function).call(perms, req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, value: T) =>
      resolve(err ? { code: err.code, message: err.details } : { code: 0, message: "", value }),
    );
  });
}

async function ok<T>(method: string, req: unknown, key?: string): Promise<T> {
  const r = await call<T>(method, req, key);
  expect(r.code, r.message).toBe(0);
  return r.value as T;
}

function stream<T>(method: string, req: unknown, key = keys.root as string): Promise<T[]> {
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  return new Promise((resolve, reject) => {
    const out: T[] = [];
    const s = (perms[method] as Function).call(perms, req, md, { deadline: Date.now() + 10_000 }) as grpc.ClientReadableStream<T>;
    s.on("data", (m: T) => out.push(m));
    s.on("error", reject);
    s.on("end", () => resolve(out));
  });
}

type Ref = { type: string; id: string };
type SubjectsPage = { subjects: Array<{ subject: Ref; grant?: { kind: string; id: string; role_id: string } }>; revision: string; next_page_token: string };
type ResourcesPage = { resources: Array<{ resource: Ref; grant?: { kind: string; id: string; role_id: string } }>; revision: string; next_page_token: string };
const key = (r: Ref) => `${r.type}:${r.id}`;

/** Every page of a lookup, following the tokens. */
async function allPages<P extends { next_page_token: string; revision: string }>(method: string, req: Record<string, unknown>, k?: string): Promise<P[]> {
  const pages: P[] = [];
  let token = "";
  do {
    const p: P = await ok<P>(method, { ...req, page_token: token }, k);
    pages.push(p);
    token = p.next_page_token;
  } while (token);
  return pages;
}

async function granted(subject: Ref, permission: string, resource: Ref): Promise<boolean> {
  return (await ok<{ allowed: boolean }>("Check", { subject, permission, resource })).allowed;
}

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, DATA);
  keys.alpha = await addKey("alpha", ["check"], TA);
  keys.root = await addKey("root", ["check", "admin"], null);
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  ({ grpcPort: port, httpPort } = await app.listen());
  await app.ready;
  perms = client(protos, "authz.v1.PermissionService", port);
}, 60_000);

afterAll(async () => {
  perms?.close();
  await app?.stop();
  await t?.drop();
});

describe("LookupSubjects and LookupResources agree with Check", () => {
  it("every (permission, resource): the subjects, paged by 2, are exactly those Check grants, each once, with a grant", async () => {
    let nonEmpty = 0;
    for (const permission of PERMISSIONS) {
      for (const resource of RESOURCES) {
        const pages = await allPages<SubjectsPage>("LookupSubjects", { permission, resource, page_size: 2, with_grants: true });
        const got = pages.flatMap((p) => p.subjects);
        expect(new Set(pages.map((p) => p.revision)).size).toBe(1);
        for (const s of got) expect(s.grant?.kind).toMatch(/^LOOKUP_GRANT_KIND_(ASSIGNMENT|MEMBERSHIP)$/);
        const want: string[] = [];
        for (const s of SUBJECTS) if (await granted(s, permission, resource)) want.push(key(s));
        expect(got.map((s) => key(s.subject)).sort(), `${permission} on ${key(resource)}`).toEqual(want.sort());
        if (want.length > 0) nonEmpty++;
      }
    }
    expect(nonEmpty).toBeGreaterThan(5);
  });

  it("every (subject, permission, type): the resources, paged by 1, are exactly those Check grants", async () => {
    let nonEmpty = 0;
    for (const subject of SUBJECTS) {
      for (const permission of PERMISSIONS) {
        for (const type of ["tenant", "organization", "avatar"]) {
          const pages = await allPages<ResourcesPage>("LookupResources", { subject, permission, resource_type: type, page_size: 1 });
          const got = pages.flatMap((p) => p.resources.map((r) => key(r.resource)));
          const want: string[] = [];
          for (const r of RESOURCES) if (r.type === type && (await granted(subject, permission, r))) want.push(key(r));
          expect(got.sort(), `${key(subject)} ${permission} ${type}`).toEqual(want.sort());
          if (want.length > 0) nonEmpty++;
        }
      }
    }
    expect(nonEmpty).toBeGreaterThan(5);
  });

  it("the grant named is one that gives the permission: its role holds it on the resource", async () => {
    const page = await ok<SubjectsPage>("LookupSubjects", { permission: "avatar.transfer", resource: { type: "avatar", id: VA }, with_grants: true });
    const staff = page.subjects.find((s) => s.subject.id === S);
    expect(staff?.grant).toEqual({ kind: "LOOKUP_GRANT_KIND_ASSIGNMENT", id: STAFF_GRANT, role_id: AVATAR_OWNER });
    const owner = page.subjects.find((s) => s.subject.id === PA);
    expect(owner?.grant?.kind).toMatch(/MEMBERSHIP|ASSIGNMENT/);
    const bare = await ok<SubjectsPage>("LookupSubjects", { permission: "avatar.transfer", resource: { type: "avatar", id: VA } });
    expect(bare.subjects.every((s) => s.grant === null || s.grant === undefined)).toBe(true);
  });

  it("LookupResources names a grant when asked: the staff member's global assignment, a principal's membership", async () => {
    const staff = await ok<ResourcesPage>("LookupResources", {
      subject: { type: "staff", id: S },
      permission: "avatar.transfer",
      resource_type: "avatar",
      with_grants: true,
    });
    expect(staff.resources.map((r) => r.grant)).toEqual(
      staff.resources.map(() => ({ kind: "LOOKUP_GRANT_KIND_ASSIGNMENT", id: STAFF_GRANT, role_id: AVATAR_OWNER })),
    );
    const owner = await ok<ResourcesPage>("LookupResources", {
      subject: { type: "principal", id: PA2 },
      permission: "avatar.transfer",
      resource_type: "avatar",
      with_grants: true,
    });
    expect(owner.resources).toEqual([
      { resource: { type: "avatar", id: VA2 }, grant: { kind: "LOOKUP_GRANT_KIND_MEMBERSHIP", id: id("a008", 3), role_id: AVATAR_OWNER } },
    ]);
    const bare = await ok<ResourcesPage>("LookupResources", {
      subject: { type: "principal", id: PA2 },
      permission: "avatar.transfer",
      resource_type: "avatar",
    });
    expect(bare.resources[0]?.grant ?? null).toBeNull();
  });

  it("subject_type limits the answer", async () => {
    const page = await ok<SubjectsPage>("LookupSubjects", { permission: "avatar.transfer", resource: { type: "avatar", id: VA }, subject_type: "principal" });
    expect(page.subjects.length).toBeGreaterThan(0);
    expect(page.subjects.every((s) => s.subject.type === "principal")).toBe(true);
  });
});

describe("streaming", () => {
  it("gRPC and Connect streams give the paged answer, at one revision", async () => {
    const req = { permission: "avatar.transfer", resource: { type: "avatar", id: VA } };
    const paged = (await allPages<SubjectsPage>("LookupSubjects", { ...req, page_size: 1 })).flatMap((p) => p.subjects.map((s) => key(s.subject)));
    const viaGrpc = await stream<SubjectsPage>("StreamLookupSubjects", req);
    expect(viaGrpc.flatMap((m) => m.subjects.map((s) => key(s.subject))).sort()).toEqual([...paged].sort());
    expect(new Set(viaGrpc.map((m) => m.revision)).size).toBe(1);

    const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${httpPort}`, httpVersion: "1.1" });
    const connect = createClient(PermissionService, transport);
    const headers = { "x-api-key": keys.root as string };
    const viaConnect: string[] = [];
    for await (const m of connect.streamLookupSubjects({ ...req, resource: req.resource }, { headers })) {
      viaConnect.push(...m.subjects.map((s) => `${s.subject?.type}:${s.subject?.id}`));
    }
    expect(viaConnect.sort()).toEqual([...paged].sort());

    const resources: string[] = [];
    for await (const m of connect.streamLookupResources(
      { subject: { type: "staff", id: S }, permission: "avatar.transfer", resourceType: "avatar" },
      { headers },
    )) {
      resources.push(...m.resources.map((r) => r.resource?.id ?? ""));
    }
    expect(resources.sort()).toEqual([VA, VA2, VB].sort());
    const viaGrpcResources = await stream<ResourcesPage>("StreamLookupResources", {
      subject: { type: "staff", id: S },
      permission: "avatar.transfer",
      resource_type: "avatar",
    });
    expect(viaGrpcResources.flatMap((m) => m.resources.map((r) => r.resource.id)).sort()).toEqual([VA, VA2, VB].sort());
  });

  it("an empty answer is one message carrying the revision", async () => {
    const msgs = await stream<SubjectsPage>("StreamLookupSubjects", { permission: "nothing.here", resource: { type: "avatar", id: VA } });
    expect(msgs).toHaveLength(1);
    expect(msgs[0]?.subjects).toEqual([]);
    expect(msgs[0]?.revision).toMatch(/^\d+$/);
  });
});

/** A gRPC-Web call (binary): its data frames and its grpc-status. */
async function grpcWebCall(path: string, body: Uint8Array): Promise<{ status: string; frames: Uint8Array[] }> {
  const framed = new Uint8Array(5 + body.length);
  new DataView(framed.buffer).setUint32(1, body.length);
  framed.set(body, 5);
  const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "x-api-key": keys.root as string },
    body: framed,
    signal: AbortSignal.timeout(10_000),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const frames: Uint8Array[] = [];
  let status = res.headers.get("grpc-status") ?? "";
  for (let at = 0; at + 5 <= bytes.length; ) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    const data = bytes.subarray(at + 5, at + 5 + len);
    if (((bytes[at] as number) & 0x80) === 0) frames.push(data);
    else status = /grpc-status:\s*(\d+)/i.exec(new TextDecoder().decode(data))?.[1] ?? status;
    at += 5 + len;
  }
  return { status, frames };
}

describe("Connect (unary JSON) and gRPC-Web (unary and streaming) give gRPC's answer", () => {
  it("LookupSubjects and StreamLookupResources", async () => {
    const req = { permission: "avatar.transfer", resource: { type: "avatar", id: VA } };
    const viaGrpc = (await ok<SubjectsPage>("LookupSubjects", { ...req, page_size: 100 })).subjects.map((s) => key(s.subject)).sort();
    expect(viaGrpc.length).toBeGreaterThan(2);

    const res = await fetch(`http://127.0.0.1:${httpPort}/authz.v1.PermissionService/LookupSubjects`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": keys.root as string },
      body: JSON.stringify({ ...req, pageSize: 100 }),
    });
    expect(res.status).toBe(200);
    const json = (await res.json()) as { subjects: Array<{ subject: Ref }>; nextPageToken: string };
    expect(json.subjects.map((s) => key(s.subject)).sort()).toEqual(viaGrpc);
    expect(json.nextPageToken).toBe("");

    const web = await grpcWebCall(
      "/authz.v1.PermissionService/LookupSubjects",
      toBinary(LookupSubjectsRequestSchema, create(LookupSubjectsRequestSchema, { ...req, pageSize: 100 })),
    );
    expect(web.status).toBe("0");
    const page = fromBinary(LookupSubjectsResponseSchema, web.frames[0] as Uint8Array);
    expect(page.subjects.map((s) => `${s.subject?.type}:${s.subject?.id}`).sort()).toEqual(viaGrpc);

    const streamed = await grpcWebCall(
      "/authz.v1.PermissionService/StreamLookupResources",
      toBinary(
        StreamLookupResourcesRequestSchema,
        create(StreamLookupResourcesRequestSchema, { subject: { type: "staff", id: S }, permission: "avatar.transfer", resourceType: "avatar" }),
      ),
    );
    expect(streamed.status).toBe("0");
    const ids = streamed.frames.flatMap((f) => fromBinary(StreamLookupResourcesResponseSchema, f).resources.map((r) => r.resource?.id ?? ""));
    expect(ids.sort()).toEqual([VA, VA2, VB].sort());
  });
});

describe("paging at one revision", () => {
  it("later pages answer at the first page's revision after a write; a new lookup sees the write", async () => {
    const req = { permission: "avatar.transfer", resource: { type: "avatar", id: VA }, page_size: 1 };
    const first = await ok<SubjectsPage>("LookupSubjects", req);
    const before = (await allPages<SubjectsPage>("LookupSubjects", { ...req, page_size: 100 })).flatMap((p) => p.subjects.map((s) => key(s.subject)));
    expect(before).toContain(`staff:${S}`);
    // Revoke the staff member's global grant, and wait until the server answers from the write.
    const [w] = await t.raw<{ revision: string }[]>`with u as (update role_assignments set active = false where id = ${STAFF_GRANT} returning 1)
      select authz_stamp()::text as revision from u`;
    const after = await ok<{ allowed: boolean; revision: string }>("Check", {
      subject: { type: "staff", id: S },
      permission: "avatar.transfer",
      resource: { type: "avatar", id: VA },
      consistency: { fully_consistent: true },
    });
    expect(after.allowed).toBe(false);
    expect(BigInt(after.revision)).toBeGreaterThan(BigInt(first.revision));
    expect(w).toBeDefined();

    const rest: SubjectsPage[] = [];
    let token = first.next_page_token;
    while (token) {
      const p = await ok<SubjectsPage>("LookupSubjects", { ...req, page_token: token });
      rest.push(p);
      token = p.next_page_token;
    }
    expect(rest.every((p) => p.revision === first.revision)).toBe(true);
    const all = [first, ...rest].flatMap((p) => p.subjects.map((s) => key(s.subject)));
    expect(all.sort()).toEqual([...before].sort());
    const fresh = await ok<SubjectsPage>("LookupSubjects", { ...req, page_size: 100, consistency: { at_least_as_fresh: after.revision } });
    expect(fresh.subjects.map((s) => key(s.subject))).not.toContain(`staff:${S}`);
    // Restore.
    await t.raw`update role_assignments set active = true where id = ${STAFF_GRANT}`;
  });
});

describe("paging across replicas", () => {
  it("another replica at the same revision answers the next page; at another revision it is ABORTED (LOOKUP_EXPIRED)", async () => {
    const other = createApp(
      loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
      createLogger("silent"),
    );
    const { grpcPort } = await other.listen();
    await other.ready;
    const perms2 = client(protos, "authz.v1.PermissionService", grpcPort);
    const on2 = <T>(req: unknown) =>
      new Promise<Reply<T>>((resolve) => {
        const md = new grpc.Metadata();
        md.set("x-api-key", keys.root as string);
        (perms2.LookupSubjects as Function).call(perms2, req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, value: T) =>
          resolve(err ? { code: err.code, message: err.details } : { code: 0, message: "", value }),
        );
      });
    try {
      const req = { permission: "avatar.transfer", resource: { type: "avatar", id: VA }, page_size: 1, consistency: { fully_consistent: true } };
      const first = await ok<SubjectsPage>("LookupSubjects", req);
      // The other replica at the same revision: it walks to the offset of the token.
      await on2<SubjectsPage>({ ...req, page_size: 100 });
      const same = await on2<SubjectsPage>({ ...req, page_token: first.next_page_token });
      expect(same.code, same.message).toBe(0);
      expect(same.value?.revision).toBe(first.revision);
      const mine = await ok<SubjectsPage>("LookupSubjects", { ...req, page_token: first.next_page_token });
      expect(same.value?.subjects).toEqual(mine.subjects);
      // A token of a later revision, served first here; then a write moves the other replica on past it.
      await t.raw`insert into staff (logical_key) values ('staff:replica-probe-1')`;
      const later = await ok<SubjectsPage>("LookupSubjects", req);
      expect(BigInt(later.revision)).toBeGreaterThan(BigInt(first.revision));
      await t.raw`insert into staff (logical_key) values ('staff:replica-probe-2')`;
      const moved = await on2<SubjectsPage>({ ...req, page_size: 100 });
      expect(BigInt(moved.value?.revision ?? "0")).toBeGreaterThan(BigInt(later.revision));
      const expired = await on2<SubjectsPage>({ ...req, page_token: later.next_page_token });
      expect(expired.code).toBe(grpc.status.ABORTED);
      expect(expired.message).toMatch(/restart it without a page_token/);
      // The replica that served the first page still holds its revision.
      const here = await call<SubjectsPage>("LookupSubjects", { ...req, page_token: later.next_page_token });
      expect(here.code).toBe(0);
      expect(here.value?.revision).toBe(later.revision);
    } finally {
      perms2.close();
      await other.stop();
    }
  });
});

describe("tenancy", () => {
  it("a tenant-bound key cannot look up on another tenant's resource or subject", async () => {
    const r1 = await call("LookupSubjects", { permission: "avatar.transfer", resource: { type: "avatar", id: VB } }, keys.alpha);
    expect(r1.code).toBe(grpc.status.PERMISSION_DENIED);
    const r2 = await call("LookupResources", { subject: { type: "principal", id: PB }, permission: "avatar.transfer", resource_type: "avatar" }, keys.alpha);
    expect(r2.code).toBe(grpc.status.PERMISSION_DENIED);
    await expect(
      stream("StreamLookupSubjects", { permission: "avatar.transfer", resource: { type: "organization", id: OB } }, keys.alpha),
    ).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  });

  it("it sees its tenant's subjects and those of no tenant, and only its tenant's resources", async () => {
    const req = { permission: "avatar.transfer", resource: { type: "avatar", id: VA }, consistency: { fully_consistent: true } };
    const root = (await ok<SubjectsPage>("LookupSubjects", { ...req, page_size: 100 })).subjects.map((s) => key(s.subject));
    const alpha = (await ok<SubjectsPage>("LookupSubjects", { ...req, page_size: 100 }, keys.alpha)).subjects.map((s) => key(s.subject));
    // Tenant B's account and principals hold a (mixed) global grant: root sees them, the alpha key does not.
    expect(root).toEqual(expect.arrayContaining([`account:${AB}`, `principal:${PB}`, `principal:${PB2}`, `staff:${S}`, `principal:${PA}`]));
    expect(alpha.sort()).toEqual(root.filter((k) => ![`account:${AB}`, `principal:${PB}`, `principal:${PB2}`].includes(k)).sort());
    const staffRoot = await ok<ResourcesPage>("LookupResources", { subject: { type: "staff", id: S }, permission: "avatar.transfer", resource_type: "avatar" });
    const staffAlpha = await ok<ResourcesPage>(
      "LookupResources",
      { subject: { type: "staff", id: S }, permission: "avatar.transfer", resource_type: "avatar" },
      keys.alpha,
    );
    expect(staffRoot.resources.map((r) => r.resource.id).sort()).toEqual([VA, VA2, VB].sort());
    expect(staffAlpha.resources.map((r) => r.resource.id).sort()).toEqual([VA, VA2].sort());
    const tenants = await ok<ResourcesPage>(
      "LookupResources",
      { subject: { type: "staff", id: S }, permission: "avatar.transfer", resource_type: "tenant" },
      keys.alpha,
    );
    expect(tenants.resources.every((r) => r.resource.id === TA)).toBe(true);
  });
});

describe("malformed input is INVALID_ARGUMENT", () => {
  const base = { permission: "avatar.transfer", resource: { type: "avatar", id: VA } };
  it.each([
    ["page_size too large", "LookupSubjects", { ...base, page_size: 1001 }],
    ["negative page_size", "LookupResources", { subject: { type: "staff", id: S }, permission: "p", resource_type: "avatar", page_size: -1 }],
    ["a garbage page_token", "LookupSubjects", { ...base, page_token: "not-a-token" }],
    ["an unknown subject_type", "LookupSubjects", { ...base, subject_type: "robot" }],
    ["no resource", "LookupSubjects", { permission: "p" }],
    ["no permission", "LookupSubjects", { resource: base.resource }],
    ["a resource id that is no UUID", "LookupSubjects", { ...base, resource: { type: "avatar", id: "x" } }],
    ["no resource_type", "LookupResources", { subject: { type: "staff", id: S }, permission: "p" }],
    ["an unknown resource_type", "LookupResources", { subject: { type: "staff", id: S }, permission: "p", resource_type: "planet" }],
    ["no subject", "LookupResources", { permission: "p", resource_type: "avatar" }],
  ])("%s", async (_why, method, req) => {
    const r = await call(method, req);
    expect(r.code, r.message).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("a page_token of another request", async () => {
    const first = await ok<SubjectsPage>("LookupSubjects", { ...base, page_size: 1 });
    expect(first.next_page_token).not.toBe("");
    const r = await call("LookupSubjects", { ...base, page_size: 2, page_token: first.next_page_token });
    expect(r.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.message).toMatch(/different/);
    const other = await call("LookupSubjects", { ...base, page_size: 1, page_token: first.next_page_token }, keys.alpha);
    expect(other.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});
