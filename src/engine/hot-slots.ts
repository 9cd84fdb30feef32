// Users and organizations by UUID, per snapshot: an open-addressing table
// whose slot holds the entity's id, its four words and what Check reads of
// it side by side (32 bytes, one cache line): a user's flags and grant list
// head, an organization's flags, tenant and permission table. Check finds
// the subject and the resource with one probe each and reads everything it
// needs of them from the same line, where the shared interner's slot gave
// only the id and the entity's hot entry (uHot, oHot) was one more dependent
// cache miss (docs/benchmarks.md, "Eighth look").
//
// A mirror of the hot column, nothing else: every write of an entry goes
// through state.ts's setters, which write both. A builder fills the table
// once, at the end (build), from the column; a fork writes it copy-on-write
// like any column and grows it into a new table when it is three-quarters
// full. An entity whose hot entry was never written has no slot (Check: not
// found, as an all-zero hot entry reads). Slots are never freed: a deleted
// entity keeps one with a zero entry, as its hot entry stays.

import type { InlineUuidInterner } from "./interner.js";
import { hash, slotFor } from "./interner.js";
import { FlatI32, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE } from "./paged.js";

/** Ints per slot: [id + 1 (0: empty), four words, up to three ints of the hot entry]. */
export const HS = 8;
/** Where a slot's copy of the hot entry starts (its int j at HS_ENTRY + j). */
export const HS_ENTRY = 5;
const BUILD_LOAD = 0.7;
const MAX_LOAD = 0.75;

/** One snapshot's table: its slots (a column), their number, how many are taken, and the hot column's stride and width mirrored. */
export interface HotSlots {
  t: FlatI32;
  cap: number;
  used: number;
  /** Ints per entry in the hot column, and how many of them (the first, at most 3) the slot holds. */
  stride: number;
  width: number;
}

/** The table of a builder that has not built it yet (cap 0: nothing mirrored, nothing found). */
export const unbuiltSlots = (stride: number, width: number): HotSlots => ({ t: new FlatI32(0), cap: 0, used: 0, stride, width });

const W = new Int32Array(4);

/**
 * The slot (its first int's index) of the entity whose words are w[at..at+3], -1 when it has none.
 * Read straight from the column's base or the page laid over it: a slot never straddles a page.
 */
export function findSlot(h: HotSlots, w: Int32Array, at: number): number {
  const cap = h.cap;
  if (cap === 0) return -1;
  const a = w[at] as number;
  const b = w[at + 1] as number;
  const c = w[at + 2] as number;
  const d = w[at + 3] as number;
  const t = h.t;
  const base = t.base;
  const over = t.over;
  for (let i = slotFor(hash(a, b, c, d), cap); ; i = i + 1 === cap ? 0 : i + 1) {
    const x = i * HS;
    const k = over[x >>> PAGE_SHIFT] as number;
    const g = k === 0 ? base : (t.pages[k - 1] as Int32Array);
    const o = k === 0 ? x : x & PAGE_MASK;
    if (g[o] === 0) return -1;
    if (g[o + 1] === a && g[o + 2] === b && g[o + 3] === c && g[o + 4] === d) return x;
  }
}

/** Takes a slot for `id`, which has none (its words in W; the caller keeps the load below MAX_LOAD). */
function newSlot(h: HotSlots, id: number): number {
  const t = h.t;
  let i = slotFor(hash(W[0] as number, W[1] as number, W[2] as number, W[3] as number), h.cap);
  while (t.get(i * HS) !== 0) i = i + 1 === h.cap ? 0 : i + 1;
  const x = i * HS;
  t.set(x, id + 1);
  for (let j = 0; j < 4; j++) t.set(x + 1 + j, W[j] as number);
  h.used++;
  return x;
}

/** Whether `id`'s hot entry is all zero (no slot needed). */
function blank(hot: FlatI32, id: number, stride: number, width: number): boolean {
  for (let j = 0; j < width; j++) if (hot.get(id * stride + j) !== 0) return false;
  return true;
}

/**
 * A sealed table of every id of `ids` with a hot entry that is not all zero, room for `extra` more.
 * Filled as one plain array (a build places a million users: no column write per int), which then
 * becomes the column's base. Without `extra` (a build) the table has the interner's size and hash,
 * and the ids are placed in the order of the interner's slots: each lands at or just after the same
 * home slot, so the writes sweep the table once instead of missing the cache for each id.
 */
export function buildSlots(ids: InlineUuidInterner, hot: FlatI32, stride: number, width: number, extra = 0): HotSlots {
  let n = 0;
  if (extra > 0) for (let id = 0; id < ids.count; id++) if (!blank(hot, id, stride, width)) n++;
  const cap = extra > 0 ? Math.ceil((n + extra) / BUILD_LOAD) : Math.max(64, ids.capacity);
  const pages = Math.ceil((cap * HS) / PAGE_SIZE);
  const t = new Int32Array(pages * PAGE_SIZE);
  let used = 0;
  ids.forEachInSlotOrder((id, w, at) => {
    if (blank(hot, id, stride, width)) return;
    const a = w[at] as number;
    const b = w[at + 1] as number;
    const c = w[at + 2] as number;
    const d = w[at + 3] as number;
    let i = slotFor(hash(a, b, c, d), cap);
    while (t[i * HS] !== 0) i = i + 1 === cap ? 0 : i + 1;
    const x = i * HS;
    t[x] = id + 1;
    t[x + 1] = a;
    t[x + 2] = b;
    t[x + 3] = c;
    t[x + 4] = d;
    for (let j = 0; j < width; j++) t[x + HS_ENTRY + j] = hot.get(id * stride + j);
    used++;
  });
  return { t: new FlatI32(0, t, new Int32Array(pages), [], pages, false), cap, used, stride, width };
}

/**
 * Copies `id`'s hot entry (just written) into its slot, taking one when it has none and the entry is
 * not all zero. Returns the table to keep: `h` itself, or a larger one built from `hot` when `h` was full.
 */
export function mirrorSlot(h: HotSlots, ids: InlineUuidInterner, hot: FlatI32, id: number): HotSlots {
  if (h.cap === 0) return h;
  ids.wordsOf(id, W, 0);
  let x = findSlot(h, W, 0);
  if (x < 0) {
    if (blank(hot, id, h.stride, h.width)) return h;
    if (h.used + 1 > h.cap * MAX_LOAD) return buildSlots(ids, hot, h.stride, h.width, h.used);
    x = newSlot(h, id);
  }
  for (let j = 0; j < h.width; j++) h.t.set(x + HS_ENTRY + j, hot.get(id * h.stride + j));
  return h;
}

/** A fork's copy-on-write view of a sealed table. */
export const forkSlots = (h: HotSlots): HotSlots => ({ ...h, t: h.t.fork() });
