import { describe, expect, it } from "vitest";

import { CHUNK_SIZE, FlatI32, I32, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, U8 } from "./paged.js";

// Enough pages for several directory chunks, and a last chunk that is not full.
const N = PAGE_SIZE * (CHUNK_SIZE * 2 + 7);

describe("paged columns (two-level directories)", () => {
  it("reads what was written across chunk boundaries, and the default past the end", () => {
    const c = new I32(-1);
    for (let i = 0; i < N; i += 997) c.set(i, i);
    for (let i = 0; i < N; i += 997) expect(c.get(i)).toBe(i);
    expect(c.get(1)).toBe(-1);
    expect(c.get(N * 4)).toBe(-1);
    const last = N - 1 - ((N - 1) % 997);
    expect(c.pageCount).toBe(Math.floor(last / PAGE_SIZE) + 1);
  });

  it("a fork's writes, growth included, never reach its parent or its siblings", () => {
    const parent = new U8();
    for (let i = 0; i < N; i += 101) parent.set(i, (i % 250) + 1);
    parent.seal();
    const a = parent.fork();
    const b = parent.fork();
    const touched = [0, PAGE_SIZE * CHUNK_SIZE - 1, PAGE_SIZE * CHUNK_SIZE, N - 1];
    for (const i of touched) a.set(i, 255);
    a.set(N + PAGE_SIZE * CHUNK_SIZE, 7); // grows the fork by a new chunk
    b.set(N - 1, 9);
    for (const i of touched) {
      expect(a.get(i)).toBe(255);
      expect(parent.get(i)).toBe(i % 101 === 0 ? (i % 250) + 1 : 0);
    }
    expect(a.get(N + PAGE_SIZE * CHUNK_SIZE)).toBe(7);
    expect(parent.get(N + PAGE_SIZE * CHUNK_SIZE)).toBe(0);
    expect(b.get(N - 1)).toBe(9);
    expect(b.get(0)).toBe(parent.get(0));
    // Untouched pages stay shared; a sealed fork forks again without disturbing the first.
    expect(a.get(101)).toBe(102);
    a.seal();
    const c = a.fork();
    c.set(0, 1);
    expect(a.get(0)).toBe(255);
    expect(c.get(0)).toBe(1);
  });
});

describe("flat int columns (one-level directory, the hot columns)", () => {
  it("reads what was written, the default past the end, and a fork's writes stay in the fork", () => {
    const parent = new FlatI32(-1);
    for (let i = 0; i < N; i += 997) parent.set(i, i);
    expect(parent.get(1)).toBe(-1);
    expect(parent.get(N * 4)).toBe(-1);
    parent.seal();
    const a = parent.fork();
    const b = parent.fork();
    a.set(0, 5);
    a.set(N + 3, 7); // grows the fork
    b.set(997, 9);
    expect(parent.get(0)).toBe(0);
    expect(a.get(0)).toBe(5);
    expect(b.get(0)).toBe(0);
    expect(a.get(N + 3)).toBe(7);
    expect(parent.get(N + 3)).toBe(-1);
    expect(parent.get(997)).toBe(997);
    expect(b.get(997)).toBe(9);
    expect(a.get(997)).toBe(997);
    // A page the fork copied is its own: a second write goes to the same copy.
    a.set(1, 6);
    expect(a.get(0)).toBe(5);
    expect(a.get(1)).toBe(6);
    expect(parent.get(1)).toBe(-1);
    a.seal();
    const c = a.fork();
    c.set(0, 1);
    expect(a.get(0)).toBe(5);
    expect(c.get(0)).toBe(1);
  });
});

describe("flat int columns: the base a builder's seal makes, and pages laid over it", () => {
  /** The hot path's read (check.ts, places.ts holdsBit), beside get(). */
  const direct = (c: FlatI32, i: number): number => {
    const k = c.over[i >>> PAGE_SHIFT] as number;
    return k === 0 ? (c.base[i] as number) : ((c.pages[k - 1] as Int32Array)[i & PAGE_MASK] as number);
  };

  it("moves a builder's pages into one base on seal; forks copy only the pages they write", () => {
    const built = new FlatI32(-1);
    for (let i = 0; i < 3 * PAGE_SIZE; i += 7) built.set(i, i);
    expect(built.pages.length).toBe(3);
    built.seal();
    expect(built.pages.length).toBe(0);
    expect(built.base.length).toBe(3 * PAGE_SIZE);
    for (let i = 0; i < 3 * PAGE_SIZE; i++) expect(direct(built, i)).toBe(i % 7 === 0 ? i : -1);

    const X = 7 * 586; // on page 1, written by the builder
    const a = built.fork();
    a.set(X, 70);
    expect(a.pages.length).toBe(1); // one page copied out of the base, the rest still read from it
    expect(direct(a, X)).toBe(70);
    expect(direct(a, X + 7)).toBe(X + 7);
    expect(direct(a, 14)).toBe(14);
    expect(built.get(X)).toBe(X);
    expect(direct(built, X)).toBe(X);
    a.set(5 * PAGE_SIZE, 9); // grows past the base
    expect(a.get(5 * PAGE_SIZE)).toBe(9);
    expect(a.get(4 * PAGE_SIZE)).toBe(-1);
    expect(built.get(5 * PAGE_SIZE)).toBe(-1);
    a.seal();
    expect(a.pages.length).toBe(4); // page 1 and the grown pages 3-5: a fork's seal keeps them over the shared base
    expect(a.base).toBe(built.base);

    // A fork of the fork copies the page its parent laid over the base, and leaves the parent's alone.
    const b = a.fork();
    b.set(X + 1, 80);
    expect(b.get(X)).toBe(70);
    expect(b.get(X + 1)).toBe(80);
    expect(a.get(X + 1)).toBe(-1);
    expect(direct(a, X + 1)).toBe(-1);
    expect(b.pages.length).toBe(a.pages.length);
    b.set(X + 2, 90); // its own copy now: written in place
    expect(b.pages.length).toBe(a.pages.length);
    expect(direct(b, X + 2)).toBe(90);
  });
});
