// Layout probe (issue 13, point 1): which of the cache misses in Check's chain
// at 5M assignments a change of layout would remove, measured before building
// any of them. From the built snapshot this copies the tables Check reads into
// flat variants and runs the same checks through each, beside the floor and
// Snapshot.check in the same rounds; every variant must decide as Check does
// on every query (checked first). Variants:
//   check   Snapshot's check() as shipped
//   paged   the shipped chain, lean code, reading the snapshot's columns through get() (before the
//           eighth look: paged; since: one flat base per build)
//   flat    the same over plain copies of those columns, one typed array each
//   slot    + users and organizations found in tables whose slot holds their entry (no separate read)
//   role    + the role's closure offsets inside the grant record (no role entry read)
//   role8   "slot" with the role's entry split: [org + 2 (0: no role), org bits] (8 bytes) and the
//           global bits in a column of their own: an organization permission reads one 8-byte entry
//
// Run:  npm run build:bench && node --max-old-space-size=8192 dist/bench/engine-layout.js
// Env:  LAYOUT_SCALE (default 1), LAYOUT_ROUNDS (default 5), LAYOUT_CHECKS (default 1000000)

import { check } from "../src/engine/check.js";
import { G_NEXT, G_ROLE, G_SCOPE, G_STRIDE, G_UNTIL_HI, scopeKey, TWO_32 } from "../src/engine/grant-index.js";
import { parseWords } from "../src/engine/interner.js";
import { hasBit, orgPermission, matchedPerm } from "../src/engine/places.js";
import { EXISTS, ENABLED, LOCKED, SC_ORG, SC_TENANT, type State, orgFlags, orgPerms, orgTenant, uFlags, uHead } from "../src/engine/state.js";
import { medianNsPerOp, probeFixture } from "./rounds.js";
import { type CheckQuery, runFloor } from "./dataset.js";

const hash = (a: number, b: number, c: number, d: number): number => {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ b ^ (h >>> 15), 0xc2b2ae35);
  h = Math.imul(h ^ c ^ (h >>> 13), 0x85ebca6b);
  h = Math.imul(h ^ d ^ (h >>> 16), 0xc2b2ae35);
  return (h ^ (h >>> 15)) >>> 0;
};
const slotFor = (h: number, cap: number): number => Math.floor(((h >>> 8) * cap) / 16777216);

/** An open-addressing table of 8-int slots: [id + 1, four words, three payload ints]. */
class Table {
  readonly cap: number;
  readonly w: Int32Array;
  constructor(n: number) {
    this.cap = Math.max(64, Math.ceil(n / 0.7));
    this.w = new Int32Array(this.cap * 8);
  }
  put(id: number, a: number, b: number, c: number, d: number, x: number, y: number, z: number): void {
    let i = slotFor(hash(a, b, c, d), this.cap);
    while (this.w[i * 8] !== 0) i = i + 1 === this.cap ? 0 : i + 1;
    this.w.set([id + 1, a, b, c, d, x, y, z], i * 8);
  }
  /** The slot's offset, -1 when absent. */
  find(a: number, b: number, c: number, d: number): number {
    const w = this.w;
    const cap = this.cap;
    for (let i = slotFor(hash(a, b, c, d), cap); ; i = i + 1 === cap ? 0 : i + 1) {
      const o = i * 8;
      if (w[o] === 0) return -1;
      if (w[o + 1] === a && w[o + 2] === b && w[o + 3] === c && w[o + 4] === d) return o;
    }
  }
}

const W = new Int32Array(8);

interface Flat {
  users: Table;
  orgs: Table;
  /** Per user, side by side: [scope key, role, until hi, role org, org bits, global bits, 0, 0]. */
  g: Int32Array;
  /** Flat copies: uHot [flags, head + 1] at 2u; rHot at 4r; gRec as G_STRIDE records. */
  uHot: Int32Array;
  rHot: Int32Array;
  /** Variant role8: [exists ? org + 2 : 0, exists ? org bits : 0] at 2r; exists ? global bits : 0 at r. */
  rHot8: Int32Array;
  rGlob: Int32Array;
  gRec: Int32Array;
  words: Uint32Array;
}

function flatten(st: State): Flat {
  const sh = st.shared;
  const c = st.c;
  const nu = sh.users.count;
  const users = new Table(nu);
  const uHot = new Int32Array(nu * 2);
  const gRec = new Int32Array(st.shared.assignments.count * G_STRIDE);
  for (let i = 0; i < gRec.length; i++) gRec[i] = c.gRec.get(i);
  const nr = sh.roles.count;
  const rHot = new Int32Array(nr * 4);
  for (let i = 0; i < rHot.length; i++) rHot[i] = c.rHot.get(i);
  const rHot8 = new Int32Array(nr * 2);
  const rGlob = new Int32Array(nr);
  for (let r = 0; r < nr; r++) {
    if (rHot[r * 4] === 0) continue;
    rHot8[r * 2] = (rHot[r * 4 + 1] as number) + 2;
    rHot8[r * 2 + 1] = rHot[r * 4 + 2] as number;
    rGlob[r] = rHot[r * 4 + 3] as number;
  }
  const g = new Int32Array(st.shared.assignments.count * 8);
  let top = 0;
  for (let u = 0; u < nu; u++) {
    uHot[2 * u] = uFlags(c, u);
    uHot[2 * u + 1] = uHead(c, u) + 1;
    parseWords(sh.users.uuid(u), W, 0);
    const start = top;
    for (let r = uHead(c, u); r >= 0; r = c.gRec.get(r * G_STRIDE + G_NEXT)) {
      const role = c.gRec.get(r * G_STRIDE + G_ROLE);
      g.set(
        [
          c.gRec.get(r * G_STRIDE + G_SCOPE),
          role,
          c.gRec.get(r * G_STRIDE + G_UNTIL_HI),
          ...[1, 2, 3].map((f) => c.rHot.get(role * 4 + f)),
          c.rHot.get(role * 4),
          0,
        ],
        top * 8,
      );
      top++;
    }
    users.put(u, W[0] as number, W[1] as number, W[2] as number, W[3] as number, uFlags(c, u), start, top - start);
  }
  const no = sh.orgs.count;
  const orgs = new Table(no);
  for (let o = 0; o < no; o++) {
    parseWords(sh.orgs.uuid(o), W, 0);
    orgs.put(o, W[0] as number, W[1] as number, W[2] as number, W[3] as number, orgFlags(c, o), orgTenant(c, o) + 1, orgPerms(c, o));
  }
  return { users, orgs, g, uHot, rHot, rHot8, rGlob, gRec, words: sh.arena.words };
}

/** The org permission or global permission bit for a key on an organization: [permOrg, bit], permOrg -2 = none. */
function match(st: State, words: Uint32Array, keyId: number, org: number, perms: number): number {
  if (keyId < 0) return -2;
  if (perms !== 0 && orgPermission(words, perms, keyId) >= 0) return org;
  const p = st.c.gPermByKey.get(keyId);
  if (p < 0) return -2;
  matchedPerm.bit = st.c.pHot.get(p * 2 + 1);
  return -1;
}

const userOk = (f: number): boolean => (f & EXISTS) !== 0 && (f & LOCKED) === 0 && (f & ENABLED) !== 0;

function holdsFlat(rHot: Int32Array, words: Uint32Array, role: number, org: number, permOrg: number, bit: number): boolean {
  const ro = role * 4;
  if (rHot[ro] === 0) return false;
  if (permOrg < 0) return hasBit(words, rHot[ro + 3] as number, bit);
  return rHot[ro + 1] === org && permOrg === org && hasBit(words, rHot[ro + 2] as number, bit);
}

function holds8(f: Flat, role: number, org: number, permOrg: number, bit: number): boolean {
  if (permOrg < 0) return hasBit(f.words, f.rGlob[role] as number, bit);
  const ro = role * 2;
  return (f.rHot8[ro] as number) - 2 === org && permOrg === org && hasBit(f.words, f.rHot8[ro + 1] as number, bit);
}

/** Reads of the three hot columns: flat copies, or the snapshot's pages. */
interface Cols {
  u(i: number): number;
  g(i: number): number;
  r(i: number): number;
}

/** Variant "flat" (and "paged", the same code over the snapshot's pages): the shipped chain. */
function checkFlat(st: State, f: Flat, x: CheckQuery, now: number, k: Cols): boolean {
  if (!parseWords(x.subject.id, W, 0) || !parseWords(x.resource.id, W, 4)) return false;
  const us = st.shared.users.findWords(W, 0);
  const os = st.shared.orgs.findWords(W, 4);
  if (us < 0 || os < 0) return false;
  const flags = k.u(2 * us);
  const c = st.c;
  if ((orgFlags(c, os) & EXISTS) === 0) return false;
  const permOrg = match(st, f.words, st.shared.keys.find(x.permission), os, orgPerms(c, os));
  if (permOrg === -2 || !userOk(flags)) return false;
  const bit = matchedPerm.bit;
  const tenant = orgTenant(c, os);
  const t = tenant >= 0 ? scopeKey(SC_TENANT, tenant) : -2;
  const o = scopeKey(SC_ORG, os);
  const nowHi = Math.floor(now / TWO_32);
  for (let r = k.u(2 * us + 1) - 1; r >= 0; ) {
    const at = r * G_STRIDE;
    const key = k.g(at + G_SCOPE);
    const hi = k.g(at + G_UNTIL_HI);
    if ((key === o || key === 0 || key === t) && hi > nowHi && holdsCols(k, f.words, k.g(at + G_ROLE), os, permOrg, bit)) return true;
    r = k.g(at + G_NEXT);
  }
  return false;
}

function holdsCols(k: Cols, words: Uint32Array, role: number, org: number, permOrg: number, bit: number): boolean {
  const ro = role * 4;
  if (k.r(ro) === 0) return false;
  if (permOrg < 0) return hasBit(words, k.r(ro + 3), bit);
  return k.r(ro + 1) === org && permOrg === org && hasBit(words, k.r(ro + 2), bit);
}

/** Variants "slot" (role read from the role table) and "role" (closure offsets in the record). */
function checkSlot(st: State, f: Flat, x: CheckQuery, now: number, inline: boolean, split = false): boolean {
  if (!parseWords(x.subject.id, W, 0) || !parseWords(x.resource.id, W, 4)) return false;
  const us = f.users.find(W[0] as number, W[1] as number, W[2] as number, W[3] as number);
  const os = f.orgs.find(W[4] as number, W[5] as number, W[6] as number, W[7] as number);
  if (us < 0 || os < 0) return false;
  const uw = f.users.w;
  const ow = f.orgs.w;
  const org = (ow[os] as number) - 1;
  if (((ow[os + 5] as number) & EXISTS) === 0) return false;
  const permOrg = match(st, f.words, st.shared.keys.find(x.permission), org, ow[os + 7] as number);
  if (permOrg === -2 || !userOk(uw[us + 5] as number)) return false;
  const bit = matchedPerm.bit;
  const tenant = (ow[os + 6] as number) - 1;
  const t = tenant >= 0 ? scopeKey(SC_TENANT, tenant) : -2;
  const o = scopeKey(SC_ORG, org);
  const nowHi = Math.floor(now / TWO_32);
  const g = f.g;
  const end = ((uw[us + 6] as number) + (uw[us + 7] as number)) * 8;
  for (let at = (uw[us + 6] as number) * 8; at < end; at += 8) {
    const key = g[at] as number;
    if ((key === o || key === 0 || key === t) && (g[at + 2] as number) > nowHi) {
      if (split) {
        if (holds8(f, g[at + 1] as number, org, permOrg, bit)) return true;
        continue;
      }
      if (!inline) {
        if (holdsFlat(f.rHot, f.words, g[at + 1] as number, org, permOrg, bit)) return true;
        continue;
      }
      if (g[at + 6] === 0) continue;
      if (permOrg < 0 ? hasBit(f.words, g[at + 5] as number, bit) : g[at + 3] === org && permOrg === org && hasBit(f.words, g[at + 4] as number, bit))
        return true;
    }
  }
  return false;
}

function main(): void {
  const { scale, rounds, n, st, now, Q, mask, floor } = probeFixture("LAYOUT");
  const f = flatten(st);
  const c = st.c;
  const paged: Cols = { u: (i) => c.uHot.get(i), g: (i) => c.gRec.get(i), r: (i) => c.rHot.get(i) };
  const flat: Cols = { u: (i) => f.uHot[i] as number, g: (i) => f.gRec[i] as number, r: (i) => f.rHot[i] as number };
  const variants: Array<[string, (x: CheckQuery) => boolean]> = [
    ["check", (x) => check(st, x.subject, x.permission, x.resource, now).allowed],
    ["paged", (x) => checkFlat(st, f, x, now, paged)],
    ["flat", (x) => checkFlat(st, f, x, now, flat)],
    ["slot", (x) => checkSlot(st, f, x, now, false)],
    ["role", (x) => checkSlot(st, f, x, now, true)],
    ["role8", (x) => checkSlot(st, f, x, now, false, true)],
  ];
  for (const [name, fn] of variants) {
    const bad = Q.filter((x) => fn(x) !== check(st, x.subject, x.permission, x.resource, now).allowed).length;
    if (bad > 0) throw new Error(`${name}: ${bad} decisions differ from Check`);
  }
  const loop = (fn: (x: CheckQuery) => boolean) => (): number => {
    let acc = 0;
    for (let i = 0; i < n; i++) if (fn(Q[i & mask] as CheckQuery)) acc++;
    return acc;
  };
  const names = ["floor", ...variants.map((v) => v[0])];
  const { medians, sink } = medianNsPerOp(names, [() => runFloor(floor, Q, n), ...variants.map(([, fn]) => loop(fn))], rounds, n);
  const med = (i: number): number => medians[i] as number;
  process.stdout.write(`| variant | ns per check (median of ${rounds}) | floor ÷ variant |\n|---|---:|---:|\n`);
  names.forEach((name, i) => process.stdout.write(`| ${name} | ${med(i).toFixed(0)} | ${(med(0) / med(i)).toFixed(2)}x |\n`));
  process.stdout.write(`(scale ${scale}, ${n} checks per variant and round; sink ${sink})\n`);
}

main();
