// Seeded randomness for the fuzz test: the same seed replays the same
// requests, so a failure printed with its seed can be reproduced.

export interface Rand {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** A whole number in [0, n). */
  int(n: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Uint8Array;
}

/** mulberry32: small, fast and good enough to pick test inputs. */
export function createRand(seed: number): Rand {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    seed,
    next,
    int,
    chance: (p) => next() < p,
    pick: <T>(items: readonly T[]) => items[int(items.length)] as T,
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
  };
}

/** A string a well-behaved caller would never send: NUL, lone surrogates, huge, control characters, metacharacters. */
export function hostileString(r: Rand, base = "x"): string {
  switch (r.int(12)) {
    case 0:
      return `${base}\u0000${base}`;
    case 1:
      return "\u0000";
    case 2:
      return `${base}\ud800`;
    case 3:
      return "a".repeat(r.pick([4097, 16_385, 65_537, 200_000]));
    case 4:
      // 2 bytes per character in UTF-8: over 4 KiB in bytes while under it in characters.
      return "é".repeat(2100);
    case 5:
      return "\u0001\u0007\u001b[31m\r\n\t\u007f";
    case 6:
      // biome-ignore lint/suspicious/noTemplateCurlyInString: hostile input on purpose
      return r.pick(["'; drop table roles; --", "%_\\", "(a+)+$", "${jndi:x}", "{{7*7}}", "{header:x}", "{subject}{", "}"]);
    case 7:
      return r.pick(["99999999999999999999999", "-1", "1e309", "NaN", "0x10", "１２３"]);
    case 8:
      return r.pick(["../../etc/passwd", "%00", "%ff%fe", "/..%2f", "a/b/../c"]);
    case 9:
      return r.pick(["", " ", "\u00a0", "\u200b"]);
    case 10:
      return "👩‍👩‍👧‍👦".repeat(r.pick([1, 300]));
    default:
      return `${base}:${base}:${base}`;
  }
}

/** hostileString, but at most `huge` of the strings it returns are longer than 4 KiB (keeps one request's size bounded). */
export function hostileStrings(huge: number): (r: Rand, base?: string) => string {
  let left = huge;
  return (r, base) => {
    const s = hostileString(r, base);
    if (s.length <= 4096) return s;
    if (left-- > 0) return s;
    return `${s.slice(0, 8)}\u0000`;
  };
}
