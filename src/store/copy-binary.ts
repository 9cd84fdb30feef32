// PostgreSQL's binary COPY format (COPY ... TO STDOUT WITH (FORMAT binary)),
// read as it streams: chunks are cut into tuples and each tuple's fields are
// read in place, without a row object or a string for what is not text.
//
// The format (PostgreSQL docs, "COPY", Binary Format): an 11-byte signature
// "PGCOPY\n\377\r\n\0", a 32-bit flags word, a 32-bit header-extension length
// and the extension; then per tuple a 16-bit field count and per field a
// 32-bit length (-1 = NULL) and that many bytes; a field count of -1 ends the
// data. All integers are big-endian. Field bytes are each type's binary
// "send" form: uuid 16 bytes, bool 1 byte, int4 4, int8 8, text its UTF-8,
// timestamptz an int64 of microseconds since 2000-01-01 00:00 UTC.

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
/** The protocol's CopyData message type ('d'). */
const COPY_DATA = 100;
/** 2000-01-01T00:00:00Z in epoch milliseconds (PostgreSQL's timestamp epoch). */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;
/** Most fields a tuple may have here (the widest table the engine reads has 9). */
const MAX_FIELDS = 32;

// Big-endian reads by hand: Buffer's readInt32BE and friends validate their offset through a wrapper
// on every call (a few percent of a 5M-row load); the callers here check their bounds themselves.
const i32 = (b: Buffer, o: number): number => ((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number);
const u32 = (b: Buffer, o: number): number => i32(b, o) >>> 0;

/** One tuple of a binary COPY, valid until the next tuple is read: its fields, read in place. */
export class CopyTuple {
  buf: Buffer = Buffer.alloc(0);
  /** Number of fields. */
  n = 0;
  readonly #at = new Int32Array(MAX_FIELDS);
  readonly #len = new Int32Array(MAX_FIELDS);

  /** @internal */
  set(buf: Buffer, i: number, at: number, len: number): void {
    this.buf = buf;
    this.#at[i] = at;
    this.#len[i] = len;
  }

  isNull(i: number): boolean {
    return this.#len[i] === -1;
  }

  /** Whether field i holds exactly n bytes (false for NULL). */
  hasLength(i: number, n: number): boolean {
    return this.#len[i] === n;
  }

  /** The bytes field i holds; -1 for NULL. */
  length(i: number): number {
    return this.#len[i] as number;
  }

  /** The byte offset of field i's data in `buf`. */
  at(i: number): number {
    return this.#at[i] as number;
  }

  bool(i: number): boolean {
    return this.#len[i] === 1 && this.buf[this.#at[i] as number] === 1;
  }

  int4(i: number): number {
    return this.buf.readInt32BE(this.#at[i] as number);
  }

  /** An int8 as a number (exact below 2^53). */
  int8(i: number): number {
    const at = this.#at[i] as number;
    return this.buf.readInt32BE(at) * TWO_32 + this.buf.readUInt32BE(at + 4);
  }

  /** text/varchar as a string; null for NULL. */
  text(i: number): string | null {
    const len = this.#len[i] as number;
    if (len < 0) return null;
    const at = this.#at[i] as number;
    return this.buf.toString("utf8", at, at + len);
  }

  /**
   * text/varchar as a string, the same string each time the same bytes come again while the cache
   * holds them (a column of few distinct values: role and permission keys); null for NULL.
   */
  cachedText(i: number, cache: TextCache): string | null {
    const len = this.#len[i] as number;
    if (len < 0) return null;
    return cache.get(this.buf, this.#at[i] as number, len);
  }

  /** The four words of a uuid field into out[o, o + 4); false, writing nothing, when the field is not 16 bytes (NULL or another type). */
  uuidInto(i: number, out: Uint32Array, o: number): boolean {
    if (this.#len[i] !== 16) return false;
    const b = this.buf;
    const at = this.#at[i] as number;
    out[o] = u32(b, at);
    out[o + 1] = u32(b, at + 4);
    out[o + 2] = u32(b, at + 8);
    out[o + 3] = u32(b, at + 12);
    return true;
  }

  /** A uuid field in its canonical lower-case text; null for NULL. */
  uuid(i: number): string | null {
    const len = this.#len[i] as number;
    if (len !== 16) return null;
    const at = this.#at[i] as number;
    const h = this.buf.toString("hex", at, at + 16);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** A timestamptz as epoch milliseconds (±Infinity for ±infinity); null for NULL. */
  time(i: number): number | null {
    if (this.#len[i] !== 8) return null;
    const at = this.#at[i] as number;
    const hi = i32(this.buf, at);
    const lo = u32(this.buf, at + 4);
    if (hi === 0x7fffffff && lo === 0xffffffff) return Number.POSITIVE_INFINITY;
    if (hi === -0x80000000 && lo === 0) return Number.NEGATIVE_INFINITY;
    return Math.floor((hi * TWO_32 + lo) / 1000) + PG_EPOCH_MS;
  }
}

const TEXT_CACHE_SLOTS = 256;
/** Texts longer than this are decoded every time. */
const TEXT_CACHE_MAX = 64;

/**
 * The strings of recently seen byte sequences, one per slot of a small direct-mapped table: a column
 * whose values repeat gets the same string back without decoding or allocating one per row (and a
 * Map keyed by it hashes that string once, not once per row).
 */
export class TextCache {
  readonly #bytes: (Buffer | undefined)[] = new Array(TEXT_CACHE_SLOTS).fill(undefined);
  readonly #texts: string[] = new Array(TEXT_CACHE_SLOTS).fill("");

  /** The UTF-8 text of buf[at, at + len). */
  get(buf: Buffer, at: number, len: number): string {
    if (len > TEXT_CACHE_MAX) return buf.toString("utf8", at, at + len);
    let h = len;
    for (let j = 0; j < len; j++) h = Math.imul(h ^ (buf[at + j] as number), 0x01000193);
    const slot = (h ^ (h >>> 16)) & (TEXT_CACHE_SLOTS - 1);
    const held = this.#bytes[slot];
    if (held !== undefined && held.length === len) {
      let same = true;
      for (let j = 0; j < len && same; j++) same = held[j] === buf[at + j];
      if (same) return this.#texts[slot] as string;
    }
    const text = buf.toString("utf8", at, at + len);
    this.#bytes[slot] = Buffer.from(buf.subarray(at, at + len));
    this.#texts[slot] = text;
    return text;
  }
}

/**
 * Reads a binary COPY stream: push() each chunk as it arrives (tuples may
 * be cut anywhere), end() when the stream ends. onTuple gets every tuple in
 * order, in a CopyTuple that is reused. Throws on bytes that are not the
 * format, and at end() when the data stopped before its end marker.
 */
export class CopyBinaryReader {
  readonly #tuple = new CopyTuple();
  #carry: Buffer | undefined;
  #header = false;
  #done = false;

  constructor(private readonly onTuple: (t: CopyTuple) => void) {}

  push(chunk: Buffer): void {
    this.#pushRange(chunk, 0, chunk.length);
  }

  /**
   * Reads one or more whole CopyData messages of the protocol ('d', a 32-bit length counting itself,
   * the data), as the patched driver hands over each socket read's run of them: the data of each is
   * read in place, as push() would read it.
   */
  pushFrames(frames: Buffer): void {
    let pos = 0;
    while (pos < frames.length) {
      if (frames[pos] !== COPY_DATA || pos + 5 > frames.length) throw new Error("binary COPY: not a CopyData message");
      const end = pos + 1 + u32(frames, pos + 1);
      if (end < pos + 5 || end > frames.length) throw new Error("binary COPY: a CopyData message cut short");
      this.#pushRange(frames, pos + 5, end);
      pos = end;
    }
  }

  /** The stream's bytes buf[start, end). */
  #pushRange(chunk: Buffer, start: number, end: number): void {
    let buf = chunk;
    let pos = start;
    let stop = end;
    if (this.#carry) {
      buf = Buffer.concat([this.#carry, chunk.subarray(start, end)]);
      this.#carry = undefined;
      pos = 0;
      stop = buf.length;
    }
    if (!this.#header) {
      const after = this.#readHeader(buf, pos, stop);
      if (after < 0) {
        this.#carry = Buffer.from(buf.subarray(pos, stop));
        return;
      }
      pos = after;
    }
    while (pos < stop) {
      if (this.#done) throw new Error("binary COPY: data after the end marker");
      const next = this.#readTuple(buf, pos, stop);
      if (next < 0) {
        this.#carry = Buffer.from(buf.subarray(pos, stop));
        return;
      }
      pos = next;
    }
  }

  end(): void {
    if (!this.#done) throw new Error("binary COPY: the data ended before its end marker");
  }

  /** The offset after the header at pos, or -1 when buf[pos, stop) does not hold all of it yet. */
  #readHeader(buf: Buffer, pos: number, stop: number): number {
    if (stop - pos < SIGNATURE.length + 8) return -1;
    if (!buf.subarray(pos, pos + SIGNATURE.length).equals(SIGNATURE)) throw new Error("binary COPY: bad signature");
    const ext = buf.readUInt32BE(pos + SIGNATURE.length + 4);
    const after = pos + SIGNATURE.length + 8 + ext;
    if (stop < after) return -1;
    this.#header = true;
    return after;
  }

  /** Reads the tuple at pos and hands it on; returns the offset after it, or -1 when it is not all before stop. */
  #readTuple(buf: Buffer, pos: number, stop: number): number {
    if (pos + 2 > stop) return -1;
    const n = ((((buf[pos] as number) << 8) | (buf[pos + 1] as number)) << 16) >> 16;
    if (n === -1) {
      this.#done = true;
      return pos + 2;
    }
    if (n < 0 || n > MAX_FIELDS) throw new Error(`binary COPY: bad field count ${n}`);
    const t = this.#tuple;
    let p = pos + 2;
    for (let i = 0; i < n; i++) {
      if (p + 4 > stop) return -1;
      const len = i32(buf, p);
      p += 4;
      if (len < -1) throw new Error(`binary COPY: bad field length ${len}`);
      t.set(buf, i, p, len);
      if (len > 0) p += len;
      if (p > stop) return -1;
    }
    t.n = n;
    this.onTuple(t);
    return p;
  }
}
