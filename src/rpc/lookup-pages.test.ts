import { describe, expect, it } from "vitest";
import { buildSnapshot } from "../engine/snapshot.js";
import { AuthzError } from "../errors.js";
import { LOOKUP_PIN_TTL_MS, LookupPages } from "./lookup-pages.js";

const at5 = buildSnapshot(5n, {});
const at6 = buildSnapshot(6n, {});
const ITEMS = Array.from({ length: 10 }, (_, i) => i);

/** Every page of the answer, from `pages` (a replica), counting how often the answer was walked from its start. */
function follow(pages: LookupPages, size: number, visible: (x: number) => boolean = () => true, current = at5) {
  let walks = 0;
  const items = () => {
    walks++;
    return ITEMS[Symbol.iterator]();
  };
  const out: number[][] = [];
  let p = pages.page(at5, undefined, "q", size, 1000, items, visible);
  out.push(p.items);
  while (p.nextPageToken) {
    const t = pages.token(p.nextPageToken, "q", "Test");
    p = pages.page(pages.snapshotFor(t, current), t, "q", size, t.n, items, visible);
    out.push(p.items);
  }
  return { out, walks };
}

describe("LookupPages", () => {
  it("pages the whole answer once each, continuing the suspended walk", () => {
    const { out, walks } = follow(new LookupPages(() => 0), 3);
    expect(out).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
    expect(walks).toBe(1);
  });

  it("a page that ends exactly at the end has no token; invisible items are skipped and not counted", () => {
    expect(follow(new LookupPages(() => 0), 5).out).toEqual([
      [0, 1, 2, 3, 4],
      [5, 6, 7, 8, 9],
    ]);
    expect(follow(new LookupPages(() => 0), 2, (x) => x % 3 === 0).out).toEqual([
      [0, 3],
      [6, 9],
    ]);
  });

  it("another replica at the same revision answers the next page by walking to the offset", () => {
    const first = new LookupPages(() => 0);
    const p1 = first.page(
      at5,
      undefined,
      "q",
      4,
      1000,
      () => ITEMS[Symbol.iterator](),
      () => true,
    );
    const other = new LookupPages(() => 0);
    const t = other.token(p1.nextPageToken, "q", "Test");
    const p2 = other.page(
      other.snapshotFor(t, at5),
      t,
      "q",
      4,
      t.n,
      () => ITEMS[Symbol.iterator](),
      () => true,
    );
    expect(p2.items).toEqual([4, 5, 6, 7]);
    expect(t.n).toBe(1000);
  });

  it("a token whose revision is no longer held is ABORTED (LOOKUP_EXPIRED): after the TTL, or on a replica at another revision", () => {
    let now = 0;
    const pages = new LookupPages(() => now);
    const p1 = pages.page(
      at5,
      undefined,
      "q",
      4,
      1000,
      () => ITEMS[Symbol.iterator](),
      () => true,
    );
    const t = pages.token(p1.nextPageToken, "q", "Test");
    expect(pages.snapshotFor(t, at6)).toBe(at5);
    now += LOOKUP_PIN_TTL_MS + 1;
    const err = (() => {
      try {
        pages.snapshotFor(t, at6);
      } catch (e) {
        return e;
      }
    })() as AuthzError;
    expect(err).toBeInstanceOf(AuthzError);
    expect([err.code, err.reason]).toEqual(["ABORTED", "LOOKUP_EXPIRED"]);
    expect(new LookupPages(() => 0).snapshotFor(t, at5)).toBe(at5);
  });

  it("a token of another request, or not a token, is INVALID_ARGUMENT", () => {
    const pages = new LookupPages(() => 0);
    const p1 = pages.page(
      at5,
      undefined,
      "q",
      4,
      1000,
      () => ITEMS[Symbol.iterator](),
      () => true,
    );
    expect(() => pages.token(p1.nextPageToken, "other", "Test")).toThrow(/different Test request/);
    expect(() => pages.token("not-a-token", "q", "Test")).toThrow(/not a token returned by Test/);
  });
});
