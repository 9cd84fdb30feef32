import { describe, expect, it } from "vitest";
import { InlineUuidInterner, UuidInterner } from "./interner.js";

/** A deterministic UUID's four words for index i (a 32-bit mix, so the slots spread). */
function words(i: number): [number, number, number, number] {
  let h = Math.imul(i ^ 0x5bd1e995, 0x27d4eb2d) >>> 0;
  h = (h ^ (h >>> 15)) >>> 0;
  return [h, (i * 2654435761) >>> 0, 0x4000_8000 ^ i, (h ^ 0xdeadbeef) >>> 0];
}

describe("UuidInterner.appendUnindexed", () => {
  // Enough ids for the sorted placement (and, from a small table, a rehash when they are placed).
  for (const [label, reserve] of [
    ["reserved", 100_000],
    ["grown on placing", 0],
  ] as const) {
    it(`finds every id appended unindexed, once placed (${label})`, () => {
      const ids = new UuidInterner();
      if (reserve > 0) ids.reserve(reserve);
      const before = ids.internWords(...words(-1));
      const n = 70_000;
      let wrong = 0;
      for (let i = 0; i < n; i++) if (ids.appendUnindexed(...words(i)) !== i + 1) wrong++;
      ids.indexPending();
      expect(ids.count).toBe(n + 1);
      expect(ids.internWords(...words(-1))).toBe(before);
      for (let i = 0; i < n; i++) {
        if (ids.internWords(...words(i)) !== i + 1) wrong++;
        if (ids.find(ids.uuid(i + 1)) !== i + 1) wrong++;
      }
      expect(wrong).toBe(0);
      expect(ids.internWords(...words(n))).toBe(n + 1);
      expect(ids.count).toBe(n + 2);
    });
  }

  it("places what is pending before any probe (without indexPending)", () => {
    const ids = new UuidInterner();
    for (let i = 0; i < 20_000; i++) ids.appendUnindexed(...words(i));
    expect(ids.find(ids.uuid(12_345))).toBe(12_345);
    for (let i = 20_000; i < 20_010; i++) ids.appendUnindexed(...words(i));
    expect(ids.internWords(...words(20_005))).toBe(20_005);
    expect(ids.count).toBe(20_010);
  });
});

describe("UUID text", () => {
  const U = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
  it("is read in either case, and refused with any other character at any digit's place", () => {
    for (const ids of [new UuidInterner(), new InlineUuidInterner()]) {
      const id = ids.intern(U);
      expect(ids.find(U.toUpperCase())).toBe(id);
      expect(ids.uuid(id)).toBe(U);
      // Not digits, including characters whose low seven bits are one ('\u0161' & 127 = 'a', '\u00e4' & 127 = 'd').
      const others = ["g", "G", "/", ":", "@", "`", " ", "-", "\u0161", "\u00e4", "\u0130", "\uffff"];
      let accepted = 0;
      for (let k = 0; k < 36; k++) {
        if (U[k] === "-") continue;
        for (const x of others) if (ids.find(`${U.slice(0, k)}${x}${U.slice(k + 1)}`) !== -1) accepted++;
      }
      expect(accepted).toBe(0);
      expect(() => ids.intern(`${U.slice(0, 35)}\u0161`)).toThrow(/not a UUID/);
    }
  });
});

describe("UuidInterner.renumber", () => {
  it("moves every id to its new number: found there, with its text", () => {
    const ids = new UuidInterner();
    const n = 10_000;
    for (let i = 0; i < n; i++) ids.internWords(...words(i));
    const texts = Array.from({ length: n }, (_, i) => ids.uuid(i));
    // A permutation that moves every id (n is even: none maps to itself).
    const perm = new Int32Array(n);
    for (let i = 0; i < n; i++) perm[i] = n - 1 - i;
    ids.renumber(perm);
    let wrong = 0;
    for (let i = 0; i < n; i++) {
      if (ids.find(texts[i] as string) !== perm[i]) wrong++;
      if (ids.uuid(perm[i] as number) !== texts[i]) wrong++;
    }
    expect(wrong).toBe(0);
    expect(ids.count).toBe(n);
    expect(ids.internWords(...words(n))).toBe(n);
  });
});
