// Races on the write paths found by an outside audit: concurrent retries of
// one idempotency key must all get the first answer, and concurrent accept /
// decline / cancel of one pending transfer must leave exactly one of them
// successful, its status the stored one.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthzError } from "../src/errors.js";
import { createLogger } from "../src/logger.js";
import { manageDirectory } from "../src/store/directory-writer.js";
import { manageRateLimits } from "../src/store/manage-rate-limits.js";
import { acceptOwnershipTransfer, cancelOwnershipTransfer, declineOwnershipTransfer, transferOwnership } from "../src/store/ownership.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import type { SqlClient } from "../src/store/sql.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { holdInTransaction } from "./support/hold.js";

const OPTS = { defaultRequestTtlMs: 24 * 3600 * 1000 };
let t: TestDatabase;
let pools: SqlClient[];

beforeAll(async () => {
  t = await freshDatabase();
  // Two pools: two replicas on one database.
  pools = [t.client, createPostgresClient({ url: t.url, poolMax: 8, logger: createLogger("silent") })];
});
afterAll(async () => {
  await pools[1]?.close();
  await t?.drop();
});

/** An avatar owned by membership ms[0], with `n` more accepted memberships of staff principals. */
async function avatar(n: number): Promise<{ avatarId: string; ms: string[] }> {
  const [tenant, org, account, avatarId] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  const ms = Array.from({ length: n + 1 }, () => randomUUID());
  const ps = ms.map(() => randomUUID());
  await t.raw.begin(async (sql) => {
    await sql`insert into tenants (id, name, slug) values (${tenant}, 't', ${`t-${tenant}`})`;
    await sql`insert into organizations (id, tenant_id, name, slug) values (${org}, ${tenant}, 'o', 'o')`;
    await sql`insert into accounts (id, organization_id) values (${account}, ${org})`;
    for (const p of ps) {
      const s = randomUUID();
      await sql`insert into staff (id, logical_key) values (${s}, ${`staff:${s}`})`;
      await sql`insert into principals (id, account_id, subject_type, subject_id, accepted_at) values (${p}, ${account}, 'staff', ${s}, now() - interval '1 day')`;
    }
    await sql`insert into avatars (id, organization_id, handle) values (${avatarId}, ${org}, 'h')`;
    for (const [i, m] of ms.entries()) {
      await sql`insert into memberships (id, principal_id, avatar_id, owner, accepted_at) values (${m}, ${ps[i] as string}, ${avatarId}, ${i === 0}, now() - interval '1 day')`;
    }
  });
  return { avatarId, ms };
}

const outcome = async <T>(p: Promise<T>): Promise<T | AuthzError> => {
  try {
    return await p;
  } catch (err) {
    if (err instanceof AuthzError) return err;
    throw err;
  }
};

describe("idempotency keys: concurrent duplicates get the first answer", () => {
  it("TransferOwnership: every concurrent retry of one key returns the one transfer", async () => {
    for (let round = 0; round < 4; round++) {
      const { avatarId, ms } = await avatar(1);
      const input = { avatarId, fromMembershipId: ms[0] as string, toMembershipId: ms[1] as string, idempotencyKey: `k-${avatarId}` };
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => outcome(transferOwnership(pools[i % 2] as SqlClient, input, OPTS))));
      const errors = rs.filter((r) => r instanceof AuthzError).map((e) => `${e.code}/${e.reason}`);
      expect(errors).toEqual([]);
      const ids = new Set(rs.map((r) => (r as { transfer: { id: string } }).transfer.id));
      expect(ids.size).toBe(1);
      const revisions = new Set(rs.map((r) => (r as { revision: string }).revision));
      expect(revisions.size).toBe(1);
    }
  });

  it("ManageDirectory: concurrent retries of one key all succeed with one revision", async () => {
    const id = randomUUID();
    const input = { mutations: [{ kind: "upsertTenant" as const, id, name: "n", slug: `s-${id}` }], idempotencyKey: `d-${id}` };
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => outcome(manageDirectory(pools[i % 2] as SqlClient, input))));
    expect(rs.filter((r) => r instanceof AuthzError).map((e) => `${e.code}/${(e as AuthzError).reason}: ${(e as AuthzError).message}`)).toEqual([]);
    expect(new Set(rs.map((r) => (r as { revision: string }).revision)).size).toBe(1);
  });
});

describe("accept, decline and cancel of one pending transfer race", () => {
  it("exactly one wins; the stored status is the winner's and the owner matches it", async () => {
    for (let round = 0; round < 6; round++) {
      const { avatarId, ms } = await avatar(1);
      const req = await transferOwnership(t.client, { avatarId, fromMembershipId: ms[0] as string, toMembershipId: ms[1] as string, mode: "request" }, OPTS);
      const transferId = req.transfer.id;
      const rs = await Promise.all([
        outcome(acceptOwnershipTransfer(pools[0] as SqlClient, { transferId })),
        outcome(cancelOwnershipTransfer(pools[1] as SqlClient, { transferId })),
        outcome(declineOwnershipTransfer(pools[0] as SqlClient, { transferId })),
        outcome(acceptOwnershipTransfer(pools[1] as SqlClient, { transferId })),
      ]);
      const wins = rs.filter((r) => !(r instanceof AuthzError)) as Array<{ transfer: { status: string } }>;
      const losses = rs.filter((r) => r instanceof AuthzError) as AuthzError[];
      expect(wins).toHaveLength(1);
      expect(losses.map((e) => e.reason)).toEqual(["TRANSFER_NOT_PENDING", "TRANSFER_NOT_PENDING", "TRANSFER_NOT_PENDING"]);
      const [row] = await t.raw`select status from ownership_transfers where id = ${transferId}`;
      expect(row?.status).toBe((wins[0] as { transfer: { status: string } }).transfer.status);
      const [owner] = await t.raw`select id::text as id from memberships where avatar_id = ${avatarId} and owner and active`;
      expect(owner?.id).toBe(row?.status === "completed" ? ms[1] : ms[0]);
    }
  });

  it("a revocation of the target racing decline/cancel answers a documented code, never INTERNAL", async () => {
    for (let round = 0; round < 4; round++) {
      const { avatarId, ms } = await avatar(1);
      const req = await transferOwnership(t.client, { avatarId, fromMembershipId: ms[0] as string, toMembershipId: ms[1] as string, mode: "request" }, OPTS);
      const transferId = req.transfer.id;
      const rs = await Promise.all([
        outcome(manageDirectory(pools[1] as SqlClient, { mutations: [{ kind: "revokeMembership", id: ms[1] as string }] })),
        outcome(cancelOwnershipTransfer(pools[0] as SqlClient, { transferId })),
        outcome(declineOwnershipTransfer(pools[1] as SqlClient, { transferId })),
      ]);
      for (const r of rs) if (r instanceof AuthzError) expect(r.code).not.toBe("INTERNAL");
    }
  });
});

describe("single_role_in_hierarchy under concurrent writers", () => {
  it("concurrent assignments of different roles leave the user one organization-level role", async () => {
    const { manageRoles } = await import("../src/store/manage-roles.js");
    const org = randomUUID();
    const user = randomUUID();
    await t.raw`insert into organizations (id, name, slug) values (${org}, 'o', ${`o-${org}`})`;
    await t.raw`insert into users (id) values (${user})`;
    const keys = Array.from({ length: 8 }, (_, i) => `r${i}`);
    for (const key of keys) await t.raw`insert into roles (organization_id, key, name) values (${org}, ${key}, ${key})`;
    for (const replace of [false, true]) {
      const rs = await Promise.all(
        keys.map((key, i) =>
          outcome(
            i % 2 === 0
              ? manageRoles(
                  pools[i % 2] as SqlClient,
                  {
                    mutations: [
                      {
                        kind: "assignRole",
                        subject: { type: "user", id: user },
                        role: { organizationId: org, key },
                        scope: { type: "organization", id: org },
                        replace,
                      },
                    ],
                  } as never,
                )
              : manageDirectory(
                  pools[i % 2] as SqlClient,
                  {
                    mutations: [{ kind: "addUserToOrganization", userId: user, organizationId: org, primaryRole: { organizationId: org, key }, replace }],
                  } as never,
                ),
          ),
        ),
      );
      for (const r of rs) if (r instanceof AuthzError) expect(`${r.code}/${r.reason}`).toBe("FAILED_PRECONDITION/SINGLE_ROLE");
      const held =
        await t.raw`select count(*)::int as n from role_assignments where subject_id = ${user} and scope_type = 'organization' and scope_id = ${org}`;
      expect(held[0]?.n).toBe(1);
    }
  });
});

/** Resolves once `n` statements of this database wait on a lock (pg_stat_activity), polling; fails after 10 s. */
async function waiting(n: number): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    const [r] = await t.raw`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
    if (Number(r?.n) >= n) return;
    if (Date.now() > until) throw new Error(`fewer than ${n} statements waiting on a lock`);
    await new Promise((res) => setImmediate(res));
  }
}

describe("an update racing a delete of its row", () => {
  it("the delete commits between the update's check and its write: the update re-creates the row (changed), never 'unchanged'", async () => {
    const id = randomUUID();
    await manageDirectory(pools[0] as SqlClient, { mutations: [{ kind: "upsertUser", id, fields: { email: `a-${id}@x.example` } }] });
    // A third transaction holds the row, so that the delete queues first and the update second behind it.
    const holder = await holdInTransaction(t.raw, (sql) => sql`select 1 from users where id = ${id} for update`);
    const del = outcome(manageDirectory(pools[1] as SqlClient, { mutations: [{ kind: "deleteUser", id }] }));
    await waiting(1);
    const up = outcome(manageDirectory(pools[0] as SqlClient, { mutations: [{ kind: "upsertUser", id, fields: { email: `b-${id}@x.example` } }] }));
    await waiting(2);
    await holder.release();
    const [d, u] = await Promise.all([del, up]);
    expect(d).not.toBeInstanceOf(AuthzError);
    if (u instanceof AuthzError) throw u;
    // Serial order: delete, then the upsert re-creates the user with its new email.
    expect((u as { results: Array<{ changed: boolean }> }).results[0]?.changed).toBe(true);
    const rows = await t.raw`select email from users where id = ${id}`;
    expect(rows.map((r) => r.email)).toEqual([`b-${id}@x.example`]);
  });
});

describe("two writes creating one new record", () => {
  it("the one that finds it created meanwhile is ABORTED (a retry updates it), not ALREADY_EXISTS", async () => {
    const id = randomUUID();
    // Another transaction inserts the tenant and holds its commit, so the upsert finds no row, then meets it.
    const first = await holdInTransaction(t.raw, (sql) => sql`insert into tenants (id, name, slug) values (${id}, 'first', ${`first-${id}`})`);
    const second = outcome(manageDirectory(pools[0] as SqlClient, { mutations: [{ kind: "upsertTenant", id, name: "second", slug: `second-${id}` }] }));
    await waiting(1);
    await first.release();
    const r = await second;
    expect(r).toBeInstanceOf(AuthzError);
    expect({ code: (r as AuthzError).code, reason: (r as AuthzError).reason }).toEqual({ code: "ABORTED", reason: "ABORTED" });
    // The retry the answer invites updates the record.
    const retry = await manageDirectory(pools[0] as SqlClient, { mutations: [{ kind: "upsertTenant", id, name: "second", slug: `second-${id}` }] });
    expect(retry.results[0]?.changed).toBe(true);
  });
});

describe("two writes creating one new rate-limit policy", () => {
  it("the one that finds it created meanwhile is ABORTED (a retry updates it), not ALREADY_EXISTS", async () => {
    const name = `race-${randomUUID().slice(0, 8)}`;
    const first = await holdInTransaction(
      t.raw,
      (sql) => sql`insert into rate_limit_policies (name, scope, limit_count, window_sec) values (${name}, 'user', 5, 60)`,
    );
    const second = outcome(
      manageRateLimits(pools[0] as SqlClient, { mutations: [{ kind: "upsertPolicy", name, scope: "user", limitCount: 7, windowSec: 60 }] }),
    );
    await waiting(1);
    await first.release();
    const r = await second;
    expect(r).toBeInstanceOf(AuthzError);
    expect({ code: (r as AuthzError).code, reason: (r as AuthzError).reason }).toEqual({ code: "ABORTED", reason: "ABORTED" });
    const retry = await manageRateLimits(pools[0] as SqlClient, { mutations: [{ kind: "upsertPolicy", name, scope: "user", limitCount: 7, windowSec: 60 }] });
    expect(retry.results[0]?.changed).toBe(true);
  });
});

describe("a transfer racing the deactivation of its target's principal", () => {
  it("the deactivation waits for the transfer (it is decided on rows that hold at its commit), so the revisions tell the true order", async () => {
    const { avatarId, ms } = await avatar(1);
    const [target] = await t.raw<{ principal_id: string }[]>`select principal_id::text from memberships where id = ${ms[1] as string}`;
    // The transfer is held after it has checked its target: the owner membership it must update is locked elsewhere.
    const holder = await holdInTransaction(t.raw, (sql) => sql`select 1 from memberships where id = ${ms[0] as string} for update`);
    const transfer = outcome(transferOwnership(pools[0] as SqlClient, { avatarId, fromMembershipId: ms[0] as string, toMembershipId: ms[1] as string }, OPTS));
    await waiting(1);
    const deactivate = outcome(
      manageDirectory(pools[1] as SqlClient, { mutations: [{ kind: "setPrincipalActive", id: target?.principal_id as string, active: false }] }),
    );
    // Either the deactivation waits behind the transfer (two statements waiting), or it finished before the transfer did.
    await Promise.race([deactivate, waiting(2)]);
    await holder.release();
    const [moved, off] = await Promise.all([transfer, deactivate]);
    if (moved instanceof AuthzError) throw moved;
    if (off instanceof AuthzError) throw off;
    // The transfer to an active principal committed first; the deactivation came after it.
    expect(BigInt((off as { revision: string }).revision)).toBeGreaterThan(BigInt((moved as { revision: string }).revision));
  });
});

describe("a transfer racing the deactivation of its target membership", () => {
  it("a deactivation not yet committed holds the transfer, which then refuses the inactive target (TARGET_INACTIVE)", async () => {
    const { avatarId, ms } = await avatar(1);
    // The deactivation has written its row and not committed yet.
    const deactivation = await holdInTransaction(t.raw, (sql) => sql`update memberships set active = false where id = ${ms[1] as string}`);
    const transfer = outcome(transferOwnership(pools[0] as SqlClient, { avatarId, fromMembershipId: ms[0] as string, toMembershipId: ms[1] as string }, OPTS));
    await waiting(1);
    await deactivation.release();
    const got = await transfer;
    expect(got).toBeInstanceOf(AuthzError);
    expect([(got as AuthzError).code, (got as AuthzError).reason]).toEqual(["FAILED_PRECONDITION", "TARGET_INACTIVE"]);
    const [owner] = await t.raw<{ id: string }[]>`select id::text from memberships where avatar_id = ${avatarId} and owner`;
    expect(owner?.id).toBe(ms[0]);
  });

  it("a revocation not yet committed holds the transfer, which then finds no target (MEMBERSHIP_NOT_FOUND)", async () => {
    const { avatarId, ms } = await avatar(1);
    const revocation = await holdInTransaction(t.raw, (sql) => sql`delete from memberships where id = ${ms[1] as string}`);
    const transfer = outcome(transferOwnership(pools[0] as SqlClient, { avatarId, fromMembershipId: ms[0] as string, toMembershipId: ms[1] as string }, OPTS));
    await waiting(1);
    await revocation.release();
    const got = await transfer;
    expect(got).toBeInstanceOf(AuthzError);
    expect([(got as AuthzError).code, (got as AuthzError).reason]).toEqual(["NOT_FOUND", "MEMBERSHIP_NOT_FOUND"]);
  });
});
