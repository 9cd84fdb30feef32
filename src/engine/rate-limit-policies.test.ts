import { describe, expect, it } from "vitest";
import { buildSnapshot } from "./snapshot.js";
import { GLOBAL_OWNER, PolicyIndex } from "./rate-limit-policies.js";

const U = "00000000-0000-4000-8000-0000000000f1";
const O = "00000000-0000-4000-8000-0000000000b1";
const policyRow = (id: number, name: string, scope: string, extra: Record<string, unknown> = {}) => ({
  id,
  name,
  scope,
  limit_count: 10,
  window_sec: 60,
  algorithm: "sliding_window",
  failure_mode: "closed",
  shadow: false,
  description: null,
  ...extra,
});

describe("rate-limit policies in the engine", () => {
  it("loads from a snapshot and resolves a user's and its organization's policies", () => {
    const e = buildSnapshot(1n, {
      rate_limit_policies: [policyRow(1, "per-user", "user"), policyRow(2, "per-org", "organization"), policyRow(3, "shared", "global", { shadow: true })],
      // Snapshot rows: ids as text; an assignment may come before its policy is known.
      rate_limit_assignments: [
        { id: "10", policy_id: 1, user_id: U, org_id: null },
        { id: "11", policy_id: 2, user_id: null, org_id: O },
        { id: "12", policy_id: 3, user_id: U, org_id: null },
        { id: "13", policy_id: 3, user_id: null, org_id: O },
        { id: "14", policy_id: 99, user_id: U, org_id: null },
      ],
    });
    expect(e.ratePolicy("per-user")).toMatchObject({
      id: 1,
      scope: "user",
      limit: 10,
      windowSec: 60,
      algorithm: "sliding_window",
      failureMode: "closed",
      shadow: false,
    });
    const applied = e.ratePoliciesFor({ type: "user", id: U }, O);
    expect(applied.map((a) => [a.policy.name, a.owner])).toEqual([
      ["per-user", { type: "user", id: U }],
      ["shared", GLOBAL_OWNER],
      ["per-org", { type: "organization", id: O }],
    ]);
    expect(e.ratePoliciesFor({ type: "user", id: U }).map((a) => a.policy.name)).toEqual(["per-user", "shared"]);
    expect(e.ratePoliciesFor({ type: "key", id: "k" })).toEqual([]);
  });

  it("follows the change log: insert, rename, unassign, delete; other decisions untouched", () => {
    let e = buildSnapshot(1n, {});
    e = e.apply(
      [
        { table: "rate_limit_policies", op: "INSERT", oldRow: null, newRow: policyRow(1, "a", "user") },
        { table: "rate_limit_assignments", op: "INSERT", oldRow: null, newRow: { id: 5, policy_id: 1, user_id: U, org_id: null } },
      ],
      2n,
    );
    expect(e.revision).toBe(2n);
    expect(e.ratePoliciesFor({ type: "user", id: U }).map((a) => a.policy.name)).toEqual(["a"]);
    e = e.apply([{ table: "rate_limit_policies", op: "UPDATE", oldRow: policyRow(1, "a", "user"), newRow: policyRow(1, "b", "user", { limit_count: 3 }) }], 3n);
    expect(e.ratePolicy("a")).toBeUndefined();
    expect(e.ratePolicy("b")?.limit).toBe(3);
    expect(e.ratePoliciesFor({ type: "user", id: U }).map((a) => a.policy.name)).toEqual(["b"]);
    e = e.apply([{ table: "rate_limit_assignments", op: "DELETE", oldRow: { id: 5, policy_id: 1, user_id: U, org_id: null }, newRow: null }], 4n);
    expect(e.ratePoliciesFor({ type: "user", id: U })).toEqual([]);
    e = e.apply([{ table: "rate_limit_policies", op: "DELETE", oldRow: policyRow(1, "b", "user"), newRow: null }], 5n);
    expect(e.ratePolicy("b")).toBeUndefined();
    expect(e.stats()).toEqual({ roles: 0, permissions: 0, assignments: 0, memberships: 0, subjects: 0 });
  });

  it("keeps the index consistent when a name moves from one policy to another", () => {
    const idx = new PolicyIndex();
    idx.upsertPolicy({
      id: 1,
      name: "x",
      scope: "user",
      limitCount: 1,
      windowSec: 1,
      algorithm: "token_bucket",
      failureMode: "open",
      shadow: false,
      description: null,
    });
    idx.upsertPolicy({
      id: 1,
      name: "y",
      scope: "user",
      limitCount: 1,
      windowSec: 1,
      algorithm: "token_bucket",
      failureMode: "open",
      shadow: false,
      description: null,
    });
    idx.upsertPolicy({
      id: 2,
      name: "x",
      scope: "key",
      limitCount: 2,
      windowSec: 1,
      algorithm: "bogus",
      failureMode: "bogus",
      shadow: false,
      description: null,
    });
    expect(idx.ratePolicy("x")).toMatchObject({ id: 2, algorithm: "fixed_window", failureMode: "open" });
    expect(idx.ratePolicy("y")?.id).toBe(1);
    idx.removePolicy(1);
    expect(idx.ratePolicy("x")?.id).toBe(2);
    expect(idx.size).toEqual({ policies: 1, assignments: 0 });
  });
});
