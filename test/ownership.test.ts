// Avatar ownership transfers: every rule of TransferOwnership and the
// Accept/Decline/Cancel/List RPCs, the database invariant, the change log
// (a Check with the returned token), expiry, and a race of 1000+ concurrent
// transfers through the real gRPC server and the store.
import { readFileSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { loadConfig } from "../src/config.js";
import { AuthzError, type ErrorCode } from "../src/errors.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import {
  acceptOwnershipTransfer,
  cancelOwnershipTransfer,
  declineOwnershipTransfer,
  expirePendingTransfers,
  listOwnershipTransfers,
  type TransferOwnershipInput,
  transferOwnership,
} from "../src/store/ownership.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import type { SqlClient } from "../src/store/sql.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { client, loadProtos, unary } from "./support/grpc-client.js";

// The demo directory (examples/demo.json).
const AV = (n: number) => `00000007-0000-4000-8000-00000000000${n}`;
const ACME_BOT = AV(1); // owner m02 (alice); m01 bob, m03 carol, m04 dave (locked)
const ENG_NEWS = AV(2); // owner m05 (carol); m06 alice, m07 bob (not accepted), m08 erin (disabled)
const SALES_DESK = AV(3); // owner m09 (frank); m10 grace, m11 heidi (membership expired)
const ENG_CHANGELOG = AV(4); // inactive; owner m12 (alice)
const M = (n: number) => `00000008-0000-4000-8000-0000000000${String(n).padStart(2, "0")}`;
const P = (n: number) => `00000006-0000-4000-8000-0000000000${String(n).padStart(2, "0")}`;
const ALICE_P = P(1);
const BOB_P = P(2);
// Memberships and a principal added for the rules the demo does not cover.
const X = (n: number) => `0000aaaa-0000-4000-8000-0000000000${String(n).padStart(2, "0")}`;
const STAFF_M = X(1); // staff sam (p12) on acme-bot: can act
const INACTIVE_M = X(2); // staff tess (p13) on acme-bot, membership inactive
const PRINCIPAL_EXPIRED_M = X(3); // carol's contractor principal p09 (expired) on acme-bot
const PRINCIPAL_INACTIVE_M = X(4); // grace's archived principal p11 (inactive) on sales-desk
const PRINCIPAL_UNACCEPTED_M = X(5); // bob's sales principal p10 (not accepted) on sales-desk
const ACCOUNT_INACTIVE_P = X(6); // frank in the inactive sales-archive account
const ACCOUNT_INACTIVE_M = X(7); // ... on sales-desk
const FUTURE_M = X(8); // alice on sales-desk, accepted only tomorrow
const MISSING = "0000dead-0000-4000-8000-000000000001";

const DAY_MS = 24 * 3600 * 1000;
const OPTS = { defaultRequestTtlMs: 7 * DAY_MS };

let t: TestDatabase;
let app: App;
let port = 0;
const protos = loadProtos();
type Svc = ReturnType<typeof client>;
let admin: Svc;
let perms: Svc;

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  await t.raw.begin(async (sql) => {
    await sql`insert into principals (id, account_id, subject_type, subject_id, accepted_at) values
      (${ACCOUNT_INACTIVE_P}, '00000005-0000-4000-8000-000000000004', 'user', '00000003-0000-4000-8000-000000000006', now() - interval '1 day')`;
    await sql`insert into memberships (id, principal_id, avatar_id, active, accepted_at) values
      (${STAFF_M}, ${P(12)}, ${ACME_BOT}, true, now() - interval '1 day'),
      (${INACTIVE_M}, ${P(13)}, ${ACME_BOT}, false, now() - interval '1 day'),
      (${PRINCIPAL_EXPIRED_M}, ${P(9)}, ${ACME_BOT}, true, now() - interval '1 day'),
      (${PRINCIPAL_INACTIVE_M}, ${P(11)}, ${SALES_DESK}, true, now() - interval '1 day'),
      (${PRINCIPAL_UNACCEPTED_M}, ${P(10)}, ${SALES_DESK}, true, now() - interval '1 day'),
      (${ACCOUNT_INACTIVE_M}, ${ACCOUNT_INACTIVE_P}, ${SALES_DESK}, true, now() - interval '1 day'),
      (${FUTURE_M}, ${ALICE_P}, ${SALES_DESK}, true, now() + interval '1 day')`;
  });
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "off", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  port = (await app.listen()).grpcPort;
  await app.ready;
  admin = client(protos, "authz.v1.AdminService", port);
  perms = client(protos, "authz.v1.PermissionService", port);
}, 60_000);

afterAll(async () => {
  admin?.close();
  perms?.close();
  await app?.stop();
  await t?.drop();
});

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const revision = async (): Promise<bigint> => BigInt((await t.raw<{ revision: string }[]>`select authz_stamp()::text as revision`)[0]?.revision ?? "-1");

const ownerOf = async (avatar: string, sql: postgres.Sql = t.raw): Promise<string[]> =>
  (await sql<{ id: string }[]>`select id::text as id from memberships where avatar_id = ${avatar} and owner and active`).map((r) => r.id);

const transferCount = async (): Promise<number> => Number((await t.raw`select count(*)::int as n from ownership_transfers`)[0]?.n);

const SQL_WORDS = /\b(select|insert|update|delete|from|where|returning|relation|violates)\b/i;

/** Awaits a refusal from the store: an AuthzError with the code and reason, no SQL in its message. */
async function refused(p: Promise<unknown>, code: ErrorCode, reason?: string): Promise<AuthzError> {
  const err = await p.then(
    (v) => {
      throw new Error(`expected ${code}, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthzError);
  const e = err as AuthzError;
  expect({ code: e.code, reason: e.reason }).toEqual({ code, reason: reason ?? code });
  expect(e.message).not.toMatch(SQL_WORDS);
  return e;
}

/** A gRPC failure's code name, ErrorInfo reason and metadata. */
interface Failure {
  code: string;
  reason: string;
  metadata: Record<string, string>;
  message: string;
}
function failure(err: unknown): Failure {
  const e = err as grpc.ServiceError;
  const bin = e.metadata?.get("grpc-status-details-bin")[0];
  let reason = "";
  let metadata: Record<string, string> = {};
  if (bin instanceof Buffer) {
    const status = fromBinary(StatusSchema, bin);
    const info = status.details[0] ? anyUnpack(status.details[0], ErrorInfoSchema) : undefined;
    reason = info?.reason ?? "";
    metadata = { ...(info?.metadata ?? {}) };
  }
  return { code: grpc.status[e.code] ?? String(e.code), reason, metadata, message: e.details };
}
const rpcFails = async (method: string, req: unknown): Promise<Failure> =>
  failure(
    await unary(admin, method, req).then(
      (v) => {
        throw new Error(`expected a failure, got ${JSON.stringify(v)}`);
      },
      (e: unknown) => e,
    ),
  );

interface WireTransfer {
  id: string;
  avatar_id: string;
  from_membership_id: string;
  to_membership_id: string;
  status: string;
  occurred_at: { seconds: string; nanos: number } | null;
  created_at: { seconds: string; nanos: number } | null;
  expires_at: { seconds: string; nanos: number } | null;
}
interface WireResult {
  transfer: WireTransfer;
  revision: string;
}
const wireMs = (ts: { seconds: string; nanos: number } | null): number | null => (ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6) : null);

const check = (principal: string, permission: string, avatar: string, token?: string) =>
  unary<{ allowed: boolean; revision: string; reason: string }>(perms, "Check", {
    subject: { type: "principal", id: principal },
    permission,
    resource: { type: "avatar", id: avatar },
    ...(token ? { consistency: { at_least_as_fresh: token } } : {}),
  });

const immediate = (avatarId: string, fromMembershipId: string, toMembershipId: string, extra: Partial<TransferOwnershipInput> = {}) =>
  transferOwnership(t.client, { avatarId, fromMembershipId, toMembershipId, ...extra }, OPTS);
const request = (avatarId: string, fromMembershipId: string, toMembershipId: string, extra: Partial<TransferOwnershipInput> = {}) =>
  transferOwnership(t.client, { avatarId, fromMembershipId, toMembershipId, mode: "request", ...extra }, OPTS);

// ---------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------

describe("TransferOwnership refuses, writing nothing", () => {
  it("malformed fields are INVALID_ARGUMENT naming the field", async () => {
    const cases: Array<[TransferOwnershipInput, string]> = [
      [{ avatarId: "x", fromMembershipId: M(2), toMembershipId: M(1) }, "avatar_id"],
      [{ avatarId: ACME_BOT, fromMembershipId: "", toMembershipId: M(1) }, "from_membership_id"],
      [{ avatarId: ACME_BOT, fromMembershipId: M(2), toMembershipId: "nope" }, "to_membership_id"],
      [{ avatarId: ACME_BOT, fromMembershipId: M(2), toMembershipId: M(1), requestTtlMs: 60_000 }, "request_ttl"],
      [{ avatarId: ACME_BOT, fromMembershipId: M(2), toMembershipId: M(1), mode: "request", requestTtlMs: 10 }, "request_ttl"],
      [{ avatarId: ACME_BOT, fromMembershipId: M(2), toMembershipId: M(1), idempotencyKey: "k".repeat(129) }, "idempotency_key"],
    ];
    for (const [input, field] of cases) {
      const e = await refused(transferOwnership(t.client, input, OPTS), "INVALID_ARGUMENT");
      expect(e.metadata.field).toBe(field);
      expect(e.message).toContain(field);
    }
    const viaRpc = await rpcFails("TransferOwnership", { avatar_id: ACME_BOT, from_membership_id: M(2), to_membership_id: "bad" });
    expect(viaRpc).toMatchObject({ code: "INVALID_ARGUMENT", metadata: { field: "to_membership_id" } });
  });

  it("self-transfer is INVALID_ARGUMENT with reason SELF_TRANSFER", async () => {
    const before = await revision();
    const e = await refused(immediate(ACME_BOT, M(2), M(2)), "INVALID_ARGUMENT", "SELF_TRANSFER");
    expect(e.metadata.field).toBe("to_membership_id");
    const viaRpc = await rpcFails("TransferOwnership", { avatar_id: ACME_BOT, from_membership_id: M(2), to_membership_id: M(2) });
    expect(viaRpc).toMatchObject({ code: "INVALID_ARGUMENT", reason: "SELF_TRANSFER" });
    expect(await revision()).toBe(before);
  });

  it("the avatar must exist (NOT_FOUND) and be active (FAILED_PRECONDITION)", async () => {
    const before = await revision();
    await refused(immediate(MISSING, M(2), M(1)), "NOT_FOUND", "AVATAR_NOT_FOUND");
    await refused(immediate(ENG_CHANGELOG, M(12), M(6)), "FAILED_PRECONDITION", "AVATAR_INACTIVE");
    expect(await rpcFails("TransferOwnership", { avatar_id: ENG_CHANGELOG, from_membership_id: M(12), to_membership_id: M(6) })).toMatchObject({
      code: "FAILED_PRECONDITION",
      reason: "AVATAR_INACTIVE",
    });
    expect(await revision()).toBe(before);
  });

  it("a stale from_membership_id is FAILED_PRECONDITION STALE_OWNER naming the current owner, nothing written", async () => {
    const before = await revision();
    const transfers = await transferCount();
    const e = await refused(immediate(ACME_BOT, M(1), M(3)), "FAILED_PRECONDITION", "STALE_OWNER");
    expect(e.metadata).toMatchObject({ field: "from_membership_id", current_owner_membership_id: M(2) });
    await refused(immediate(ACME_BOT, MISSING, M(3)), "NOT_FOUND", "MEMBERSHIP_NOT_FOUND");
    await refused(immediate(ACME_BOT, M(5), M(3)), "FAILED_PRECONDITION", "CROSS_AVATAR");
    expect(await rpcFails("TransferOwnership", { avatar_id: ACME_BOT, from_membership_id: M(1), to_membership_id: M(3) })).toMatchObject({
      code: "FAILED_PRECONDITION",
      reason: "STALE_OWNER",
    });
    expect(await revision()).toBe(before);
    expect(await transferCount()).toBe(transfers);
    expect(await ownerOf(ACME_BOT)).toEqual([M(2)]);
  });

  it("the target must be an active, accepted, unexpired membership of the same avatar whose principal can act", async () => {
    const before = await revision();
    const cases: Array<[avatar: string, to: string, code: ErrorCode, reason: string, principalReason?: string]> = [
      [ACME_BOT, M(6), "FAILED_PRECONDITION", "CROSS_AVATAR"],
      [ACME_BOT, MISSING, "NOT_FOUND", "MEMBERSHIP_NOT_FOUND"],
      [ACME_BOT, INACTIVE_M, "FAILED_PRECONDITION", "TARGET_INACTIVE"],
      [ENG_NEWS, M(7), "FAILED_PRECONDITION", "TARGET_NOT_ACCEPTED"],
      [SALES_DESK, FUTURE_M, "FAILED_PRECONDITION", "TARGET_NOT_ACCEPTED"],
      [SALES_DESK, M(11), "FAILED_PRECONDITION", "TARGET_EXPIRED"],
      [ACME_BOT, M(4), "FAILED_PRECONDITION", "PRINCIPAL_CANNOT_ACT", "SUBJECT_LOCKED"],
      [ENG_NEWS, M(8), "FAILED_PRECONDITION", "PRINCIPAL_CANNOT_ACT", "SUBJECT_DISABLED"],
      [ACME_BOT, PRINCIPAL_EXPIRED_M, "FAILED_PRECONDITION", "PRINCIPAL_CANNOT_ACT", "PRINCIPAL_EXPIRED"],
      [SALES_DESK, PRINCIPAL_INACTIVE_M, "FAILED_PRECONDITION", "PRINCIPAL_CANNOT_ACT", "PRINCIPAL_INACTIVE"],
      [SALES_DESK, PRINCIPAL_UNACCEPTED_M, "FAILED_PRECONDITION", "PRINCIPAL_CANNOT_ACT", "NOT_ACCEPTED"],
      [SALES_DESK, ACCOUNT_INACTIVE_M, "FAILED_PRECONDITION", "PRINCIPAL_CANNOT_ACT", "ACCOUNT_INACTIVE"],
    ];
    for (const [avatar, to, code, reason, principalReason] of cases) {
      const [from] = await ownerOf(avatar);
      for (const mode of ["immediate", "request"] as const) {
        const input = { avatarId: avatar, fromMembershipId: from as string, toMembershipId: to, mode };
        const e = await refused(transferOwnership(t.client, input, OPTS), code, reason);
        expect(e.metadata.field).toBe("to_membership_id");
        if (principalReason) expect(e.metadata.principal_reason, `${to}`).toBe(principalReason);
      }
    }
    const viaRpc = await rpcFails("TransferOwnership", { avatar_id: ACME_BOT, from_membership_id: M(2), to_membership_id: M(4) });
    expect(viaRpc).toMatchObject({ code: "FAILED_PRECONDITION", reason: "PRINCIPAL_CANNOT_ACT", metadata: { principal_reason: "SUBJECT_LOCKED" } });
    expect(await revision()).toBe(before);
  });
});

// ---------------------------------------------------------------------------
// Immediate transfers, the change log and Check
// ---------------------------------------------------------------------------

describe("an immediate transfer", () => {
  it("moves ownership in one revision, and a Check with the returned token shows it", async () => {
    // acme-bot: alice (m02) owns it; bob (m01) is a member.
    expect((await check(ALICE_P, "avatar.moderate", ACME_BOT)).allowed).toBe(true);
    expect((await check(BOB_P, "avatar.moderate", ACME_BOT)).allowed).toBe(false);
    const before = await revision();

    const res = await unary<WireResult>(admin, "TransferOwnership", {
      avatar_id: ACME_BOT,
      from_membership_id: M(2),
      to_membership_id: M(1),
      mode: "TRANSFER_MODE_IMMEDIATE",
    });
    expect(res.transfer).toMatchObject({
      avatar_id: ACME_BOT,
      from_membership_id: M(2),
      to_membership_id: M(1),
      status: "TRANSFER_STATUS_COMPLETED",
      expires_at: null,
    });
    expect(wireMs(res.transfer.occurred_at)).toBe(wireMs(res.transfer.created_at));
    expect(BigInt(res.revision)).toBe(before + 1n);
    expect(await ownerOf(ACME_BOT)).toEqual([M(1)]);

    const after = await Promise.all([
      check(ALICE_P, "avatar.moderate", ACME_BOT, res.revision),
      check(BOB_P, "avatar.moderate", ACME_BOT, res.revision),
      check(ALICE_P, "avatar.post", ACME_BOT, res.revision),
      check(BOB_P, "avatar.transfer", ACME_BOT, res.revision),
    ]);
    expect(after.map((c) => c.allowed)).toEqual([false, true, true, true]);
    for (const c of after) expect(BigInt(c.revision)).toBeGreaterThanOrEqual(BigInt(res.revision));

    // The change log holds both membership updates and the transfer at that revision.
    const changes = await t.raw<{ table_name: string; op: string; n: number }[]>`
      select table_name, op, count(*)::int as n from authz_changes where revision = ${res.revision} group by 1, 2 order by 1, 2`;
    expect(changes).toEqual([
      { table_name: "memberships", op: "UPDATE", n: 2 },
      { table_name: "ownership_transfers", op: "INSERT", n: 1 },
    ]);
  });

  it("a retry with the same idempotency key returns the first response without writing; another request with it is ALREADY_EXISTS", async () => {
    const first = await immediate(ACME_BOT, M(1), M(2), { idempotencyKey: "move-back-1" });
    expect(first.transfer.status).toBe("completed");
    const rev = await revision();
    const again = await immediate(ACME_BOT, M(1), M(2), { idempotencyKey: "move-back-1" });
    expect(again).toEqual(first);
    expect(await revision()).toBe(rev);
    expect(await ownerOf(ACME_BOT)).toEqual([M(2)]);
    const viaRpc = await unary<WireResult>(admin, "TransferOwnership", {
      avatar_id: ACME_BOT,
      from_membership_id: M(1),
      to_membership_id: M(2),
      idempotency_key: "move-back-1",
    });
    expect(viaRpc.transfer.id).toBe(first.transfer.id);
    expect(viaRpc.revision).toBe(first.revision);
    await refused(immediate(ACME_BOT, M(2), M(3), { idempotencyKey: "move-back-1" }), "ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED");
    expect(await revision()).toBe(rev);
  });

  it("ownership can go to a staff principal's membership", async () => {
    const res = await immediate(ACME_BOT, M(2), STAFF_M);
    expect(await ownerOf(ACME_BOT)).toEqual([STAFF_M]);
    await immediate(ACME_BOT, STAFF_M, M(2));
    expect(BigInt(res.revision)).toBeGreaterThan(0n);
  });
});

// ---------------------------------------------------------------------------
// Requests: accept, decline, cancel, expiry
// ---------------------------------------------------------------------------

describe("a transfer request", () => {
  it("is pending until the target accepts; a second request is TRANSFER_PENDING; double accept is refused unless replayed", async () => {
    const before = await revision();
    const res = await unary<WireResult>(admin, "TransferOwnership", {
      avatar_id: ENG_NEWS,
      from_membership_id: M(5),
      to_membership_id: M(6),
      mode: "TRANSFER_MODE_REQUEST",
      request_ttl: { seconds: "3600", nanos: 0 },
    });
    expect(res.transfer).toMatchObject({ status: "TRANSFER_STATUS_PENDING", occurred_at: null });
    expect((wireMs(res.transfer.expires_at) as number) - (wireMs(res.transfer.created_at) as number)).toBe(3600_000);
    expect(BigInt(res.revision)).toBe(before + 1n);
    expect(await ownerOf(ENG_NEWS)).toEqual([M(5)]);

    const second = await refused(request(ENG_NEWS, M(5), M(6)), "FAILED_PRECONDITION", "TRANSFER_PENDING");
    expect(second.metadata.transfer_id).toBe(res.transfer.id);

    const accepted = await unary<WireResult>(admin, "AcceptOwnershipTransfer", { transfer_id: res.transfer.id, idempotency_key: "acc-1" });
    expect(accepted.transfer).toMatchObject({ id: res.transfer.id, status: "TRANSFER_STATUS_COMPLETED" });
    expect(wireMs(accepted.transfer.occurred_at)).not.toBeNull();
    expect(await ownerOf(ENG_NEWS)).toEqual([M(6)]);
    const checks = await Promise.all([
      check(ALICE_P, "avatar.moderate", ENG_NEWS, accepted.revision),
      check(P(3), "avatar.moderate", ENG_NEWS, accepted.revision),
    ]);
    expect(checks.map((c) => c.allowed)).toEqual([true, false]);

    const rev = await revision();
    const replay = await unary<WireResult>(admin, "AcceptOwnershipTransfer", { transfer_id: res.transfer.id, idempotency_key: "acc-1" });
    expect(replay).toEqual(accepted);
    expect(await rpcFails("AcceptOwnershipTransfer", { transfer_id: res.transfer.id })).toMatchObject({
      code: "FAILED_PRECONDITION",
      reason: "TRANSFER_NOT_PENDING",
      metadata: { status: "completed" },
    });
    const otherKey = acceptOwnershipTransfer(t.client, { transferId: res.transfer.id, idempotencyKey: "acc-2" });
    await refused(otherKey, "FAILED_PRECONDITION", "TRANSFER_NOT_PENDING");
    await refused(cancelOwnershipTransfer(t.client, { transferId: res.transfer.id }), "FAILED_PRECONDITION", "TRANSFER_NOT_PENDING");
    expect(await revision()).toBe(rev);
    await immediate(ENG_NEWS, M(6), M(5));
  });

  it("the target can decline and the owner can cancel; neither moves ownership", async () => {
    const r1 = await request(ENG_NEWS, M(5), M(6));
    const declined = await unary<WireResult>(admin, "DeclineOwnershipTransfer", { transfer_id: r1.transfer.id });
    expect(declined.transfer).toMatchObject({ status: "TRANSFER_STATUS_DECLINED" });
    expect(wireMs(declined.transfer.occurred_at)).not.toBeNull();
    await refused(acceptOwnershipTransfer(t.client, { transferId: r1.transfer.id }), "FAILED_PRECONDITION", "TRANSFER_NOT_PENDING");
    await refused(declineOwnershipTransfer(t.client, { transferId: r1.transfer.id }), "FAILED_PRECONDITION", "TRANSFER_NOT_PENDING");

    const r2 = await request(ENG_NEWS, M(5), M(6));
    const cancelled = await unary<WireResult>(admin, "CancelOwnershipTransfer", { transfer_id: r2.transfer.id });
    expect(cancelled.transfer).toMatchObject({ status: "TRANSFER_STATUS_CANCELLED" });
    expect(await ownerOf(ENG_NEWS)).toEqual([M(5)]);
    await refused(acceptOwnershipTransfer(t.client, { transferId: MISSING }), "NOT_FOUND", "TRANSFER_NOT_FOUND");
    expect(await rpcFails("CancelOwnershipTransfer", { transfer_id: "x" })).toMatchObject({
      code: "INVALID_ARGUMENT",
      metadata: { field: "transfer_id" },
    });
  });

  it("an immediate transfer cancels the avatar's pending request in the same transaction", async () => {
    const pending = await request(ACME_BOT, M(2), M(1));
    const moved = await immediate(ACME_BOT, M(2), M(3));
    const [row] = await t.raw<{ status: string; occurred_at: Date }[]>`
      select status, occurred_at from ownership_transfers where id = ${pending.transfer.id}`;
    expect(row?.status).toBe("cancelled");
    expect(row?.occurred_at.getTime()).toBe(moved.transfer.occurredAt?.getTime());
    const atRevision = await t.raw`
      select 1 from authz_changes where revision = ${moved.revision} and table_name = 'ownership_transfers' and op = 'UPDATE'`;
    expect(atRevision).toHaveLength(1);
    // Accepting it now (after the owner changed) is refused.
    await refused(acceptOwnershipTransfer(t.client, { transferId: pending.transfer.id }), "FAILED_PRECONDITION", "TRANSFER_NOT_PENDING");
    await immediate(ACME_BOT, M(3), M(2));
  });

  it("accept after the owner changed outside the service is OWNER_CHANGED, and the request stays pending", async () => {
    const pending = await request(ACME_BOT, M(2), M(1));
    await t.raw.begin(async (sql) => {
      await sql`update memberships set owner = false where id = ${M(2)}`;
      await sql`update memberships set owner = true where id = ${M(3)}`;
    });
    const before = await revision();
    const e = await refused(acceptOwnershipTransfer(t.client, { transferId: pending.transfer.id }), "FAILED_PRECONDITION", "OWNER_CHANGED");
    expect(e.metadata.current_owner_membership_id).toBe(M(3));
    expect(await revision()).toBe(before);
    expect(await ownerOf(ACME_BOT)).toEqual([M(3)]);
    await cancelOwnershipTransfer(t.client, { transferId: pending.transfer.id });
    await immediate(ACME_BOT, M(3), M(2));
  });

  it("accept re-checks the target: a membership that expired meanwhile is TARGET_EXPIRED", async () => {
    const pending = await request(ACME_BOT, M(2), M(1));
    await t.raw`update memberships set valid_until = now() - interval '1 minute' where id = ${M(1)}`;
    try {
      await refused(acceptOwnershipTransfer(t.client, { transferId: pending.transfer.id }), "FAILED_PRECONDITION", "TARGET_EXPIRED");
      expect(await ownerOf(ACME_BOT)).toEqual([M(2)]);
    } finally {
      await t.raw`update memberships set valid_until = null where id = ${M(1)}`;
    }
    await cancelOwnershipTransfer(t.client, { transferId: pending.transfer.id });
  });

  it("an expired request cannot be accepted: it is recorded as expired (committed) and the call is TRANSFER_EXPIRED", async () => {
    const pending = await request(ACME_BOT, M(2), M(1), { requestTtlMs: 60_000 });
    await t.raw`update ownership_transfers set expires_at = clock_timestamp() - interval '1 second' where id = ${pending.transfer.id}`;
    // Listing already reports it as expired.
    const listed = await listOwnershipTransfers(t.client, { avatarId: ACME_BOT, pageSize: 1 });
    expect(listed.transfers[0]).toMatchObject({ id: pending.transfer.id, status: "expired" });
    expect(listed.transfers[0]?.occurredAt).toEqual(listed.transfers[0]?.expiresAt);

    const before = await revision();
    const viaRpc = await rpcFails("AcceptOwnershipTransfer", { transfer_id: pending.transfer.id });
    expect(viaRpc).toMatchObject({ code: "FAILED_PRECONDITION", reason: "TRANSFER_EXPIRED" });
    expect(await revision()).toBe(before + 1n);
    const [row] = await t.raw<{ status: string; same: boolean }[]>`
      select status, occurred_at = expires_at as same from ownership_transfers where id = ${pending.transfer.id}`;
    expect(row).toEqual({ status: "expired", same: true });
    expect(await ownerOf(ACME_BOT)).toEqual([M(2)]);
    await refused(acceptOwnershipTransfer(t.client, { transferId: pending.transfer.id }), "FAILED_PRECONDITION", "TRANSFER_EXPIRED");
  });

  it("a new request replaces a lapsed one (marked expired in the same transaction)", async () => {
    const old = await request(ACME_BOT, M(2), M(1));
    await t.raw`update ownership_transfers set expires_at = clock_timestamp() - interval '1 second' where id = ${old.transfer.id}`;
    const fresh = await request(ACME_BOT, M(2), M(3));
    const [row] = await t.raw<{ status: string }[]>`select status from ownership_transfers where id = ${old.transfer.id}`;
    expect(row?.status).toBe("expired");
    await declineOwnershipTransfer(t.client, { transferId: fresh.transfer.id });
  });

  it("the expiry sweep marks lapsed requests expired, at their expires_at", async () => {
    const a = await request(ACME_BOT, M(2), M(1), { requestTtlMs: 60_000 });
    const b = await request(ENG_NEWS, M(5), M(6), { requestTtlMs: 3_600_000 });
    expect(await expirePendingTransfers(t.client)).toBe(0);
    // At a time past a's expiry but before b's.
    expect(await expirePendingTransfers(t.client, new Date(Date.now() + 120_000))).toBe(1);
    const rows = await t.raw<{ id: string; status: string; same: boolean }[]>`
      select id::text, status, occurred_at is not distinct from expires_at as same from ownership_transfers
       where id in (${a.transfer.id}, ${b.transfer.id}) order by id`;
    expect(Object.fromEntries(rows.map((r) => [r.id, [r.status, r.same]]))).toEqual({
      [a.transfer.id]: ["expired", true],
      [b.transfer.id]: ["pending", false],
    });
    expect(await expirePendingTransfers(t.client, new Date(Date.now() + 120_000))).toBe(0);
    await cancelOwnershipTransfer(t.client, { transferId: b.transfer.id });
  });
});

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

describe("ListOwnershipTransfers", () => {
  it("pages through an avatar's history newest first", async () => {
    const all = await t.raw<{ id: string }[]>`
      select id::text from ownership_transfers where avatar_id = ${ACME_BOT} order by created_at desc, id desc`;
    expect(all.length).toBeGreaterThan(8);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await unary<{ transfers: WireTransfer[]; next_page_token: string }>(admin, "ListOwnershipTransfers", {
        avatar_id: ACME_BOT,
        page_size: 3,
        page_token: token,
      });
      expect(page.transfers.length).toBeLessThanOrEqual(3);
      for (const tr of page.transfers) expect(tr.avatar_id).toBe(ACME_BOT);
      seen.push(...page.transfers.map((tr) => tr.id));
      token = page.next_page_token;
      pages++;
    } while (token !== "" && pages < 100);
    expect(seen).toEqual(all.map((r) => r.id));
    // The demo's imported transfer is the oldest.
    expect(seen[seen.length - 1]).toBe("00000013-0000-4000-8000-000000000001");

    const first = await unary<{ transfers: WireTransfer[] }>(admin, "ListOwnershipTransfers", { avatar_id: ACME_BOT });
    expect(first.transfers).toHaveLength(Math.min(50, all.length));
    expect((await listOwnershipTransfers(t.client, { avatarId: ACME_BOT, pageSize: 1000 })).transfers).toHaveLength(all.length);
  });

  it("refuses an unknown avatar, a negative page size and a foreign or malformed token", async () => {
    expect(await rpcFails("ListOwnershipTransfers", { avatar_id: MISSING })).toMatchObject({ code: "NOT_FOUND", reason: "AVATAR_NOT_FOUND" });
    expect(await rpcFails("ListOwnershipTransfers", { avatar_id: ACME_BOT, page_size: -1 })).toMatchObject({
      code: "INVALID_ARGUMENT",
      metadata: { field: "page_size" },
    });
    const { nextPageToken } = await listOwnershipTransfers(t.client, { avatarId: ACME_BOT, pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    for (const token of [nextPageToken.slice(3), "garbage!"]) {
      await refused(listOwnershipTransfers(t.client, { avatarId: ACME_BOT, pageToken: token }), "INVALID_ARGUMENT");
    }
    const e = await refused(listOwnershipTransfers(t.client, { avatarId: ENG_NEWS, pageToken: nextPageToken }), "INVALID_ARGUMENT");
    expect(e.metadata.field).toBe("page_token");
  });
});

// ---------------------------------------------------------------------------
// The invariant in the database
// ---------------------------------------------------------------------------

describe("the database keeps exactly one owner per active avatar", () => {
  it("refuses at commit a write that leaves an active avatar without an owner", async () => {
    await expect(t.raw`update memberships set owner = false where id = ${M(2)}`).rejects.toThrow(/exactly one active owner membership, has 0/);
    await expect(t.raw`update memberships set active = false where id = ${M(2)}`).rejects.toMatchObject({
      code: "23514",
      constraint_name: "avatars_exactly_one_owner",
    });
    await expect(t.raw`delete from memberships where id = ${M(9)}`).rejects.toMatchObject({ constraint_name: "avatars_exactly_one_owner" });
    await expect(t.raw`insert into avatars (organization_id, handle) values ('00000002-0000-4000-8000-000000000001', 'ownerless')`).rejects.toMatchObject({
      constraint_name: "avatars_exactly_one_owner",
    });
    await expect(t.raw`update avatars set active = true where id = ${ENG_CHANGELOG}`).resolves.toBeDefined(); // it has its owner
    await t.raw`update avatars set active = false where id = ${ENG_CHANGELOG}`;
    // A second owner is refused at once by the unique index.
    await expect(t.raw`update memberships set owner = true where id = ${M(1)}`).rejects.toMatchObject({
      constraint_name: "memberships_one_active_owner",
    });
    expect(await ownerOf(ACME_BOT)).toEqual([M(2)]);
  });
});

// ---------------------------------------------------------------------------
// The race
// ---------------------------------------------------------------------------

describe("concurrent transfers", () => {
  const AVATARS = 10;
  const MEMBERS = 6;
  const OPERATIONS = 1200;
  const IN_FLIGHT = 50;
  const ORG = "0000bbbb-0000-4000-8000-000000000001";
  const ACC = "0000bbbb-0000-4000-8000-000000000002";
  const user = (i: number) => `0000bbbb-0001-4000-8000-${String(i).padStart(12, "0")}`;
  const principal = (i: number) => `0000bbbb-0002-4000-8000-${String(i).padStart(12, "0")}`;
  const avatar = (a: number) => `0000bbbb-0003-4000-8000-${String(a).padStart(12, "0")}`;
  const member = (a: number, i: number) => `0000bbbb-0004-4000-8000-${String(a * 100 + i).padStart(12, "0")}`;
  const avatarIds = Array.from({ length: AVATARS }, (_, a) => avatar(a));

  let r: TestDatabase;
  let raceApp: App;
  let raceAdmin: Svc;
  let stores: SqlClient[] = [];
  let readers: postgres.Sql;

  beforeAll(async () => {
    r = await freshDatabase();
    await r.raw.begin(async (sql) => {
      await sql`insert into organizations (id, name) values (${ORG}, 'race')`;
      await sql`insert into accounts (id, organization_id) values (${ACC}, ${ORG})`;
      for (let i = 0; i < MEMBERS; i++) {
        await sql`insert into users (id) values (${user(i)})`;
        await sql`insert into principals (id, account_id, subject_type, subject_id, accepted_at)
                  values (${principal(i)}, ${ACC}, 'user', ${user(i)}, now() - interval '1 day')`;
      }
      for (let a = 0; a < AVATARS; a++) {
        await sql`insert into avatars (id, organization_id, handle) values (${avatar(a)}, ${ORG}, ${`race-${a}`})`;
        for (let i = 0; i < MEMBERS; i++) {
          await sql`insert into memberships (id, principal_id, avatar_id, owner, accepted_at)
                    values (${member(a, i)}, ${principal(i)}, ${avatar(a)}, ${i === 0}, now() - interval '1 day')`;
        }
      }
    });
    raceApp = createApp(
      loadConfig({
        DATABASE_URL: r.url,
        AUTHZ_AUTH: "off",
        AUTHZ_HOST: "127.0.0.1",
        AUTHZ_GRPC_PORT: "0",
        AUTHZ_HTTP_PORT: "0",
        AUTHZ_DATABASE_POOL_MAX: "10",
      }),
      createLogger("silent"),
    );
    const ports = await raceApp.listen();
    await raceApp.ready;
    raceAdmin = client(protos, "authz.v1.AdminService", ports.grpcPort);
    stores = Array.from({ length: 3 }, () => createPostgresClient({ url: r.url, poolMax: 6, logger: createLogger("silent") }));
    readers = postgres(r.url, { max: 8, onnotice: () => {} });
  }, 60_000);

  afterAll(async () => {
    raceAdmin?.close();
    await Promise.all(stores.map((s) => s.close()));
    await readers?.end({ timeout: 2 });
    await raceApp?.stop();
    await r?.drop();
  });

  it(`${OPERATIONS} transfers over ${AVATARS} avatars from many connections keep exactly one owner, replayable from the history`, async () => {
    const started = Date.now();
    const initial = new Map(avatarIds.map((a, i) => [a, member(i, 0)]));
    const codes = new Map<string, number>();
    const count = (code: string) => codes.set(code, (codes.get(code) ?? 0) + 1);
    let completed = 0;
    let running = true;

    // Sampler: its own connection, the owner count of every race avatar, every few ms.
    const sampler = postgres(r.url, { max: 1, onnotice: () => {} });
    const badSamples: string[] = [];
    let samples = 0;
    const sampling = (async () => {
      while (running) {
        const rows = await sampler<{ avatar_id: string; n: number }[]>`
          select avatar_id::text, count(*)::int as n from memberships
           where owner and active and avatar_id in ${sampler(avatarIds)} group by avatar_id`;
        samples++;
        const ok = rows.length === AVATARS && rows.every((x) => x.n === 1);
        if (!ok && badSamples.length < 5) badSamples.push(JSON.stringify(rows));
        await new Promise((res) => setImmediate(res));
      }
    })();

    // Lister: pages through one avatar's history while transfers are recorded; no page repeats or reorders rows.
    const listerProblems: string[] = [];
    let listPasses = 0;
    const listing = (async () => {
      while (running) {
        const ids: string[] = [];
        const keys: Array<[number, string]> = [];
        let token = "";
        do {
          const page = await unary<{ transfers: WireTransfer[]; next_page_token: string }>(raceAdmin, "ListOwnershipTransfers", {
            avatar_id: avatarIds[0],
            page_size: 7,
            page_token: token,
          });
          for (const tr of page.transfers) {
            ids.push(tr.id);
            keys.push([wireMs(tr.created_at) as number, tr.id]);
          }
          token = page.next_page_token;
        } while (token !== "");
        if (new Set(ids).size !== ids.length && listerProblems.length < 3) listerProblems.push(`duplicate ids in pass ${listPasses}`);
        for (let i = 1; i < keys.length; i++) {
          const [pt, pid] = keys[i - 1] as [number, string];
          const [ct, cid] = keys[i] as [number, string];
          if ((ct > pt || (ct === pt && cid >= pid)) && listerProblems.length < 3) listerProblems.push(`order broken at ${i} in pass ${listPasses}`);
        }
        listPasses++;
      }
    })();

    type Path = {
      name: string;
      transfer: (input: TransferOwnershipInput) => Promise<{ id: string; status: string }>;
      accept: (id: string) => Promise<void>;
    };
    const grpcPath: Path = {
      name: "grpc",
      async transfer(input) {
        const res = await unary<WireResult>(raceAdmin, "TransferOwnership", {
          avatar_id: input.avatarId,
          from_membership_id: input.fromMembershipId,
          to_membership_id: input.toMembershipId,
          mode: input.mode === "request" ? "TRANSFER_MODE_REQUEST" : "TRANSFER_MODE_IMMEDIATE",
          idempotency_key: input.idempotencyKey ?? "",
        });
        return { id: res.transfer.id, status: res.transfer.status.replace("TRANSFER_STATUS_", "").toLowerCase() };
      },
      async accept(id) {
        await unary(raceAdmin, "AcceptOwnershipTransfer", { transfer_id: id });
      },
    };
    const storePath = (db: SqlClient, i: number): Path => ({
      name: `store${i}`,
      async transfer(input) {
        const res = await transferOwnership(db, input, OPTS);
        return { id: res.transfer.id, status: res.transfer.status };
      },
      async accept(id) {
        await acceptOwnershipTransfer(db, { transferId: id });
      },
    });
    const paths = [grpcPath, grpcPath, grpcPath, ...stores.map(storePath)];
    const codeOf = (err: unknown): string => (err instanceof AuthzError ? err.code : failure(err).code);

    let next = 0;
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const worker = async () => {
      while (next < OPERATIONS) {
        const op = next++;
        const a = rand(AVATARS);
        const avatarId = avatar(a);
        const path = paths[op % paths.length] as Path;
        // The owner as a plain (possibly stale) read, and a random other member.
        const [owner] = await ownerOf(avatarId, readers);
        const others = Array.from({ length: MEMBERS }, (_, i) => member(a, i)).filter((m) => m !== owner);
        const to = others[rand(others.length)] as string;
        const asRequest = rand(100) < 15;
        try {
          const res = await path.transfer({
            avatarId,
            fromMembershipId: owner as string,
            toMembershipId: to,
            mode: asRequest ? "request" : "immediate",
            ...(rand(10) === 0 ? { idempotencyKey: `race-${op}` } : {}),
          });
          if (res.status === "completed") completed++;
          count("OK");
          if (asRequest) {
            try {
              await path.accept(res.id);
              completed++;
              count("OK");
            } catch (err) {
              count(codeOf(err));
            }
          }
        } catch (err) {
          count(codeOf(err));
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    running = false;
    await Promise.all([sampling, listing]);
    await sampler.end({ timeout: 2 });
    const elapsed = Date.now() - started;

    console.log(
      `ownership race: ${OPERATIONS} transfers in ${elapsed} ms, ${completed} completed, codes ${JSON.stringify(Object.fromEntries(codes))}, ` +
        `${samples} owner samples, ${listPasses} listing passes`,
    );
    // Only the two codes a caller can act on.
    expect([...codes.keys()].filter((c) => !["OK", "FAILED_PRECONDITION", "ABORTED"].includes(c))).toEqual([]);
    // Stale reads lose often (5 callers in flight per avatar); enough must win to make the replay meaningful.
    expect(completed).toBeGreaterThan(OPERATIONS / 10);
    // Every sample during the run, and the end state: exactly one owner per avatar.
    expect(badSamples).toEqual([]);
    expect(samples).toBeGreaterThan(20);
    expect(listerProblems).toEqual([]);
    const final = new Map<string, string>();
    for (const a of avatarIds) {
      const owners = await ownerOf(a, r.raw);
      expect(owners).toHaveLength(1);
      final.set(a, owners[0] as string);
    }

    // Replay the completed transfers in commit order (the change-log revision at which each completed).
    const history = await r.raw<{ revision: string; avatar_id: string; from_id: string; to_id: string; id: string }[]>`
      select c.revision::text, c.new_row->>'avatar_id' as avatar_id, c.new_row->>'from_membership_id' as from_id,
             c.new_row->>'to_membership_id' as to_id, c.new_row->>'id' as id
        from authz_changes c
       where c.table_name = 'ownership_transfers' and c.new_row->>'status' = 'completed'
         and (c.op = 'INSERT' or c.old_row->>'status' is distinct from 'completed')
       order by c.revision, c.id`;
    const [stored] = await r.raw<{ n: number }[]>`select count(*)::int as n from ownership_transfers where status = 'completed'`;
    expect(history).toHaveLength(stored?.n ?? -1);
    expect(history).toHaveLength(completed);
    const replayed = new Map(initial);
    const broken: string[] = [];
    for (const h of history) {
      if (replayed.get(h.avatar_id) !== h.from_id && broken.length < 5) broken.push(`${h.id} at revision ${h.revision} moved from a non-owner`);
      replayed.set(h.avatar_id, h.to_id);
    }
    expect(broken).toEqual([]);
    expect(Object.fromEntries(replayed)).toEqual(Object.fromEntries(final));
  }, 120_000);
});
