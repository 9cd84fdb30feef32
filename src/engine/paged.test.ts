import { describe, expect, it } from "vitest";

import { CHUNK_SIZE, FlatI32, I32, PAGE_SIZE, U8 } from "./paged.js";

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
