import { describe, expect, it } from "vitest";

import { type InlineUuidInterner, parseWords } from "./interner.js";
import type { FlatI32 } from "./paged.js";
import type { Change } from "./rows.js";
import { buildSnapshot, type Snapshot } from "./snapshot.js";
import { findSlot, type HotSlots, HS_ENTRY } from "./hot-slots.js";
import type { State } from "./state.js";

// The per-snapshot hot slots must mirror uHot and oHot exactly (Check reads
// a user's flags and grant list head, and an organization's flags, tenant and
// permissions, only from there), through builds, applies that add users and
// organizations past the table's load (it grows into a new table), locks,
// deletions, grant and permission changes, and every older snapshot must keep
// its own.

const T = "00000000-0000-4000-8000-0000000000a1";
const ORG = "00000000-0000-4000-8000-0000000000b1";
const ROLE = "00000000-0000-4000-8000-0000000000d1";
const PERM = "00000000-0000-4000-8000-0000000000e1";
const NOW = Date.parse("2026-06-01T00:00:00Z");
const user = (i: number) => `00000000-0000-4000-8000-${(0xf00000 + i).toString(16).padStart(12, "0")}`;
const assignment = (i: number) => `00000000-0000-4000-8000-${(0xa00000 + i).toString(16).padStart(12, "0")}`;
const org = (i: number) => `00000000-0000-4000-8000-${(0xb00000 + i).toString(16).padStart(12, "0")}`;
const orgRow = (i: number) => ({ id: org(i), tenant_id: T, name: `O${i}`, slug: `o${i}`, role_structure: "multi_role" });
const userRow = (i: number, locked = false) => ({ id: user(i), locked, enabled: true });
const grantRow = (i: number) => ({
  id: assignment(i),
  subject_type: "user",
  subject_id: user(i),
  role_id: ROLE,
  scope_type: "organization",
  scope_id: ORG,
  active: true,
  valid_until: null,
});
const change = (table: string, op: Change["op"], oldRow: Record<string, unknown> | null, newRow: Record<string, unknown> | null): Change => ({
  table,
  op,
  oldRow,
  newRow,
});

/** Every interned id: its slot holds its hot entry's first `width` ints, or it has no slot and an all-zero entry. */
function expectTable(ids: InlineUuidInterner, h: HotSlots, hot: FlatI32): void {
  const w = new Int32Array(4);
  for (let id = 0; id < ids.count; id++) {
    parseWords(ids.uuid(id), w, 0);
    const x = findSlot(h, w, 0);
    const entry = Array.from({ length: h.width }, (_, j) => hot.get(id * h.stride + j));
    if (x < 0) {
      expect(entry.every((v) => v === 0)).toBe(true);
      continue;
    }
    expect([h.t.get(x) - 1, ...entry.map((_, j) => h.t.get(x + HS_ENTRY + j))]).toEqual([id, ...entry]);
  }
}

function expectMirror(st: State): void {
  expectTable(st.shared.users, st.us, st.c.uHot);
  expectTable(st.shared.orgs, st.os, st.c.oHot);
}

const decide = (s: Snapshot, i: number) => s.check({ type: "user", id: user(i) }, "doc.read", { type: "organization", id: ORG }, NOW).reason;

describe("hot slots", () => {
  it("mirror every user's and organization's entry through growth, locks, deletions, grant and permission changes; older snapshots keep theirs", () => {
    let snap = buildSnapshot(1n, {
      tenants: [{ id: T }],
      organizations: [{ id: ORG, tenant_id: T, name: "O", slug: "o", role_structure: "multi_role" }],
      users: [userRow(0), userRow(1)],
      roles: [{ id: ROLE, organization_id: ORG, key: "reader", name: "Reader" }],
      permissions: [{ id: PERM, organization_id: ORG, key: "doc.read" }],
      role_permissions: [{ role_id: ROLE, permission_id: PERM }],
      role_assignments: [grantRow(0)],
    });
    const stateOf = (s: Snapshot) => (s.constructor as unknown as { stateOf(s: Snapshot): State }).stateOf(s);
    expectMirror(stateOf(snap));
    const capAtBuild = stateOf(snap).us.cap;
    const first = snap;
    expect([decide(first, 0), decide(first, 1), decide(first, 2)]).toEqual(["GRANTED", "NO_GRANT", "SUBJECT_NOT_FOUND"]);

    // 200 users and their grants, 20 an apply: more than the built table holds.
    let rev = 2n;
    for (let b = 0; b < 10; b++) {
      const changes: Change[] = [];
      for (let i = 2 + 20 * b; i < 22 + 20 * b; i++) {
        changes.push(change("users", "INSERT", null, userRow(i)));
        changes.push(change("role_assignments", "INSERT", null, grantRow(i)));
        changes.push(change("organizations", "INSERT", null, orgRow(i)));
      }
      snap = snap.apply(changes, rev++);
      expectMirror(stateOf(snap));
    }
    expect(stateOf(snap).us.cap).toBeGreaterThan(capAtBuild);
    expect(stateOf(snap).os.cap).toBeGreaterThan(capAtBuild);
    const grown = snap;
    expect([decide(grown, 150), decide(grown, 1)]).toEqual(["GRANTED", "NO_GRANT"]);

    // A lock, a deletion, a revoked grant and a new one, each seen by the new snapshot only.
    snap = snap.apply(
      [
        change("users", "UPDATE", userRow(150), userRow(150, true)),
        change("users", "DELETE", userRow(151), null),
        change("role_assignments", "DELETE", grantRow(152), null),
        change("role_assignments", "INSERT", null, grantRow(1)),
        change("organizations", "DELETE", orgRow(151), null),
        change("permissions", "INSERT", null, { id: "00000000-0000-4000-8000-0000000000e2", organization_id: org(150), key: "doc.read" }),
      ],
      rev++,
    );
    expectMirror(stateOf(snap));
    expect([decide(snap, 150), decide(snap, 151), decide(snap, 152), decide(snap, 1)]).toEqual(["SUBJECT_LOCKED", "SUBJECT_NOT_FOUND", "NO_GRANT", "GRANTED"]);
    expect([decide(grown, 150), decide(grown, 151), decide(grown, 152), decide(grown, 1)]).toEqual(["GRANTED", "GRANTED", "GRANTED", "NO_GRANT"]);
    expect([decide(first, 0), decide(first, 1), decide(first, 150)]).toEqual(["GRANTED", "NO_GRANT", "SUBJECT_NOT_FOUND"]);
    expectMirror(stateOf(grown));
    const onOrg = (x: Snapshot, o: number) => x.check({ type: "user", id: user(0) }, "doc.read", { type: "organization", id: org(o) }, NOW).reason;
    expect([onOrg(snap, 150), onOrg(snap, 151), onOrg(snap, 152)]).toEqual(["NO_GRANT", "RESOURCE_NOT_FOUND", "PERMISSION_NOT_FOUND"]);
    expect([onOrg(grown, 150), onOrg(grown, 151), onOrg(first, 150)]).toEqual(["PERMISSION_NOT_FOUND", "PERMISSION_NOT_FOUND", "RESOURCE_NOT_FOUND"]);
  });
});
