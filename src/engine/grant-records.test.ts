import { describe, expect, it } from "vitest";

import type { Change } from "./rows.js";
import { buildSnapshot, type Snapshot } from "./snapshot.js";

// An assignment's grant record sits at its dense id, and a build renumbers
// the assignments so that each subject's records are side by side
// (grant-index.ts compactGrants). What a caller sees must not move: every
// allow names the assignment that grants it, LookupSubjects lists each
// grant with its own id, through builds from interleaved rows with inactive
// ones among them, and through deletions, re-insertions of a deleted id,
// activations and deactivations afterwards; an older snapshot keeps its own.

const T = "00000000-0000-4000-8000-0000000000a1";
const ORG = "00000000-0000-4000-8000-0000000000b1";
const NOW = Date.parse("2026-06-01T00:00:00Z");
const USERS = 12;
const ROLES = 6;
const id = (tag: number, i: number) => `00000000-0000-4000-8000-${(tag * 0x100000 + i).toString(16).padStart(12, "0")}`;
const user = (u: number) => id(0xf, u);
const role = (r: number) => id(0xd, r);
const perm = (r: number) => `doc.p${r}`;
/** A seeded generator in [0, 1) (an LCG: the test only needs a fixed, varied order). */
const seeded = (seed: number) => () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
};

interface Grant {
  user: number;
  role: number;
  active: boolean;
}

const row = (a: number, g: Grant) => ({
  id: id(0xa, a),
  subject_type: "user",
  subject_id: user(g.user),
  role_id: role(g.role),
  scope_type: "organization",
  scope_id: ORG,
  active: g.active,
  valid_until: null,
});

/** What the model says: for each (user, role) the assignment granting it, if any. */
function expectSnapshot(snap: Snapshot, model: Map<number, Grant>): void {
  const byPair = new Map<string, number>();
  for (const [a, g] of model) if (g.active) byPair.set(`${g.user}/${g.role}`, a);
  for (let r = 0; r < ROLES; r++) {
    for (let u = 0; u < USERS; u++) {
      const d = snap.check({ type: "user", id: user(u) }, perm(r), { type: "organization", id: ORG }, NOW, true);
      const a = byPair.get(`${u}/${r}`);
      expect(d.allowed, `user ${u} role ${r}`).toBe(a !== undefined);
      if (a !== undefined) expect(d.steps?.[0]).toMatchObject({ kind: "ASSIGNMENT", id: id(0xa, a) });
    }
    const found = [...snap.lookupSubjects(perm(r), { type: "organization", id: ORG }, NOW)].map((x) => `${x.subject.id} ${x.grant.id}`).sort();
    const want = [...byPair].filter(([k]) => k.endsWith(`/${r}`)).map(([k, a]) => `${user(Number(k.split("/")[0]))} ${id(0xa, a)}`);
    expect(found).toEqual(want.sort());
  }
  expect(snap.stats().assignments).toBe(model.size);
}

describe("grant records at the assignment's id", () => {
  it("name the right assignment after a build from interleaved rows and through later changes; older snapshots keep theirs", () => {
    const rand = seeded(7);
    const model = new Map<number, Grant>();
    // Every (user, role) pair once, in a shuffled order, a fifth of them inactive.
    const pairs: Grant[] = [];
    for (let u = 0; u < USERS; u++) for (let r = 0; r < ROLES; r++) if ((u + 2 * r) % 3 !== 0) pairs.push({ user: u, role: r, active: rand() >= 0.2 });
    for (let i = pairs.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [pairs[i], pairs[j]] = [pairs[j] as Grant, pairs[i] as Grant];
    }
    pairs.forEach((g, a) => model.set(a, g));
    let snap = buildSnapshot(1n, {
      tenants: [{ id: T }],
      organizations: [{ id: ORG, tenant_id: T, name: "O", slug: "o", role_structure: "multi_role" }],
      users: Array.from({ length: USERS }, (_, u) => ({ id: user(u), locked: false, enabled: true })),
      roles: Array.from({ length: ROLES }, (_, r) => ({ id: role(r), organization_id: ORG, key: `r${r}`, name: `R${r}` })),
      permissions: Array.from({ length: ROLES }, (_, r) => ({ id: id(0xe, r), organization_id: ORG, key: perm(r) })),
      role_permissions: Array.from({ length: ROLES }, (_, r) => ({ role_id: role(r), permission_id: id(0xe, r) })),
      role_assignments: [...model].map(([a, g]) => row(a, g)),
    });
    expectSnapshot(snap, model);

    let rev = 2n;
    let next = pairs.length;
    for (let round = 0; round < 6; round++) {
      const before = snap;
      const beforeModel = new Map(model);
      const changes: Change[] = [];
      for (const [a, g] of [...model]) {
        const x = rand();
        if (x < 0.15) {
          changes.push({ table: "role_assignments", op: "DELETE", oldRow: row(a, g), newRow: null });
          model.delete(a);
        } else if (x < 0.35) {
          const flipped = { ...g, active: !g.active };
          changes.push({ table: "role_assignments", op: "UPDATE", oldRow: row(a, g), newRow: row(a, flipped) });
          model.set(a, flipped);
        }
      }
      // New ids for the pairs no assignment holds, and deleted ids back for some of them.
      const held = new Set([...model.values()].map((g) => `${g.user}/${g.role}`));
      for (let u = 0; u < USERS; u++)
        for (let r = 0; r < ROLES; r++) {
          if (held.has(`${u}/${r}`) || rand() < 0.5) continue;
          const free = [...beforeModel.keys()].find((a) => !model.has(a));
          const a = free !== undefined && rand() < 0.5 ? free : next++;
          const g = { user: u, role: r, active: rand() >= 0.2 };
          changes.push({ table: "role_assignments", op: "INSERT", oldRow: null, newRow: row(a, g) });
          model.set(a, g);
        }
      snap = snap.apply(changes, rev++);
      expectSnapshot(snap, model);
      expectSnapshot(before, beforeModel);
    }
  });
});
