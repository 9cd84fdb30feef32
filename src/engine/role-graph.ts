// Roles, permissions, direct grants (role_permissions), inheritance edges,
// and each role's closure: the permissions of the role and every role it
// inherits, as two bitsets (its organization's permissions, numbered per
// organization; global permissions, numbered globally) written once into
// the shared word arena. A change marks the role and every role that
// inherits from it dirty; close() re-closes only those, parents first.

import { AVATAR_MEMBER_ROLE_KEY, AVATAR_OWNER_ROLE_KEY } from "./types.js";
import { NORMALIZE } from "./rows.js";
import { PAIR_SLOT_MAX, pairSlot, pairsAt } from "./places.js";
import { allocRecord, EXISTS, freeRecord, orgFlags, orgPerms, setOrgPerms, type State } from "./state.js";

type Raw = Record<string, unknown>;

/** Roles whose closure must be recomputed before the state is published. */
export class RoleGraphWriter {
  readonly #dirty = new Set<number>();
  /** While closeAll runs: per role, 0 = to close, 1 = being closed, 2 = closed. */
  #marks: Uint8Array | undefined;
  readonly #noVisits = new Set<number>();
  /**
   * Organizations' permission pairs changed by this build or apply, written to the arena once at its end
   * (finishBuild, close): the arena is append-only, so a copy per inserted permission made an apply that adds
   * n permissions to an organization of m write (m + n)·n pairs, kept until the next reload.
   */
  readonly #pending = new Map<number, number[]>();
  /** While building nothing is marked dirty: build() marks every role at the end (markAll). */
  #building = false;

  constructor(
    readonly st: State,
    building = false,
  ) {
    this.#building = building;
  }

  /** Writes what the build kept aside; the writer then works as for an apply. */
  finishBuild(): void {
    this.#flushPairs();
    this.#building = false;
  }

  #flushPairs(): void {
    for (const [org, pairs] of this.#pending) setOrgPerms(this.st, org, writePairs(this.st, pairs));
    this.#pending.clear();
  }

  #pairs(org: number): number[] {
    return this.#pending.get(org) ?? readPairs(this.st, orgPerms(this.st.c, org));
  }

  #setPairs(org: number, pairs: number[]): void {
    this.#pending.set(org, pairs);
  }

  /** Points the permission's key at it (in its organization, or globally); the latest writer wins, as in the log. */
  #mapKey(p: number): void {
    const c = this.st.c;
    const org = c.pHot.get(p * 2);
    const key = c.pKey.get(p);
    if (org < 0) {
      c.gPermByKey.set(key, p);
      return;
    }
    // The organization's pairs are this writer's own array, changed in place (a fresh copy per insert made 1M arrays at 5M).
    const pairs = this.#pending.get(org);
    if (pairs) putPair(pairs, key, p);
    else this.#pending.set(org, withPair(readPairs(this.st, orgPerms(c, org)), key, p));
  }

  /** Forgets the permission's key, if the key still points at it. */
  #unmapKey(p: number): void {
    const c = this.st.c;
    const org = c.pHot.get(p * 2);
    const key = c.pKey.get(p);
    if (org < 0) {
      if (c.gPermByKey.get(key) === p) c.gPermByKey.set(key, -1);
      return;
    }
    const pairs = this.#pairs(org);
    const i = pairIndex(pairs, key);
    if (i >= 0 && pairs[i * 2 + 1] === p) this.#setPairs(org, [...pairs.slice(0, i * 2), ...pairs.slice(i * 2 + 2)]);
  }

  markDirty(role: number): void {
    if (this.#building || this.#dirty.has(role)) return;
    this.#dirty.add(role);
    const c = this.st.c;
    for (let e = c.rChildren.get(role); e >= 0; e = c.eNextOfParent.get(e)) this.markDirty(c.eChild.get(e));
  }

  /**
   * Closes every role (a fresh build closes everything once), in id order, with its marks in a byte per
   * role instead of the Sets an apply uses (adding 500k roles to a Set and closing them from it took 1 s).
   */
  closeAll(): void {
    this.#flushPairs();
    const n = this.st.shared.roles.count;
    this.#marks = new Uint8Array(n);
    for (let r = 0; r < n; r++) this.#closeRole(r, this.#noVisits);
    this.#marks = undefined;
    this.#dirty.clear();
  }

  close(): void {
    this.#flushPairs();
    const visiting = new Set<number>();
    for (const r of this.#dirty) this.#closeRole(r, visiting);
    this.#dirty.clear();
  }

  #closeRole(r: number, visiting: Set<number>): void {
    const marks = this.#marks;
    // The database forbids cycles; never loop if one slipped in.
    if (marks ? marks[r] !== 0 : !this.#dirty.has(r) || visiting.has(r)) return;
    const st = this.st;
    const c = st.c;
    if ((c.rFlags.get(r) & EXISTS) === 0) {
      if (marks) marks[r] = 2;
      else this.#dirty.delete(r);
      return;
    }
    if (marks) marks[r] = 1;
    else visiting.add(r);
    const org = c.rOrg.get(r);
    const orgWords: number[] = [];
    const globWords: number[] = [];
    for (let rp = c.rDirect.get(r); rp >= 0; rp = c.rpNext.get(rp)) {
      const p = c.rpPerm.get(rp);
      if ((c.pFlags.get(p) & EXISTS) === 0) continue;
      const permOrg = c.pHot.get(p * 2);
      if (permOrg < 0) setBit(globWords, c.pHot.get(p * 2 + 1));
      else if (permOrg === org) setBit(orgWords, c.pHot.get(p * 2 + 1));
    }
    const words = st.shared.arena;
    for (let e = c.rParents.get(r); e >= 0; e = c.eNextOfChild.get(e)) {
      const parent = c.eParent.get(e);
      if ((c.rFlags.get(parent) & EXISTS) === 0) continue;
      this.#closeRole(parent, visiting);
      orInto(globWords, words.words, c.rHot.get(parent * 4 + 3));
      if (org >= 0 && c.rOrg.get(parent) === org) orInto(orgWords, words.words, c.rHot.get(parent * 4 + 2));
    }
    c.rHot.set(r * 4 + 2, store(st, orgWords));
    c.rHot.set(r * 4 + 3, store(st, globWords));
    if (marks) marks[r] = 2;
    else {
      this.#dirty.delete(r);
      visiting.delete(r);
    }
  }

  upsertRole(raw: Raw): void {
    const row = NORMALIZE.roles(raw);
    const { orgs, roles } = this.st.shared;
    const r = roles.intern(row.id);
    const orgId = row.organizationId;
    // The organization is interned for a new role only (a rename keeps it).
    const org = this.#roleExists(r) || orgId === null ? -1 : orgs.intern(orgId);
    this.#placeRole(r, org, row.key, row.name);
  }

  /** upsertRole for a row read as words (a binary load): its id at w[0], its organization at w[4] when hasOrg. */
  upsertRoleWords(w: Uint32Array, hasOrg: boolean, key: string, name: string): void {
    const { orgs, roles } = this.st.shared;
    const r = roles.internWords(w[0] as number, w[1] as number, w[2] as number, w[3] as number);
    const org = this.#roleExists(r) || !hasOrg ? -1 : orgs.internWords(w[4] as number, w[5] as number, w[6] as number, w[7] as number);
    this.#placeRole(r, org, key, name);
  }

  #roleExists(r: number): boolean {
    return (this.st.c.rFlags.get(r) & EXISTS) !== 0;
  }

  /** A role's row at r; org (its organization, -1 for none) counts for a new role only. */
  #placeRole(r: number, org: number, keyText: string, nameText: string): void {
    const { st } = this;
    const c = st.c;
    const key = st.shared.keys.intern(keyText);
    const name = st.shared.keys.intern(nameText);
    const exists = (c.rFlags.get(r) & EXISTS) !== 0;
    if (exists) {
      // An update in place: edges, grants and the closure survive a rename.
      if (c.rOrg.get(r) < 0) this.#forgetBuiltin(r);
    } else {
      c.rFlags.set(r, EXISTS);
      c.rOrg.set(r, org);
      c.rHot.set(r * 4, 1);
      c.rHot.set(r * 4 + 1, c.rOrg.get(r));
      st.n.roles++;
      this.markDirty(r);
    }
    c.rKey.set(r, key);
    c.rName.set(r, name);
    if (c.rOrg.get(r) < 0) {
      if (keyText === AVATAR_MEMBER_ROLE_KEY) st.n.builtinMember = r;
      if (keyText === AVATAR_OWNER_ROLE_KEY) st.n.builtinOwner = r;
    }
  }

  removeRole(raw: Raw): void {
    const { st } = this;
    const c = st.c;
    const r = st.shared.roles.find(String(raw.id));
    if (r < 0 || (c.rFlags.get(r) & EXISTS) === 0) return;
    this.#forgetBuiltin(r);
    c.rFlags.set(r, 0);
    c.rHot.set(r * 4, 0);
    st.n.roles--;
    this.#dirty.delete(r);
    for (let e = c.rChildren.get(r); e >= 0; e = c.eNextOfParent.get(e)) this.markDirty(c.eChild.get(e));
  }

  #forgetBuiltin(r: number): void {
    if (this.st.n.builtinMember === r) this.st.n.builtinMember = -1;
    if (this.st.n.builtinOwner === r) this.st.n.builtinOwner = -1;
  }

  /** Insert, or rename in place (the permission keeps its number and its grants). */
  upsertPermission(raw: Raw): void {
    const { st } = this;
    const c = st.c;
    const row = NORMALIZE.permissions(raw);
    const org = row.organizationId === null ? -1 : st.shared.orgs.intern(row.organizationId);
    if (org >= 0 && (orgFlags(c, org) & EXISTS) === 0) return; // organization unknown: the log will bring it, or it is gone
    this.#placePermission(st.shared.perms.intern(row.id), org, row.key);
  }

  /** upsertPermission for a row read as words: the id at 0, the organization at 4 (when hasOrg). */
  upsertPermissionWords(w: Uint32Array, hasOrg: boolean, key: string): void {
    const { st } = this;
    const { orgs, perms } = st.shared;
    const org = hasOrg ? orgs.internWords(w[4] as number, w[5] as number, w[6] as number, w[7] as number) : -1;
    if (org >= 0 && (orgFlags(st.c, org) & EXISTS) === 0) return; // as upsertPermission
    this.#placePermission(perms.internWords(w[0] as number, w[1] as number, w[2] as number, w[3] as number), org, key);
  }

  #placePermission(p: number, org: number, keyText: string): void {
    const { st } = this;
    const c = st.c;
    const key = st.shared.keys.intern(keyText);
    if ((c.pFlags.get(p) & EXISTS) !== 0) {
      if (c.pKey.get(p) !== key) {
        this.#unmapKey(p);
        c.pKey.set(p, key);
        this.#mapKey(p);
      }
      return;
    }
    let bit: number;
    if (org < 0) bit = st.n.globalNextBit++;
    else {
      bit = c.oNextBit.get(org);
      c.oNextBit.set(org, bit + 1);
    }
    c.pFlags.set(p, EXISTS);
    c.pKey.set(p, key);
    c.pHot.set(p * 2, org);
    c.pHot.set(p * 2 + 1, bit);
    if (org < 0) c.gPermByBit.set(bit, p);
    this.#mapKey(p);
    st.n.perms++;
  }

  /** On DELETE only; its grants arrive as role_permissions deletes of their own. */
  removePermission(raw: Raw): void {
    const { st } = this;
    const c = st.c;
    const p = st.shared.perms.find(String(raw.id));
    if (p < 0 || (c.pFlags.get(p) & EXISTS) === 0) return;
    this.#unmapKey(p);
    if (c.pHot.get(p * 2) < 0) c.gPermByBit.set(c.pHot.get(p * 2 + 1), -1);
    c.pFlags.set(p, 0);
    st.n.perms--;
  }

  upsertRolePermission(raw: Raw): void {
    const { st } = this;
    const row = NORMALIZE.role_permissions(raw);
    this.#addRolePermission(st.shared.roles.intern(row.roleId), st.shared.perms.intern(row.permissionId));
  }

  /** upsertRolePermission for a row read as words: the role at 0, the permission at 4. */
  upsertRolePermissionWords(w: Uint32Array): void {
    const { roles, perms } = this.st.shared;
    const r = roles.internWords(w[0] as number, w[1] as number, w[2] as number, w[3] as number);
    this.#addRolePermission(r, perms.internWords(w[4] as number, w[5] as number, w[6] as number, w[7] as number));
  }

  #addRolePermission(r: number, p: number): void {
    const { st } = this;
    const c = st.c;
    for (let rp = c.rDirect.get(r); rp >= 0; rp = c.rpNext.get(rp)) if (c.rpPerm.get(rp) === p) return;
    const rec = allocRecord(st.n, "rp", c.rpNext);
    c.rpPerm.set(rec, p);
    c.rpNext.set(rec, c.rDirect.get(r));
    c.rDirect.set(r, rec);
    this.markDirty(r);
  }

  removeRolePermission(raw: Raw): void {
    const { st } = this;
    const c = st.c;
    const row = NORMALIZE.role_permissions(raw);
    const r = st.shared.roles.find(row.roleId);
    const p = st.shared.perms.find(row.permissionId);
    if (r < 0 || p < 0) return;
    let prev = -1;
    for (let rp = c.rDirect.get(r); rp >= 0; prev = rp, rp = c.rpNext.get(rp)) {
      if (c.rpPerm.get(rp) !== p) continue;
      const next = c.rpNext.get(rp);
      if (prev >= 0) c.rpNext.set(prev, next);
      else c.rDirect.set(r, next);
      freeRecord(st.n, "rp", c.rpNext, rp);
      this.markDirty(r);
      return;
    }
  }

  upsertInheritance(raw: Raw): void {
    const { st } = this;
    const row = NORMALIZE.role_inheritance(raw);
    this.#addInheritance(st.shared.roles.intern(row.roleId), st.shared.roles.intern(row.parentRoleId));
  }

  /** upsertInheritance for a row read as words: the role at 0, its parent at 4. */
  upsertInheritanceWords(w: Uint32Array): void {
    const roles = this.st.shared.roles;
    const child = roles.internWords(w[0] as number, w[1] as number, w[2] as number, w[3] as number);
    this.#addInheritance(child, roles.internWords(w[4] as number, w[5] as number, w[6] as number, w[7] as number));
  }

  #addInheritance(child: number, parent: number): void {
    const { st } = this;
    const c = st.c;
    for (let e = c.rParents.get(child); e >= 0; e = c.eNextOfChild.get(e)) if (c.eParent.get(e) === parent) return;
    const e = allocRecord(st.n, "e", c.eNextOfChild);
    c.eChild.set(e, child);
    c.eParent.set(e, parent);
    c.eNextOfChild.set(e, c.rParents.get(child));
    c.rParents.set(child, e);
    c.eNextOfParent.set(e, c.rChildren.get(parent));
    c.rChildren.set(parent, e);
    this.markDirty(child);
  }

  removeInheritance(raw: Raw): void {
    const { st } = this;
    const c = st.c;
    const row = NORMALIZE.role_inheritance(raw);
    const child = st.shared.roles.find(row.roleId);
    const parent = st.shared.roles.find(row.parentRoleId);
    if (child < 0 || parent < 0) return;
    let e = -1;
    let prev = -1;
    for (let x = c.rParents.get(child); x >= 0; prev = x, x = c.eNextOfChild.get(x)) {
      if (c.eParent.get(x) === parent) {
        e = x;
        break;
      }
    }
    if (e < 0) return;
    if (prev >= 0) c.eNextOfChild.set(prev, c.eNextOfChild.get(e));
    else c.rParents.set(child, c.eNextOfChild.get(e));
    prev = -1;
    for (let x = c.rChildren.get(parent); x >= 0; prev = x, x = c.eNextOfParent.get(x)) {
      if (x !== e) continue;
      if (prev >= 0) c.eNextOfParent.set(prev, c.eNextOfParent.get(e));
      else c.rChildren.set(parent, c.eNextOfParent.get(e));
      break;
    }
    c.eNextOfParent.set(e, -1);
    freeRecord(st.n, "e", c.eNextOfChild, e);
    this.markDirty(child);
  }
}

/** An organization's [keyId, perm] pairs as stored in the arena at `off` (see writePairs), sorted by key. */
export function readPairs(st: State, off: number): number[] {
  if (off === 0) return [];
  const words = st.shared.arena.words;
  const n = words[off] as number;
  const at = pairsAt(words, off);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(words[at + i * 3] as number, words[at + i * 3 + 1] as number);
  return out;
}

/**
 * Writes pairs to fresh arena words; 0 for none. An insert or rename writes a
 * new copy: the old one stays for older snapshots. Layout: [n, mask, byte
 * slots, n sorted (key, permission, bit) triples]: the slots (4 a word) hash a
 * key to its triple's index + 1 (places.ts orgPermission), so a lookup is one
 * probe, near the header, and one triple; the bit beside the permission
 * spares the grant rule the permission's own line. mask 0: no slots (more
 * pairs than a byte indexes), the triples are searched.
 */
function writePairs(st: State, pairs: readonly number[]): number {
  if (pairs.length === 0) return 0;
  const n = pairs.length / 2;
  let cap = 4;
  while (cap < n + (n >>> 1)) cap *= 2;
  const hashed = n < PAIR_SLOT_MAX;
  const slotWords = hashed ? cap / 4 : 0;
  const arena = st.shared.arena;
  const off = arena.alloc(2 + slotWords + n * 3);
  const words = arena.words;
  words[off] = n;
  words[off + 1] = hashed ? cap - 1 : 0;
  const at = off + 2 + slotWords;
  for (let i = 0; i < n; i++) {
    const p = pairs[i * 2 + 1] as number;
    words[at + i * 3] = pairs[i * 2] as number;
    words[at + i * 3 + 1] = p;
    words[at + i * 3 + 2] = st.c.pHot.get(p * 2 + 1);
  }
  if (!hashed) return off;
  const tbl = off + 2;
  for (let w = 0; w < slotWords; w++) words[tbl + w] = 0;
  for (let i = 0; i < n; i++) {
    let j = pairSlot(pairs[i * 2] as number, cap - 1);
    while (((words[tbl + (j >>> 2)] as number) >>> ((j & 3) * 8)) & 255) j = (j + 1) & (cap - 1);
    words[tbl + (j >>> 2)] = (words[tbl + (j >>> 2)] as number) | ((i + 1) << ((j & 3) * 8));
  }
  return off;
}

function pairIndex(pairs: readonly number[], key: number): number {
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === key) return i >>> 1;
  return -1;
}

/** A new sorted pair array with key → p set. */
function withPair(pairs: readonly number[], key: number, p: number): number[] {
  const out: number[] = [];
  let placed = false;
  for (let i = 0; i < pairs.length; i += 2) {
    const k = pairs[i] as number;
    if (!placed && k >= key) {
      out.push(key, p);
      placed = true;
      if (k === key) continue;
    }
    out.push(k, pairs[i + 1] as number);
  }
  if (!placed) out.push(key, p);
  return out;
}

/** withPair in place: key → p set in the sorted pair array. */
function putPair(pairs: number[], key: number, p: number): void {
  let i = pairs.length;
  while (i > 0 && (pairs[i - 2] as number) > key) i -= 2;
  if (i > 0 && pairs[i - 2] === key) {
    pairs[i - 1] = p;
    return;
  }
  pairs.splice(i, 0, key, p);
}

function setBit(words: number[], bit: number): void {
  const w = bit >>> 5;
  while (words.length <= w) words.push(0);
  words[w] = ((words[w] as number) | (1 << (bit & 31))) >>> 0;
}

function orInto(words: number[], arena: Uint32Array, off: number): void {
  if (off < 0) {
    words[0] = ((words[0] ?? 0) | -off) >>> 0;
    return;
  }
  if (off === 0) return;
  const n = arena[off] as number;
  while (words.length < n) words.push(0);
  for (let i = 0; i < n; i++) words[i] = ((words[i] as number) | (arena[off + 1 + i] as number)) >>> 0;
}

/** Writes a bitset to the arena as [length, ...words]; 0 for the empty set; one word below 2^31 inline, negated (see places.ts hasBit). */
function store(st: State, words: number[]): number {
  let n = words.length;
  while (n > 0 && words[n - 1] === 0) n--;
  if (n === 0) return 0;
  if (n === 1 && (words[0] as number) < 0x80000000) return -(words[0] as number);
  const arena = st.shared.arena;
  const off = arena.alloc(n + 1);
  arena.words[off] = n;
  for (let i = 0; i < n; i++) arena.words[off + 1 + i] = words[i] as number;
  return off;
}
