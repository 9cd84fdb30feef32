import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CheckRequestSchema, DecisionReason, PermissionService } from "../../gen/authz/v1/permission_service_pb.js";
import { ApiKeyRing, mintApiKey } from "../auth/api-keys.js";
import { createAuthenticator } from "../auth/authenticator.js";
import { buildSnapshot } from "../engine/snapshot.js";
import type { LiveEngine } from "../store/live-engine.js";
import { createAdmission, guard } from "./guard.js";
import { bind, type CallContext, isThenable } from "./handler-types.js";
import { lookupHandlers } from "./lookup-handlers.js";
import { permissionHandlers } from "./permission-handlers.js";

const T = "00000000-0000-4000-8000-0000000000a1";
const ORG = "00000000-0000-4000-8000-0000000000b1";
const ROLE = "00000000-0000-4000-8000-0000000000d1";
const PERM = "00000000-0000-4000-8000-0000000000e1";
const ALICE = "00000000-0000-4000-8000-0000000000f1";
const BOB = "00000000-0000-4000-8000-0000000000f2";

/** Alice holds members.read in ORG (through ROLE) while `aliceHolds`; Bob holds nothing. */
function snapshot(revision: bigint, aliceHolds: boolean) {
  return buildSnapshot(revision, {
    tenants: [{ id: T }],
    organizations: [{ id: ORG, tenant_id: T, name: "O", slug: "o", role_structure: "multi_role" }],
    users: [
      { id: ALICE, locked: false, enabled: true },
      { id: BOB, locked: false, enabled: true },
    ],
    roles: [{ id: ROLE, organization_id: ORG, key: "member", name: "Member" }],
    permissions: [{ id: PERM, organization_id: ORG, key: "members.read" }],
    role_permissions: [{ role_id: ROLE, permission_id: PERM }],
    role_assignments: aliceHolds
      ? [
          {
            id: "00000000-0000-4000-8000-000000000501",
            subject_type: "user",
            subject_id: ALICE,
            role_id: ROLE,
            scope_type: "organization",
            scope_id: ORG,
            active: true,
            valid_until: null,
          },
        ]
      : [],
  });
}

/** The live engine's freshness surface over a snapshot the test swaps. */
function liveOver(state: { current: ReturnType<typeof snapshot> }): () => LiveEngine {
  const live = { current: () => state.current, atLeast: async () => state.current, fullyConsistent: async () => state.current };
  return () => live as unknown as LiveEngine;
}

const ctx = (headers: Record<string, string> = {}): CallContext => ({
  path: "/authz.v1.PermissionService/Check",
  requestId: "t",
  header: (n) => headers[n],
  timeRemainingMs: () => undefined,
  signal: new AbortController().signal,
});

const checkOf = (user: string, explain = false, consistency?: { requirement: { case: "atLeastAsFresh"; value: string } }) =>
  create(CheckRequestSchema, {
    subject: { type: "user", id: user },
    permission: "members.read",
    resource: { type: "organization", id: ORG },
    explain,
    ...(consistency ? { consistency } : {}),
  });

describe("Check on the hot path", () => {
  it("answers in the same tick (no promise) when no freshness wait is asked for", async () => {
    const state = { current: snapshot(7n, true) };
    const h = permissionHandlers(liveOver(state));
    const res = h.check(checkOf(ALICE), ctx());
    expect(isThenable(res)).toBe(false);
    expect(res).toMatchObject({ allowed: true, revision: "7", reason: DecisionReason.GRANTED });
    const waited = h.check(checkOf(ALICE, false, { requirement: { case: "atLeastAsFresh", value: "7" } }), ctx());
    expect(isThenable(waited)).toBe(true);
    expect(await waited).toMatchObject({ allowed: true, revision: "7" });
  });

  it("shares one answer per outcome and revision; a new revision gets new answers, an explanation its own", () => {
    const state = { current: snapshot(7n, true) };
    const h = permissionHandlers(liveOver(state));
    const first = h.check(checkOf(ALICE), ctx());
    expect(h.check(checkOf(ALICE), ctx())).toBe(first);
    const denied = h.check(checkOf(BOB), ctx());
    expect(denied).not.toBe(first);
    expect(denied).toMatchObject({ allowed: false, revision: "7", reason: DecisionReason.NO_GRANT });
    const explained = h.check(checkOf(ALICE, true), ctx()) as { explanation?: { message: string } };
    expect(explained).not.toBe(first);
    expect(explained.explanation?.message).toContain("may members.read");
    // The grant is revoked at revision 8: the answer shared at 7 is not handed out again.
    state.current = snapshot(8n, false);
    expect(h.check(checkOf(ALICE), ctx())).toMatchObject({ allowed: false, revision: "8", reason: DecisionReason.NO_GRANT });
    expect(first).toMatchObject({ allowed: true, revision: "7" });
  });

  it("through the guard with an API key: still no promise, and the caller is on the context", () => {
    const { key, record } = mintApiKey("t", ["check"], null);
    const ring = new ApiKeyRing();
    ring.replace([record]);
    ring.markComplete();
    const state = { current: snapshot(7n, true) };
    const [binding] = guard(
      [bind(PermissionService, { ...permissionHandlers(liveOver(state)), ...lookupHandlers(liveOver(state)) })],
      createAuthenticator({ required: true, keys: ring }),
      createAdmission(8),
    );
    if (!binding) throw new Error("guard returned no binding");
    const check = (binding.handlers as unknown as { check: (req: unknown, c: CallContext) => unknown }).check;
    const c = ctx({ "x-api-key": key });
    const res = check(checkOf(ALICE), c);
    expect(isThenable(res)).toBe(false);
    expect(res).toMatchObject({ allowed: true });
    expect(c.caller?.id).toBe(`key:${record.id}`);
  });
});
