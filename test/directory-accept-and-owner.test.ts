// Directory writes that must agree with the decision rules of
// docs/data-model.md ("What allowed means"):
// - a principal or membership whose accepted_at lies in the future is not
//   accepted yet, so accept_* without a time accepts it now (the proto: "the
//   transaction's time when absent"), and decline_membership still may decline it;
// - activating a second owner membership of an avatar is a rule violation
//   (FAILED_PRECONDITION, OWNER_INVARIANT), not a race to retry (ABORTED).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manageDirectory } from "../src/store/directory-writer.js";
import { importDocument } from "../src/store/import.js";
import { refusal } from "./support/errors.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const ORG = id("a302", 1);
const USER = id("a303", 1);
const ACC = id("a305", 1);
const P_OWNER = id("a306", 1);
const P_FUTURE = id("a306", 2);
const P_OTHER = id("a306", 3);
const P_OLD = id("a306", 4);
const AV = id("a307", 1);
const M_OWNER = id("a308", 1);
const M_FUTURE = id("a308", 2);
const M_FUTURE2 = id("a308", 3);
const M_OLD_OWNER = id("a308", 4);

const FUTURE = new Date(Date.now() + 365 * 86_400_000).toISOString();
const PAST = "2024-01-01T00:00:00Z";

let t: TestDatabase;

beforeAll(async () => {
  t = await freshDatabase();
  const principal = (pid: string, accepted_at: string) => ({ id: pid, account_id: ACC, subject_type: "user", subject_id: USER, active: true, accepted_at });
  await importDocument(t.client, {
    ORGANIZATION: [{ id: ORG, name: "Org", slug: "org" }],
    USER: [{ id: USER, logical_key: "user:a3" }],
    ACCOUNT: [{ id: ACC, organization_id: ORG, email: "a@x.example" }],
    PRINCIPAL: [principal(P_OWNER, PAST), principal(P_FUTURE, FUTURE), principal(P_OTHER, PAST), principal(P_OLD, PAST)],
    AVATAR: [{ id: AV, organization_id: ORG, handle: "av" }],
    MEMBERSHIP: [
      { id: M_OWNER, principal_id: P_OWNER, avatar_id: AV, owner: true, active: true, accepted_at: PAST },
      { id: M_FUTURE, principal_id: P_FUTURE, avatar_id: AV, owner: false, active: true, accepted_at: FUTURE },
      { id: M_FUTURE2, principal_id: P_OTHER, avatar_id: AV, owner: false, active: true, accepted_at: FUTURE },
    ],
  });
}, 60_000);

afterAll(async () => {
  await t?.drop();
});

async function acceptedNow(table: "principals" | "memberships", rid: string): Promise<boolean> {
  const [row] = await t.raw<{ ok: boolean }[]>`select accepted_at <= now() as ok from ${t.raw(table)} where id = ${rid}`;
  return (row as { ok: boolean }).ok;
}

describe("accepting records whose accepted_at is in the future", () => {
  it("accept_principal without a time accepts a principal accepted only in the future", async () => {
    expect(await acceptedNow("principals", P_FUTURE)).toBe(false);
    const res = await manageDirectory(t.client, { mutations: [{ kind: "acceptPrincipal", id: P_FUTURE }] });
    expect(res.results[0]?.changed).toBe(true);
    expect(await acceptedNow("principals", P_FUTURE)).toBe(true);
  });

  it("accept_membership without a time accepts a membership accepted only in the future", async () => {
    const res = await manageDirectory(t.client, { mutations: [{ kind: "acceptMembership", id: M_FUTURE }] });
    expect(res.results[0]?.changed).toBe(true);
    expect(await acceptedNow("memberships", M_FUTURE)).toBe(true);
  });

  it("accepting an accepted record again without a time changes nothing", async () => {
    const res = await manageDirectory(t.client, { mutations: [{ kind: "acceptPrincipal", id: P_OWNER }] });
    expect(res.results[0]?.changed).toBe(false);
  });

  it("decline_membership declines an invitation whose accepted_at is still in the future", async () => {
    const res = await manageDirectory(t.client, { mutations: [{ kind: "declineMembership", id: M_FUTURE2 }] });
    expect(res.results[0]?.changed).toBe(true);
    const left = await t.raw`select 1 from memberships where id = ${M_FUTURE2}`;
    expect(left.length).toBe(0);
  });

  it("decline_membership still refuses an accepted membership", async () => {
    const err = await refusal(manageDirectory(t.client, { mutations: [{ kind: "declineMembership", id: M_FUTURE }] }));
    expect(err.reason).toBe("MEMBERSHIP_ACCEPTED");
  });
});

describe("a second active owner membership", () => {
  it("set_membership_active on an inactive owner membership of an owned avatar is FAILED_PRECONDITION, not ABORTED", async () => {
    // An old, inactive owner membership (as an import may leave one) beside the active owner.
    await importDocument(t.client, {
      MEMBERSHIP: [{ id: M_OLD_OWNER, principal_id: P_OLD, avatar_id: AV, owner: true, active: false, accepted_at: PAST }],
    });
    const err = await refusal(manageDirectory(t.client, { mutations: [{ kind: "setMembershipActive", id: M_OLD_OWNER, active: true }] }));
    expect(err.code).toBe("FAILED_PRECONDITION");
    expect(err.reason).toBe("OWNER_INVARIANT");
    // Nothing changed: the avatar keeps its one owner.
    const owners = await t.raw<{ id: string }[]>`select id::text as id from memberships where avatar_id = ${AV} and owner and active`;
    expect(owners.map((o) => o.id)).toEqual([M_OWNER]);
  });
});
