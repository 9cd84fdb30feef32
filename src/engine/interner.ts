// Interning: UUIDs and keys to dense ints, append-only and shared by every
// snapshot. An id interned after a snapshot was built is past that
// snapshot's columns, so it reads as "not found" there; a failed apply may
// leave ids interned that no snapshot uses, which costs a few bytes and
// nothing else.
//
// UUIDs are held as 4 x u32 in one typed array with an open-addressing
// index (a Map<string, number> costs ~100 bytes an entry). find() parses the
// text into a scratch array and allocates nothing.

/** Every UTF-16 code unit's hex digit value, -1 for anything else (indexed by charCodeAt directly: no range test per character). */
const HEX = new Int8Array(65536).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[97 + i] = 10 + i;
  HEX[65 + i] = 10 + i;
}
const scratch = new Uint32Array(4);

/** A UUID given as four words (a binary COPY's bytes) into `scratch`, where parse() would put it. */
function setScratch(a: number, b: number, c: number, d: number): void {
  scratch[0] = a;
  scratch[1] = b;
  scratch[2] = c;
  scratch[3] = d;
}

/** Parses a canonical UUID (any case) into `scratch`; false when the text is not one. Locals only: this runs twice per Check. */
function parse(s: string): boolean {
  if (s.length !== 36 || s.charCodeAt(8) !== 45 || s.charCodeAt(13) !== 45 || s.charCodeAt(18) !== 45 || s.charCodeAt(23) !== 45) return false;
  // One loop per run of hex digits (fixed bounds, no per-character test of where the word ends).
  let bad = 0; // goes negative on a character that is not a hex digit (HEX is -1 there)
  let v = 0;
  let h = 0;
  for (let k = 0; k < 8; k++) {
    h = HEX[s.charCodeAt(k)] as number;
    bad |= h;
    v = (v << 4) | h;
  }
  scratch[0] = v;
  for (let k = 9; k < 13; k++) {
    h = HEX[s.charCodeAt(k)] as number;
    bad |= h;
    v = (v << 4) | h;
  }
  for (let k = 14; k < 18; k++) {
    h = HEX[s.charCodeAt(k)] as number;
    bad |= h;
    v = (v << 4) | h;
  }
  scratch[1] = v;
  for (let k = 19; k < 23; k++) {
    h = HEX[s.charCodeAt(k)] as number;
    bad |= h;
    v = (v << 4) | h;
  }
  for (let k = 24; k < 28; k++) {
    h = HEX[s.charCodeAt(k)] as number;
    bad |= h;
    v = (v << 4) | h;
  }
  scratch[2] = v;
  for (let k = 28; k < 36; k++) {
    h = HEX[s.charCodeAt(k)] as number;
    bad |= h;
    v = (v << 4) | h;
  }
  scratch[3] = v;
  return bad >= 0;
}

/**
 * Parses a UUID into out[at..at+3] as int32 words; false when the text is not one. For a caller that
 * parses two ids before it looks either up, so that the two probes' cache misses overlap.
 */
export function parseWords(s: string, out: Int32Array, at: number): boolean {
  if (!parse(s)) return false;
  out[at] = scratch[0] as number;
  out[at + 1] = scratch[1] as number;
  out[at + 2] = scratch[2] as number;
  out[at + 3] = scratch[3] as number;
  return true;
}

/**
 * The UUID hash every table of ids probes by (its four words), its top 24 bits: always a small
 * integer, so that a call that is not inlined returns it without allocating a heap number.
 */
export const hash = (a: number, b: number, c: number, d: number): number => {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ b ^ (h >>> 15), 0xc2b2ae35);
  h = Math.imul(h ^ c ^ (h >>> 13), 0x85ebca6b);
  h = Math.imul(h ^ d ^ (h >>> 16), 0xc2b2ae35);
  return (h ^ (h >>> 15)) >>> 8;
};

const HEXCHARS = "0123456789abcdef";
const BYTE_HEX = Array.from({ length: 256 }, (_, i) => `${HEXCHARS[i >>> 4]}${HEXCHARS[i & 15]}`);

const WPAGE_SHIFT = 12; // ids per page of words: 4096 (64 KiB)
const WPAGE_MASK = (1 << WPAGE_SHIFT) - 1;

/** What every UUID interner answers. */
export interface UuidIds {
  readonly count: number;
  readonly bytes: number;
  find(uuid: string): number;
  intern(uuid: string): number;
  /** intern() for a UUID given as its four big-endian 32-bit words (a binary load: no text). */
  internWords(a: number, b: number, c: number, d: number): number;
  uuid(id: number): string;
  /** Makes room for `n` ids in all without rehashing (a build knows its table counts). */
  reserve(n: number): void;
  /** A read of the slot a probe of this UUID starts at, nothing else (a batch's hint; see UuidInterner.touch). */
  touch(a: number, b: number, c: number, d: number): number;
  /** The probe's second read for what touch() returned, where there is one. */
  touchSlot(s: number): number;
}

const MAX_LOAD = 0.75;
const RESERVE_LOAD = 0.7;
/** A slot for hash h (24 bits) in a table of `cap` slots (any size, not only powers of two); exact in doubles. */
export const slotFor = (h: number, cap: number): number => Math.floor((h * cap) / 16777216);
const capacityFor = (n: number): number => Math.max(64, Math.ceil(n / RESERVE_LOAD));

/** The text of an id's four words, canonical lower case. */
function uuidText(a: number, b: number, c: number, d: number): string {
  const x = (v: number, shift: number) => BYTE_HEX[(v >>> shift) & 255] as string;
  return (
    `${x(a, 24)}${x(a, 16)}${x(a, 8)}${x(a, 0)}-${x(b, 24)}${x(b, 16)}-${x(b, 8)}${x(b, 0)}-` +
    `${x(c, 24)}${x(c, 16)}-${x(c, 8)}${x(c, 0)}${x(d, 24)}${x(d, 16)}${x(d, 8)}${x(d, 0)}`
  );
}

/** Ids whose words live in pages beside a slot table of ids: 16 B per id plus 4 B per slot. For the big, cold tables (assignments, memberships). */
export class UuidInterner implements UuidIds {
  /** Pages of 4 words per id: growing never copies what is there. */
  readonly #pages: Uint32Array[] = [];
  /** Open addressing: id + 1, 0 = empty. */
  #slots = new Int32Array(64);
  #count = 0;
  /** Ids below this are in #slots; the rest were appended unindexed (appendUnindexed) and are placed before the next probe. */
  #indexed = 0;

  /** Ids handed out so far (every snapshot's ids are below this). */
  get count(): number {
    return this.#count;
  }

  /** The id of a UUID, or -1 when it was never interned or is not a UUID. Allocates nothing. */
  find(uuid: string): number {
    if (!parse(uuid)) return -1;
    return this.#probe();
  }

  /** The id of a UUID, interning it when new. Throws on text that is not a UUID. */
  intern(uuid: string): number {
    if (!parse(uuid)) throw new Error(`engine: not a UUID: ${JSON.stringify(uuid.slice(0, 40))}`);
    return this.#internScratch();
  }

  internWords(a: number, b: number, c: number, d: number): number {
    setScratch(a, b, c, d);
    return this.#internScratch();
  }

  /**
   * A new id for a UUID the caller knows was never interned (the primary key
   * of a table a build reads once): no probe first, which in a large table
   * costs a cache miss for each occupied slot it passes.
   */
  appendWords(a: number, b: number, c: number, d: number): number {
    setScratch(a, b, c, d);
    return this.#append();
  }

  /**
   * appendWords without placing the id in the index: a build appending a whole table's primary keys
   * places them all at once, in the order of their slots (indexPending), instead of with a cache miss
   * each. Anything that probes places them first.
   */
  appendUnindexed(a: number, b: number, c: number, d: number): number {
    const id = this.#count++;
    if (id >>> WPAGE_SHIFT >= this.#pages.length) this.#pages.push(new Uint32Array(4 << WPAGE_SHIFT));
    const page = this.#pages[id >>> WPAGE_SHIFT] as Uint32Array;
    const o = (id & WPAGE_MASK) * 4;
    page[o] = a;
    page[o + 1] = b;
    page[o + 2] = c;
    page[o + 3] = d;
    return id;
  }

  /** Places the ids appendUnindexed added (growing the index when they need it). */
  indexPending(): void {
    if (this.#indexed === this.#count) return;
    // Grown as appending them one by one would have grown it (the same size either way).
    let size = this.#slots.length;
    while (this.#count > size * MAX_LOAD) size *= 2;
    if (size !== this.#slots.length) this.#rehash(size);
    else this.#placeFrom(this.#indexed);
  }

  #internScratch(): number {
    const found = this.#probe();
    return found >= 0 ? found : this.#append();
  }

  /**
   * Reads the slot a probe of this UUID starts at and returns what it holds (id + 1, 0 = empty), and
   * nothing else. A batch load calls it for many rows before interning them, so that their cache
   * misses are in flight together instead of one after another. Only a hint: whatever is interned
   * in between makes it a wasted read, never a wrong answer.
   */
  touch(a: number, b: number, c: number, d: number): number {
    if (this.#indexed !== this.#count) this.indexPending();
    const slots = this.#slots;
    return slots[slotFor(hash(a, b, c, d), slots.length)] as number;
  }

  /** The probe's second read, for what touch() returned: the first word of that id (0 for an empty slot). */
  touchSlot(s: number): number {
    if (s === 0) return 0;
    const id = s - 1;
    return (this.#pages[id >>> WPAGE_SHIFT] as Uint32Array)[(id & WPAGE_MASK) * 4] as number;
  }

  /** Interns the UUID in `scratch` as a new id. */
  #append(): number {
    if (this.#indexed !== this.#count) this.indexPending();
    if (this.#count + 1 > this.#slots.length * MAX_LOAD) this.#rehash(this.#slots.length * 2);
    const id = this.#count++;
    if (id >>> WPAGE_SHIFT >= this.#pages.length) this.#pages.push(new Uint32Array(4 << WPAGE_SHIFT));
    (this.#pages[id >>> WPAGE_SHIFT] as Uint32Array).set(scratch, (id & WPAGE_MASK) * 4);
    this.#place(id);
    this.#indexed = this.#count;
    return id;
  }

  reserve(n: number): void {
    if (n > this.#slots.length * RESERVE_LOAD) this.#rehash(capacityFor(n));
  }

  /**
   * Gives every id a new one: `perm[id]` (a permutation of [0, count)). For a builder, before any
   * snapshot holds an id of this interner: the build numbers assignments in the order of their
   * grant records (grant-index.ts compactGrants).
   */
  renumber(perm: Int32Array): void {
    if (this.#indexed !== this.#count) this.indexPending();
    const old = this.#pages;
    const pages = old.map(() => new Uint32Array(4 << WPAGE_SHIFT));
    for (let id = 0; id < this.#count; id++) {
      const to = perm[id] as number;
      const from = old[id >>> WPAGE_SHIFT] as Uint32Array;
      const o = (id & WPAGE_MASK) * 4;
      const page = pages[to >>> WPAGE_SHIFT] as Uint32Array;
      const t = (to & WPAGE_MASK) * 4;
      page[t] = from[o] as number;
      page[t + 1] = from[o + 1] as number;
      page[t + 2] = from[o + 2] as number;
      page[t + 3] = from[o + 3] as number;
    }
    this.#pages.splice(0, old.length, ...pages);
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i] as number;
      if (s !== 0) slots[i] = (perm[s - 1] as number) + 1;
    }
  }

  /** The canonical lower-case text of an id. */
  uuid(id: number): string {
    const page = this.#pages[id >>> WPAGE_SHIFT] as Uint32Array;
    const o = (id & WPAGE_MASK) * 4;
    return uuidText(page[o] as number, page[o + 1] as number, page[o + 2] as number, page[o + 3] as number);
  }

  /** Bytes held (words and index). */
  get bytes(): number {
    return this.#pages.length * (16 << WPAGE_SHIFT) + this.#slots.byteLength;
  }

  #probe(): number {
    if (this.#indexed !== this.#count) this.indexPending();
    const a = scratch[0] as number;
    const b = scratch[1] as number;
    const c = scratch[2] as number;
    const d = scratch[3] as number;
    const slots = this.#slots;
    const cap = slots.length;
    const pages = this.#pages;
    for (let i = slotFor(hash(a, b, c, d), cap); ; i = i + 1 === cap ? 0 : i + 1) {
      const s = slots[i] as number;
      if (s === 0) return -1;
      const id = s - 1;
      const w = pages[id >>> WPAGE_SHIFT] as Uint32Array;
      const o = (id & WPAGE_MASK) * 4;
      if (w[o] === a && w[o + 1] === b && w[o + 2] === c && w[o + 3] === d) return id;
    }
  }

  #place(id: number): void {
    const w = this.#pages[id >>> WPAGE_SHIFT] as Uint32Array;
    const o = (id & WPAGE_MASK) * 4;
    const cap = this.#slots.length;
    let i = slotFor(hash(w[o] as number, w[o + 1] as number, w[o + 2] as number, w[o + 3] as number), cap);
    while (this.#slots[i] !== 0) i = i + 1 === cap ? 0 : i + 1;
    this.#slots[i] = id + 1;
  }

  #rehash(size: number): void {
    this.#slots = new Int32Array(size);
    this.#placeFrom(0);
  }

  /**
   * Places ids [from, count) in the order of the slot each probe starts at (a counting sort of their
   * slots in buckets): the writes sweep the index once instead of each missing
   * the cache. Where in a run of full slots an id lands depends on the order ids are placed; a probe
   * finds it either way.
   */
  #placeFrom(from: number): void {
    const n = this.#count - from;
    if (n < PLACE_SORTED_MIN) {
      for (let id = from; id < this.#count; id++) this.#place(id);
      this.#indexed = this.#count;
      return;
    }
    const slots = this.#slots;
    const cap = slots.length;
    const pages = this.#pages;
    const home = new Int32Array(n);
    const starts = new Int32Array(PLACE_BUCKETS + 1);
    for (let i = 0, id = from; i < n; i++, id++) {
      const w = pages[id >>> WPAGE_SHIFT] as Uint32Array;
      const o = (id & WPAGE_MASK) * 4;
      const slot = slotFor(hash(w[o] as number, w[o + 1] as number, w[o + 2] as number, w[o + 3] as number), cap);
      home[i] = slot;
      (starts[Math.floor((slot * PLACE_BUCKETS) / cap) + 1] as number)++;
    }
    for (let b = 0; b < PLACE_BUCKETS; b++) starts[b + 1] = (starts[b + 1] as number) + (starts[b] as number);
    // Ids and their slots side by side in bucket order, so the placing pass reads both in sequence.
    const sorted = new Int32Array(2 * n);
    for (let i = 0; i < n; i++) {
      const slot = home[i] as number;
      const at = 2 * (starts[Math.floor((slot * PLACE_BUCKETS) / cap)] as number)++;
      sorted[at] = slot;
      sorted[at + 1] = from + i + 1;
    }
    for (let k = 0; k < 2 * n; k += 2) {
      let j = sorted[k] as number;
      while (slots[j] !== 0) j = j + 1 === cap ? 0 : j + 1;
      slots[j] = sorted[k + 1] as number;
    }
    this.#indexed = this.#count;
  }
}

/** Fewer ids than this are placed one by one. */
const PLACE_SORTED_MIN = 1 << 14;
/** Buckets of the sorted placement (by slot): a bucket's slots (a few KiB at 5M ids) stay in the cache while it is placed. */
const PLACE_BUCKETS = 1 << 12;

const SLOT = 5; // inline slot: [id + 1, the four words]

/**
 * Ids whose four words sit in the slot itself, beside the id: a find reads
 * one cache line (rarely two) where the paged layout reads the slot table
 * and then the id's words elsewhere. For the tables Check parses an id of
 * (subjects and resources). 20 B per slot plus 4 B per id (where it sits).
 */
export class InlineUuidInterner implements UuidIds {
  #slots = new Int32Array(64 * SLOT);
  #cap = 64;
  /** The slot of each id (for uuid() and nothing else). */
  #slotOf = new Int32Array(64);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  find(uuid: string): number {
    if (!parse(uuid)) return -1;
    return this.#probe();
  }

  intern(uuid: string): number {
    if (!parse(uuid)) throw new Error(`engine: not a UUID: ${JSON.stringify(uuid.slice(0, 40))}`);
    return this.#internScratch();
  }

  internWords(a: number, b: number, c: number, d: number): number {
    setScratch(a, b, c, d);
    return this.#internScratch();
  }

  #internScratch(): number {
    const found = this.#probe();
    if (found >= 0) return found;
    if (this.#count + 1 > this.#cap * MAX_LOAD) this.#rehash(this.#cap * 2);
    const id = this.#count++;
    if (id >= this.#slotOf.length) {
      const grown = new Int32Array(this.#slotOf.length * 2);
      grown.set(this.#slotOf);
      this.#slotOf = grown;
    }
    this.#place(id, scratch[0] as number, scratch[1] as number, scratch[2] as number, scratch[3] as number);
    return id;
  }

  /** As UuidInterner.touch: one read of the slot a probe starts at (its id and words are there), a hint for a batch. */
  touch(a: number, b: number, c: number, d: number): number {
    return this.#slots[slotFor(hash(a, b, c, d), this.#cap) * SLOT] as number;
  }

  /** Nothing: the slot touch() read holds the words. */
  touchSlot(s: number): number {
    return s;
  }

  reserve(n: number): void {
    if (n > this.#cap * RESERVE_LOAD) this.#rehash(capacityFor(n));
    if (n > this.#slotOf.length) {
      const grown = new Int32Array(n);
      grown.set(this.#slotOf);
      this.#slotOf = grown;
    }
  }

  /** Slots in the table (a table of the same size and hash places every id at the same home slot). */
  get capacity(): number {
    return this.#cap;
  }

  /** Calls fn(id, words, at) for every id in the order of its slot: its four words are words[at..at+3]. */
  forEachInSlotOrder(fn: (id: number, words: Int32Array, at: number) => void): void {
    const w = this.#slots;
    for (let i = 0, o = 0; i < this.#cap; i++, o += SLOT) {
      const s = w[o] as number;
      if (s !== 0) fn(s - 1, w, o + 1);
    }
  }

  /** An id's four words (int32) into out[at..at+3]. */
  wordsOf(id: number, out: Int32Array, at: number): void {
    const o = (this.#slotOf[id] as number) * SLOT;
    const w = this.#slots;
    out[at] = w[o + 1] as number;
    out[at + 1] = w[o + 2] as number;
    out[at + 2] = w[o + 3] as number;
    out[at + 3] = w[o + 4] as number;
  }

  uuid(id: number): string {
    const o = (this.#slotOf[id] as number) * SLOT;
    const w = this.#slots;
    return uuidText(w[o + 1] as number, w[o + 2] as number, w[o + 3] as number, w[o + 4] as number);
  }

  get bytes(): number {
    return this.#slots.byteLength + this.#slotOf.byteLength;
  }

  /** find() for the words parseWords() wrote to w[at..at+3]. */
  findWords(w: Int32Array, at: number): number {
    return this.#probeWords(w[at] as number, w[at + 1] as number, w[at + 2] as number, w[at + 3] as number);
  }

  #probe(): number {
    // Int32 reads of u32 words: compare as int32.
    return this.#probeWords((scratch[0] as number) | 0, (scratch[1] as number) | 0, (scratch[2] as number) | 0, (scratch[3] as number) | 0);
  }

  #probeWords(a: number, b: number, c: number, d: number): number {
    const w = this.#slots;
    const cap = this.#cap;
    for (let i = slotFor(hash(a, b, c, d), cap); ; i = i + 1 === cap ? 0 : i + 1) {
      const o = i * SLOT;
      const s = w[o] as number;
      if (s === 0) return -1;
      if (w[o + 1] === a && w[o + 2] === b && w[o + 3] === c && w[o + 4] === d) return s - 1;
    }
  }

  #place(id: number, a: number, b: number, c: number, d: number): void {
    const w = this.#slots;
    const cap = this.#cap;
    let i = slotFor(hash(a, b, c, d), cap);
    while (w[i * SLOT] !== 0) i = i + 1 === cap ? 0 : i + 1;
    const o = i * SLOT;
    w[o] = id + 1;
    w[o + 1] = a;
    w[o + 2] = b;
    w[o + 3] = c;
    w[o + 4] = d;
    this.#slotOf[id] = i;
  }

  #rehash(cap: number): void {
    const old = this.#slots;
    const oldCap = this.#cap;
    this.#slots = new Int32Array(cap * SLOT);
    this.#cap = cap;
    for (let i = 0; i < oldCap; i++) {
      const o = i * SLOT;
      const s = old[o] as number;
      if (s !== 0) this.#place(s - 1, old[o + 1] as number, old[o + 2] as number, old[o + 3] as number, old[o + 4] as number);
    }
  }
}

/** Strings (permission keys, role keys and names) to dense ids; few distinct values, so a Map is fine. */
export class KeyInterner {
  readonly #ids = new Map<string, number>();
  readonly #keys: string[] = [];

  find(key: string): number {
    return this.#ids.get(key) ?? -1;
  }

  intern(key: string): number {
    let id = this.#ids.get(key);
    if (id === undefined) {
      id = this.#keys.length;
      this.#keys.push(key);
      this.#ids.set(key, id);
    }
    return id;
  }

  key(id: number): string {
    return this.#keys[id] ?? "";
  }

  get count(): number {
    return this.#keys.length;
  }
}

/**
 * Closure bitsets: an append-only arena of u32 words shared by every
 * snapshot. A role's bits are written once at fresh offsets and never
 * changed, so an older snapshot's offsets stay valid. Words left behind by
 * a re-closure are garbage until the next full load.
 */
export class WordArena {
  words = new Uint32Array(1 << 16);
  top = 1; // offset 0 = the empty set

  /** Drops the unused tail (after a build); the next alloc grows it again. */
  trim(): void {
    this.words = this.words.slice(0, this.top);
  }

  alloc(n: number): number {
    if (this.top + n > this.words.length) {
      let size = this.words.length * 2;
      while (size < this.top + n) size *= 2;
      const w = new Uint32Array(size);
      w.set(this.words.subarray(0, this.top));
      this.words = w;
    }
    const at = this.top;
    this.top += n;
    return at;
  }
}
