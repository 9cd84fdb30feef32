// Paged copy-on-write columns: the storage every snapshot is made of.
//
// A column is a directory (a JS array) of fixed-size pages. A snapshot owns
// its directories; the pages are shared between snapshots. fork(gen) copies
// the directory only (O(n / PAGE)); the first write to a page in a fork
// copies that page once and tags it with the fork's generation, so later
// writes in the same apply go straight to the copy. Reads past the end (an
// id interned after this snapshot was built) return the column's default.

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const PAGE_MASK = PAGE_SIZE - 1;

let lastGeneration = 0;
/** A fresh generation tag for a builder or a fork: pages carrying it belong to that writer alone. */
export function nextGeneration(): number {
  return ++lastGeneration;
}

abstract class Paged<A extends { slice(): A }> {
  constructor(
    public pages: A[],
    protected gens: number[],
    protected gen: number,
  ) {}

  protected abstract blank(): A;

  /** The page holding index i, owned by this column's generation (copied or created on first write). */
  protected writable(i: number): A {
    const p = i >>> PAGE_SHIFT;
    while (this.pages.length <= p) {
      this.pages.push(this.blank());
      this.gens.push(this.gen);
    }
    if (this.gens[p] !== this.gen) {
      this.pages[p] = (this.pages[p] as A).slice();
      this.gens[p] = this.gen;
    }
    return this.pages[p] as A;
  }

  /** Entries this column has room for (every index below reads as stored or the default). */
  get capacity(): number {
    return this.pages.length * PAGE_SIZE;
  }
}

export class I32 extends Paged<Int32Array> {
  constructor(
    readonly fill: number,
    gen: number,
    pages: Int32Array[] = [],
    gens: number[] = [],
  ) {
    super(pages, gens, gen);
  }
  protected blank(): Int32Array {
    const a = new Int32Array(PAGE_SIZE);
    if (this.fill !== 0) a.fill(this.fill);
    return a;
  }
  get(i: number): number {
    const page = this.pages[i >>> PAGE_SHIFT];
    return page === undefined ? this.fill : (page[i & PAGE_MASK] as number);
  }
  set(i: number, v: number): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(gen: number): I32 {
    return new I32(this.fill, gen, this.pages.slice(), this.gens.slice());
  }
}

/** Float64 column; the default is +Infinity ("never" for the time columns). */
export class F64 extends Paged<Float64Array> {
  constructor(gen: number, pages: Float64Array[] = [], gens: number[] = []) {
    super(pages, gens, gen);
  }
  protected blank(): Float64Array {
    return new Float64Array(PAGE_SIZE).fill(Number.POSITIVE_INFINITY);
  }
  get(i: number): number {
    const page = this.pages[i >>> PAGE_SHIFT];
    return page === undefined ? Number.POSITIVE_INFINITY : (page[i & PAGE_MASK] as number);
  }
  set(i: number, v: number): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(gen: number): F64 {
    return new F64(gen, this.pages.slice(), this.gens.slice());
  }
}

/** Small flags and enums; the default is 0. */
export class U8 extends Paged<Uint8Array> {
  constructor(gen: number, pages: Uint8Array[] = [], gens: number[] = []) {
    super(pages, gens, gen);
  }
  protected blank(): Uint8Array {
    return new Uint8Array(PAGE_SIZE);
  }
  get(i: number): number {
    const page = this.pages[i >>> PAGE_SHIFT];
    return page === undefined ? 0 : (page[i & PAGE_MASK] as number);
  }
  set(i: number, v: number): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(gen: number): U8 {
    return new U8(gen, this.pages.slice(), this.gens.slice());
  }
}

/** Plain values (strings, small immutable arrays); the default is `fill`. Values are never mutated in place. */
export class Obj<T> extends Paged<T[]> {
  constructor(
    readonly fill: T,
    gen: number,
    pages: T[][] = [],
    gens: number[] = [],
  ) {
    super(pages, gens, gen);
  }
  protected blank(): T[] {
    return new Array<T>(PAGE_SIZE).fill(this.fill);
  }
  get(i: number): T {
    const page = this.pages[i >>> PAGE_SHIFT];
    return page === undefined ? this.fill : (page[i & PAGE_MASK] as T);
  }
  set(i: number, v: T): void {
    this.writable(i)[i & PAGE_MASK] = v;
  }
  fork(gen: number): Obj<T> {
    return new Obj(this.fill, gen, this.pages.slice(), this.gens.slice());
  }
}

/** Rough bytes held by a column's pages (for stats and the benchmark). */
export function pagedBytes(c: I32 | F64 | U8 | Obj<unknown>): number {
  const per = c instanceof I32 ? 4 : c instanceof F64 ? 8 : c instanceof U8 ? 1 : 8;
  return c.pages.length * PAGE_SIZE * per;
}
