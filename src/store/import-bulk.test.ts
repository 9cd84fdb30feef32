import { describe, expect, it } from "vitest";
import { CHUNK_ROWS, Chunker } from "./import-bulk.js";
import type { Upsert, Validated } from "./import-rows.js";

const rec = { section: "T", index: 0, label: "T[0]", values: new Map(), arrays: new Map(), del: false } satisfies Validated;
/** An upsert of row `key` into `table`, with column b only when `wide`. */
const item = (key: string, opts: { table?: string; wide?: boolean } = {}) => ({
  rec,
  u: {
    table: opts.table ?? "t",
    cols: [["a", "text", key], ...(opts.wide ? [["b", "text", "x"] as Upsert["cols"][number]] : [])],
    conflict: "(a)",
    keep: ["a"],
  } satisfies Upsert,
});

/** Every chunk the chunker cuts, in the order it hands them out, as row keys. */
function cut(items: ReturnType<typeof item>[]): string[][] {
  const c = new Chunker();
  const out = [...items.flatMap((i) => c.add(i)), ...c.end()];
  return out.map((chunk) => chunk.map((i) => String(i.u.cols[0]?.[2])));
}

describe("Chunker (no database)", () => {
  it("hands out a full chunk as soon as it is full, the rest at the end", () => {
    const c = new Chunker();
    const handed: number[] = [];
    for (let n = 0; n < CHUNK_ROWS * 2 + 3; n++) handed.push(c.add(item(`k${n}`)).length);
    expect(handed.filter((x) => x > 0)).toHaveLength(2);
    expect(handed[CHUNK_ROWS - 1]).toBe(1);
    expect(c.end().map((x) => x.length)).toEqual([3]);
  });

  it("groups rows by columns while every row is written once", () => {
    expect(cut([item("1"), item("2", { wide: true }), item("3"), item("4", { wide: true })])).toEqual([
      ["1", "3"],
      ["2", "4"],
    ]);
  });

  it("keeps every row's writes in record order once a row is written twice", () => {
    // Row 1 twice: what was grouped so far is cut, then chunks follow the records, never holding a row twice.
    expect(cut([item("1"), item("2", { wide: true }), item("3"), item("1", { wide: true }), item("4", { wide: true }), item("4")])).toEqual([
      ["1", "3"],
      ["2"],
      ["1", "4"],
      ["4"],
    ]);
    // Another table: record order from there on.
    expect(cut([item("1"), item("2", { table: "u" }), item("3")])).toEqual([["1"], ["2"], ["3"]]);
  });
});
