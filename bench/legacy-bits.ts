// Growable bitsets as Uint32Array; a missing word reads as zero.

export const EMPTY_BITS = new Uint32Array(0);

export function hasBit(bits: Uint32Array, bit: number): boolean {
  const w = bit >>> 5;
  return w < bits.length && ((bits[w] as number) & (1 << (bit & 31))) !== 0;
}

export function withBit(bits: Uint32Array, bit: number): Uint32Array {
  const w = bit >>> 5;
  const out = w < bits.length ? bits : growTo(bits, w + 1);
  out[w] = (out[w] as number) | (1 << (bit & 31));
  return out;
}

/** a | b into a fresh array (or a itself when b adds nothing and a is owned). */
export function or(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (b.length === 0) return a;
  const out = a.length >= b.length ? a : growTo(a, b.length);
  for (let i = 0; i < b.length; i++) out[i] = (out[i] as number) | (b[i] as number);
  return out;
}

function growTo(bits: Uint32Array, words: number): Uint32Array {
  const out = new Uint32Array(words);
  out.set(bits);
  return out;
}

export function* eachBit(bits: Uint32Array): Generator<number> {
  for (let w = 0; w < bits.length; w++) {
    let word = bits[w] as number;
    while (word !== 0) {
      const low = word & -word;
      yield w * 32 + (31 - Math.clz32(low));
      word ^= low;
    }
  }
}
