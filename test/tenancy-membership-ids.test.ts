// A tenant-bound caller that supplies the id of another tenant's membership
// for the row it creates (invite_membership.id, create_avatar's
// owner_membership_id) is refused like every other reference to another
// tenant's row: PERMISSION_DENIED, reason OTHER_TENANT, naming only the id it
// sent — not ALREADY_EXISTS from the primary key, which answers from the
// other tenant's rows after the confinement step passed them.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manageDirectory } from "../src/store/directory-writer.js";
import { importDocument } from "../src/store/import.js";
import { refusal } from "./support/errors.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";

const id = (group: string, n: number) => `0000${group}-0000-4000-8000-${String(n).padStart(12, "0")}`;
const [TA, TB] = [id("b301", 1), id("b301", 2)];
const [OA, OB] = [id("b302", 1), id("b302", 2)];
const USER = id("b303", 1);
const [ACCA, ACCB] = [id("b305", 1), id("b305", 2)];
const [PA_OWNER, PA_OTHER, PB] = [id("b306", 1), id("b306", 2), id("b306", 3)];
const [AVA, AVB] = [id("b307", 1), id("b307", 2)];
const [MA, MB] = [id("b308", 1), id("b308", 2)];
const A = { id: "key-a", tenantId: TA };

let t: TestDatabase;

beforeAll(async () => {
  t = await freshDatabase();
  const principal = (pid: string, account_id: string) => ({
    id: pid,
    account_id,
    subject_type: "user",
    subject_id: USER,
    active: true,
    accepted_at: "2024-01-01T00:00:00Z",
  });
  await importDocument(t.client, {
    TENANT: [
      { id: TA, name: "Tenant A", slug: "ta" },
      { id: TB, name: "Tenant B", slug: "tb" },
    ],
    ORGANIZATION: [
      { id: OA, tenant_id: TA, name: "Org A", slug: "oa" },
      { id: OB, tenant_id: TB, name: "Org B", slug: "ob" },
    ],
    USER: [{ id: USER, logical_key: "user:u" }],
    ACCOUNT: [
      { id: ACCA, organization_id: OA, active: true },
      { id: ACCB, organization_id: OB, active: true },
    ],
    PRINCIPAL: [principal(PA_OWNER, ACCA), principal(PA_OTHER, ACCA), principal(PB, ACCB)],
    AVATAR: [
      { id: AVA, organization_id: OA, handle: "a-bot", active: true },
      { id: AVB, organization_id: OB, handle: "b-bot", active: true },
    ],
    MEMBERSHIP: [
      { id: MA, principal_id: PA_OWNER, avatar_id: AVA, owner: true, active: true, accepted_at: "2024-01-01T00:00:00Z" },
      { id: MB, principal_id: PB, avatar_id: AVB, owner: true, active: true, accepted_at: "2024-01-01T00:00:00Z" },
    ],
  });
}, 60_000);

afterAll(async () => {
  await t?.drop();
});

describe("a tenant-bound caller naming another tenant's membership as the id of a new one", () => {
  it("invite_membership.id is PERMISSION_DENIED (OTHER_TENANT), not ALREADY_EXISTS", async () => {
    const err = await refusal(
      manageDirectory(t.client, { mutations: [{ kind: "inviteMembership", id: MB, avatarId: AVA, principalId: PA_OTHER, validUntil: null }] }, A),
    );
    expect(err.code).toBe("PERMISSION_DENIED");
    expect(err.reason).toBe("OTHER_TENANT");
    expect(err.message).toContain(`invite_membership.id: membership ${MB}`);
    for (const foreign of [TB, OB, ACCB, PB, AVB, "b-bot", "tb", "ob"]) expect(err.message).not.toContain(foreign);
  });

  it("create_avatar.owner_membership_id is PERMISSION_DENIED (OTHER_TENANT), not ALREADY_EXISTS", async () => {
    const err = await refusal(
      manageDirectory(
        t.client,
        { mutations: [{ kind: "createAvatar", id: id("b307", 3), organizationId: OA, handle: "new-bot", ownerPrincipalId: PA_OTHER, ownerMembershipId: MB }] },
        A,
      ),
    );
    expect(err.code).toBe("PERMISSION_DENIED");
    expect(err.reason).toBe("OTHER_TENANT");
    expect(err.message).toContain(`create_avatar.owner_membership_id: membership ${MB}`);
  });

  it("an id of its own tenant's membership is still ALREADY_EXISTS, and a fresh id still works", async () => {
    const own = await refusal(
      manageDirectory(t.client, { mutations: [{ kind: "inviteMembership", id: MA, avatarId: AVA, principalId: PA_OTHER, validUntil: null }] }, A),
    );
    expect(own.code).toBe("ALREADY_EXISTS");
    const res = await manageDirectory(
      t.client,
      { mutations: [{ kind: "inviteMembership", id: id("b308", 9), avatarId: AVA, principalId: PA_OTHER, validUntil: null }] },
      A,
    );
    expect(res.results[0]).toMatchObject({ id: id("b308", 9), changed: true });
  });
});
