// Paged copy-on-write columns: the storage every snapshot is made of.
//
// A column is a two-level directory of fixed-size pages: a top array of
// chunks, each chunk an array of up to 256 pages. Snapshots share pages and
// chunks. A builder owns every page and chunk it creates. fork() is O(1):
// the forked column shares its parent's directory until its first write,
// which copies the top array (O(n / 2^18)); the first write to a chunk or
// a page copies it once (a chunk is 256 references, a page 4096 entries)
// and remembers the copy as owned, so later writes in the same apply go
// straight to it. A first write thus costs O(sqrt n)-ish, not O(n / 4096):
// at 5M assignments a flat directory of the grant records was 19.5k
// references of 1024-entry pages, and copying it dominated a single
// insert's apply. Pages are 4096 entries (16 KiB): against 1024-entry pages
// a Check at 5M is 1.12-1.28x as fast (a quarter of the page objects between
// it and its grant records) and an apply's page copies cost it some 10-20 µs
// more (docs/benchmarks.md, "Larger pages"). Reads past the end (an id
// interned after this snapshot was built) return the column's default.
//
// Readers on the hot path index the directory themselves:
//   const p = i >>> PAGE_SHIFT; const page = dir[p >>> CHUNK_SHIFT]?.[p & CHUNK_MASK];

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const PAGE_MASK = PAGE_SIZE - 1;
export const CHUNK_SHIFT = 8;
export const CHUNK_SIZE = 1 << CHUNK_SHIFT;
export const CHUNK_MASK = CHUNK_SIZE - 1;

const SHARED = 0; // a fresh fork: directory and pages belong to the parent
const TRACKED = 1; // top array copied; chunks and pages in `owned` were copied or created by this fork
const ALL = 2; // a builder's column: every chunk and page is its own

abstract class Paged<A extends { slice(): A }> {
  #mode: number;
  #owned: Set<unknown> | undefined;
  /** Pages in all (every chunk but the last holds CHUNK_SIZE). */
  #count: number;

  constructor(
    public dir: A[][],
    building: boolean,
  ) {
    this.#mode = building ? ALL : SHARED;
    this.#count = dir.length === 0 ? 0 : (dir.length - 1) * CHUNK_SIZE + (dir[dir.length - 1] as A[]).length;
  }

  protected abstract blank(): A;

  /** Pages held (for sizes and stats). */
  get pageCount(): number {
    return this.#count;
  }

  /** The page holding index i, owned by this column (copied or created on first write). */
  protected writable(i: number): A {
    const p = i >>> PAGE_SHIFT;
    if (this.#mode === SHARED) {
      this.dir = this.dir.slice();
      this.#owned = new Set();
      this.#mode = TRACKED;
    }
    while (this.#count <= p) this.#grow();
    const chunk = this.#chunk(p >>> CHUNK_SHIFT);
    let page = chunk[p & CHUNK_MASK] as A;
    if (this.#mode === TRACKED && !(this.#owned as Set<unknown>).has(page)) {
      page = page.slice();
      chunk[p & CHUNK_MASK] = page;
      (this.#owned as Set<unknown>).add(page);
    }
    return page;
  }

  /** Chunk c, owned by this column. */
  #chunk(c: number): A[] {
    let chunk = this.dir[c] as A[];
    if (this.#mode === TRACKED && !(this.#owned as Set<unknown>).has(chunk)) {
      chunk = chunk.slice();
      this.dir[c] = chunk;
      (this.#owned as Set<unknown>).add(chunk);
    }
    return chunk;
  }

  /** Appends one blank page (and a chunk when the last one is full). */
  #grow(): void {
    const c = this.#count >>> CHUNK_SHIFT;
    if (c === this.dir.length) {
      const fresh: A[] = [];
      this.dir.push(fresh);
      this.#owned?.add(fresh);
    }
    const page = this.blank();
    this.#chunk(c).push(page);
    this.#owned?.add(page);
    this.#count++;
  }

  /** Ends writing: a builder's or fork's column becomes read-only to its owner; forks of it copy on write. */
  seal(): void {
    this.#mode = SHARED;
    this.#owned = undefined;
  }
}

export class I32 extends Paged<Int32Array> {
  constructor(
    readonly fill: number,
    dir: Int32Array[][] = [],
    building = true,
  ) {
    super(dir, building);
  }
  protected blank(): Int32Array {
    const a = new Int32Array(PAGE_SIZE);
    if (this.fill !== 0) a.fill(this.fill);
    return a;
  }
  get(i: number): number {
    const p = i >>> PAGE_SHIFT;
    const chunk = this.dir[p >>> CHUNK_SHIFT];
    const page = chunk === undefined ? undefined : chunk[p & CHUNK_MASK];
    return page === undefined ? this.fill : (page[i & PAGE_MASK] as number);
  }
  set(i: number, v: number): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(): I32 {
    return new I32(this.fill, this.dir, false);
  }

  /** A builder's column holding `flat` (copied into pages; past its end, `fill`). */
  static of(fill: number, flat: Int32Array): I32 {
    const pages: Int32Array[] = [];
    for (let at = 0; at < flat.length; at += PAGE_SIZE) {
      const page = new Int32Array(PAGE_SIZE);
      if (fill !== 0 && at + PAGE_SIZE > flat.length) page.fill(fill);
      page.set(flat.subarray(at, at + PAGE_SIZE));
      pages.push(page);
    }
    const dir: Int32Array[][] = [];
    for (let p = 0; p < pages.length; p += CHUNK_SIZE) dir.push(pages.slice(p, p + CHUNK_SIZE));
    return new I32(fill, dir, true);
  }
}

/** Float64 column; the default is +Infinity ("never" for the time columns). */
export class F64 extends Paged<Float64Array> {
  constructor(dir: Float64Array[][] = [], building = true) {
    super(dir, building);
  }
  protected blank(): Float64Array {
    return new Float64Array(PAGE_SIZE).fill(Number.POSITIVE_INFINITY);
  }
  get(i: number): number {
    const p = i >>> PAGE_SHIFT;
    const chunk = this.dir[p >>> CHUNK_SHIFT];
    const page = chunk === undefined ? undefined : chunk[p & CHUNK_MASK];
    return page === undefined ? Number.POSITIVE_INFINITY : (page[i & PAGE_MASK] as number);
  }
  set(i: number, v: number): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(): F64 {
    return new F64(this.dir, false);
  }
}

/** Small flags and enums; the default is 0. */
export class U8 extends Paged<Uint8Array> {
  constructor(dir: Uint8Array[][] = [], building = true) {
    super(dir, building);
  }
  protected blank(): Uint8Array {
    return new Uint8Array(PAGE_SIZE);
  }
  get(i: number): number {
    const p = i >>> PAGE_SHIFT;
    const chunk = this.dir[p >>> CHUNK_SHIFT];
    const page = chunk === undefined ? undefined : chunk[p & CHUNK_MASK];
    return page === undefined ? 0 : (page[i & PAGE_MASK] as number);
  }
  set(i: number, v: number): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(): U8 {
    return new U8(this.dir, false);
  }
}

/** Plain values (strings, small immutable arrays); the default is `fill`. Values are never mutated in place. */
export class Obj<T> extends Paged<T[]> {
  constructor(
    readonly fill: T,
    dir: T[][][] = [],
    building = true,
  ) {
    super(dir, building);
  }
  protected blank(): T[] {
    return new Array<T>(PAGE_SIZE).fill(this.fill);
  }
  get(i: number): T {
    const p = i >>> PAGE_SHIFT;
    const chunk = this.dir[p >>> CHUNK_SHIFT];
    const page = chunk === undefined ? undefined : chunk[p & CHUNK_MASK];
    return page === undefined ? this.fill : (page[i & PAGE_MASK] as T);
  }
  set(i: number, v: T): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(): Obj<T> {
    return new Obj(this.fill, this.dir, false);
  }
}

/**
 * An int column read as one flat typed array: when a builder seals it, its
 * pages are copied into one `base`, and a fork's writes go to copies of the
 * pages they touch, laid over the base (`over[p]`: 0 reads page p from the
 * base, k from `pages[k - 1]`). A read of a page nobody wrote since the
 * build is over[p] (a small array, always cached) and then the base: no page
 * object between the reader and its entry. Paged columns put one there, and
 * at 5M assignments its header was one more cache miss per hot column read
 * (docs/benchmarks.md, "Eighth look"). For the columns Check reads on every
 * call: a user's, an organization's, a role's and a permission's entry, and
 * the grant records. Copy-on-write as in Paged: a fork's first write copies
 * `over` (4 bytes a page) and the list of copies, a page's first write copies
 * the page; writes never touch the base, which every snapshot of the build
 * shares. Readers on the hot path read it themselves:
 *   const p = i >>> PAGE_SHIFT; const k = over[p];  // p < pageCount
 *   k === 0 ? base[i] : pages[k - 1][i & PAGE_MASK]
 */
export class FlatI32 {
  #mode: number;
  #owned: Set<Int32Array> | undefined;
  /** Pages in all; reads past them return `fill`. */
  #count: number;

  constructor(
    readonly fill: number,
    public base: Int32Array = new Int32Array(0),
    public over: Int32Array = new Int32Array(0),
    public pages: Int32Array[] = [],
    count = 0,
    building = true,
  ) {
    this.#mode = building ? ALL : SHARED;
    this.#count = count;
  }

  get pageCount(): number {
    return this.#count;
  }

  get(i: number): number {
    const p = i >>> PAGE_SHIFT;
    if (p >= this.#count) return this.fill;
    const k = this.over[p] as number;
    return k === 0 ? (this.base[i] as number) : ((this.pages[k - 1] as Int32Array)[i & PAGE_MASK] as number);
  }

  set(i: number, v: number): void {
    this.#writable(i >>> PAGE_SHIFT)[i & PAGE_MASK] = v;
  }

  /** Page p as this column's own copy (made on its first write). */
  #writable(p: number): Int32Array {
    if (this.#mode === SHARED) {
      this.over = this.over.slice();
      this.pages = this.pages.slice();
      this.#owned = new Set();
      this.#mode = TRACKED;
    }
    while (this.#count <= p) this.#grow();
    const k = this.over[p] as number;
    if (k !== 0) {
      const page = this.pages[k - 1] as Int32Array;
      if (this.#mode !== TRACKED || (this.#owned as Set<Int32Array>).has(page)) return page;
      const copy = page.slice();
      this.pages[k - 1] = copy;
      (this.#owned as Set<Int32Array>).add(copy);
      return copy;
    }
    return this.#addPage(this.base.slice(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), p);
  }

  /** Lays `page` over page p (a new index in `pages`). */
  #addPage(page: Int32Array, p: number): Int32Array {
    this.pages.push(page);
    this.over[p] = this.pages.length;
    this.#owned?.add(page);
    return page;
  }

  /** Appends one blank page (over is this column's own here: a builder's, or copied by #writable). */
  #grow(): void {
    if (this.#count === this.over.length) {
      const grown = new Int32Array(Math.max(16, this.over.length * 2));
      grown.set(this.over);
      this.over = grown;
    }
    const page = new Int32Array(PAGE_SIZE);
    if (this.fill !== 0) page.fill(this.fill);
    this.#addPage(page, this.#count++);
  }

  fork(): FlatI32 {
    return new FlatI32(this.fill, this.base, this.over, this.pages, this.#count, false);
  }

  /** Ends writing; a builder's column is first copied into one flat base (its pages are its own, so they are dropped). */
  seal(): void {
    if (this.#mode === ALL) this.#flatten();
    this.#mode = SHARED;
    this.#owned = undefined;
  }

  #flatten(): void {
    if (this.pages.length === 0) return;
    const base = new Int32Array(this.#count * PAGE_SIZE);
    for (let p = 0; p < this.#count; p++) {
      const k = this.over[p] as number;
      base.set(k === 0 ? this.base.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE) : (this.pages[k - 1] as Int32Array), p * PAGE_SIZE);
    }
    this.base = base;
    this.over = new Int32Array(this.#count);
    this.pages = [];
  }
}

/** Rough bytes held by a column's pages (for stats and the benchmark). */
export function pagedBytes(c: I32 | FlatI32 | F64 | U8 | Obj<unknown>): number {
  const per = c instanceof I32 || c instanceof FlatI32 ? 4 : c instanceof F64 ? 8 : c instanceof U8 ? 1 : 8;
  return c.pageCount * PAGE_SIZE * per;
}
