// Grants: role assignments, threaded through two doubly linked lists (the
// subject's and the scope's), and memberships, threaded through the
// principal's and the avatar's. Removing one is O(1) however long the list
// (an organization's million-member scope list is never walked to delete).
// Only active assignments with a known subject and scope kind are linked;
// expiry is checked at decision time.

import { PAGE_SIZE } from "./paged.js";
import { resourceInterner, scopeKind, subjectInterner, subjectKind } from "./places.js";
import { NORMALIZE, readAssignment } from "./rows.js";
import {
  ACTIVE,
  EXISTS,
  FlatI32,
  I32,
  linkFront,
  OWNER,
  SC_AVATAR,
  SC_GLOBAL,
  SC_ORG,
  SC_TENANT,
  SK_ACCOUNT,
  SK_PRINCIPAL,
  SK_STAFF,
  SK_USER,
  type Columns,
  type State,
  setUHead,
  touched,
  uHead,
  unlink,
} from "./state.js";

type Raw = Record<string, unknown>;
const time = (t: number | null): number => (t === null ? Number.POSITIVE_INFINITY : t);

/**
 * An assignment's grant record is at its own dense id a: no map from one to the other (a build numbers
 * the assignments in the order it lays their records out, compactGrants). It is two halves of two
 * columns: gRec, what Check walks, 16 bytes at a * G_STRIDE (a page of 4096 ints holds 1024 whole
 * halves): the packed scope key, the role, the next record in the subject's list, the expiry's high
 * int; and gCold, 8 bytes at a * G_COLD (only apply, explain, List and the lookups read it): the
 * expiry's low int, and the subject with its kind (subject << 2 | kind; the scope kind is the key's low
 * 2 bits) or, for an assignment in no list, A_UNLINKED or A_NONE. The expiry is epoch ms = hi * 2^32 +
 * unsigned lo, "never" is hi = G_NEVER: Check decides it from hi alone unless hi is now's (a 49.7-day
 * window). Fields 0-3 are gRec's, 4-5 gCold's.
 */
export const G_STRIDE = 4;
export const G_COLD = 2;
export const G_SCOPE = 0;
export const G_ROLE = 1;
export const G_NEXT = 2;
export const G_UNTIL_HI = 3;
export const G_UNTIL_LO = 4;
/** subject << 2 | subject kind (SK_*) of a linked assignment; A_UNLINKED / A_NONE otherwise. */
export const G_SUBJ = 5;
export const G_NEVER = 0x7fffffff;
export const TWO_32 = 4294967296;

/** A record's expiry (epoch ms, +Infinity for never) from its two ints. */
export const untilOf = (hi: number, lo: number): number => (hi === G_NEVER ? Number.POSITIVE_INFINITY : hi * TWO_32 + (lo >>> 0));

/** Reads field `f` of grant record `r`. */
export const gGet = (c: Columns, r: number, f: number): number => (f < G_STRIDE ? c.gRec.get(r * G_STRIDE + f) : c.gCold.get(r * G_COLD + f - G_STRIDE));
const gSet = (c: Columns, r: number, f: number, v: number): void => {
  if (f < G_STRIDE) c.gRec.set(r * G_STRIDE + f, v);
  else c.gCold.set(r * G_COLD + f - G_STRIDE, v);
};
/** A grant record's expiry (epoch ms). */
export const gUntil = (c: Columns, r: number): number => untilOf(gGet(c, r, G_UNTIL_HI), gGet(c, r, G_UNTIL_LO));
/** A grant record's subject (dense id) and subject kind. */
export const gSubject = (c: Columns, r: number): number => gGet(c, r, G_SUBJ) >>> 2;
export const gSubjectKind = (c: Columns, r: number): number => gGet(c, r, G_SUBJ) & 3;

function setUntil(c: Columns, r: number, t: number): void {
  // Anything that is not a finite time (no expiry, or a value no comparison with now is true for) never expires.
  const finite = t < Number.POSITIVE_INFINITY && t > Number.NEGATIVE_INFINITY;
  const ms = finite ? Math.floor(t) : 0;
  const hi = finite ? Math.floor(ms / TWO_32) : G_NEVER;
  gSet(c, r, G_UNTIL_HI, hi);
  gSet(c, r, G_UNTIL_LO, finite ? (ms - hi * TWO_32) | 0 : 0);
}

/** The packed scope key (id << 2 | kind): a grant's coverage is one read and a compare. */
export const scopeKey = (kind: number, scope: number): number => (scope << 2) | kind;

/** A subject kind's grant list heads, by subject (users keep theirs beside their flags, in uHot). */
export interface Heads {
  get(s: number): number;
  set(s: number, r: number): void;
}

export function grantHead(st: State, kind: number): Heads {
  const c = st.c;
  if (kind === SK_USER) return { get: (s) => uHead(c, s), set: (s, r) => setUHead(st, s, r) };
  return kind === SK_ACCOUNT ? c.acGrants : kind === SK_PRINCIPAL ? c.prGrants : c.sGrants;
}

export function scopeHead(st: State, kind: number): I32 {
  const c = st.c;
  return kind === SC_GLOBAL ? c.globalScope : kind === SC_TENANT ? c.tScope : kind === SC_ORG ? c.oScope : c.avScope;
}

/** G_SUBJ of an assignment in no list: one of these. */
const A_NONE = -1; // no such assignment in this snapshot (gCold's fill)
const A_UNLINKED = -2; // exists, in no list (inactive, or an unknown subject or scope kind)
const aState = (c: Columns, a: number): number => gGet(c, a, G_SUBJ);

export function upsertAssignment(st: State, raw: Raw): void {
  const row = readAssignment(raw);
  const a = st.shared.assignments.intern(row.id);
  if (aState(st.c, a) !== A_NONE) removeAssignmentAt(st, a);
  const sk = subjectKind(row.subjectType);
  let ck = scopeKind(row.scopeType);
  if (ck > SC_GLOBAL && row.scopeId === null) ck = -1; // a scoped grant with no scope covers nothing
  const s = sk < 0 ? -1 : subjectInterner(st, sk).intern(row.subjectId);
  const scope = ck < 0 ? -1 : ck === SC_GLOBAL ? 0 : resourceInterner(st, ck).intern(row.scopeId as string);
  placeAssignment(st, a, sk, s, ck, scope, st.shared.roles.intern(row.roleId), row.active, row.validUntil);
}

/**
 * Rows of role_assignments read as words (a binary COPY), a batch at a time: row i's id at
 * words[16 * i], its subject at + 4, its role at + 8, its scope at + 12 (ignored without one).
 * Reused by the reader; only the first `n` rows count.
 */
export interface AssignmentBatch {
  n: number;
  readonly words: Uint32Array;
  readonly subjectType: string[];
  readonly scopeType: string[];
  /** Bit 0: the row has a scope id; bit 1: active. */
  readonly flags: Uint8Array;
  /** Epoch ms; +Infinity = never (NULL). */
  readonly validUntil: Float64Array;
}
export const AB_HAS_SCOPE = 1;
export const AB_ACTIVE = 2;

/** Per-row scratch of a batch: kinds and dense ids (grown to the largest batch seen). */
const batchScratch = (n: number) => ({
  sk: new Int32Array(n),
  ck: new Int32Array(n),
  a: new Int32Array(n),
  s: new Int32Array(n),
  scope: new Int32Array(n),
  role: new Int32Array(n),
});
let bat = batchScratch(0);

/**
 * loadAssignmentWords for a batch of rows, in passes: first every row's interner slots are only read
 * (independent loads, so the CPU has many cache misses in flight at once; the tables are far larger
 * than the caches at 5M), then the ids are interned, then the list heads the records go to are read,
 * then the records are placed. Row by row each of those misses waited for the previous row's work.
 * The same records and ids as loading the rows one by one, in the same order. The assignment ids
 * (the table's primary key, read once) are appended unindexed: the builder places them all at the
 * end (UuidInterner.indexPending), where one cache miss each went here.
 */
export function loadAssignmentBatch(st: State, b: AssignmentBatch): void {
  const n = b.n;
  if (bat.a.length < n)
    bat = { sk: new Int32Array(n), ck: new Int32Array(n), a: new Int32Array(n), s: new Int32Array(n), scope: new Int32Array(n), role: new Int32Array(n) };
  const { sk, ck, a, s, scope, role } = bat;
  const w = b.words;
  for (let i = 0; i < n; i++) {
    sk[i] = subjectKind(b.subjectType[i] as string);
    const k = scopeKind(b.scopeType[i] as string);
    ck[i] = k > SC_GLOBAL && ((b.flags[i] as number) & AB_HAS_SCOPE) === 0 ? -1 : k; // a scoped grant with no scope covers nothing
  }
  touchInterners(st, b, n);
  const sh = st.shared;
  for (let i = 0, o = 0; i < n; i++, o += 16) {
    a[i] = sh.assignments.appendUnindexed(w[o] as number, w[o + 1] as number, w[o + 2] as number, w[o + 3] as number);
    const k = sk[i] as number;
    s[i] = k < 0 ? -1 : subjectInterner(st, k).internWords(w[o + 4] as number, w[o + 5] as number, w[o + 6] as number, w[o + 7] as number);
    const c = ck[i] as number;
    scope[i] =
      c < 0
        ? -1
        : c === SC_GLOBAL
          ? 0
          : resourceInterner(st, c).internWords(w[o + 12] as number, w[o + 13] as number, w[o + 14] as number, w[o + 15] as number);
    role[i] = sh.roles.internWords(w[o + 8] as number, w[o + 9] as number, w[o + 10] as number, w[o + 11] as number);
  }
  touchHeads(st, b, n);
  for (let i = 0; i < n; i++) {
    const active = ((b.flags[i] as number) & AB_ACTIVE) !== 0;
    placeAssignment(
      st,
      a[i] as number,
      sk[i] as number,
      s[i] as number,
      ck[i] as number,
      scope[i] as number,
      role[i] as number,
      active,
      b.validUntil[i] as number,
    );
  }
}

/** The batch's first pass: the slot each id's probe starts at, read for every row before any is interned. */
function touchInterners(st: State, b: AssignmentBatch, n: number): void {
  const { sk, ck, role } = bat;
  const sh = st.shared;
  const w = b.words;
  let acc = 0;
  for (let i = 0, o = 0; i < n; i++, o += 16) {
    const k = sk[i] as number;
    if (k >= 0) acc ^= subjectInterner(st, k).touch(w[o + 4] as number, w[o + 5] as number, w[o + 6] as number, w[o + 7] as number);
    const c = ck[i] as number;
    if (c > SC_GLOBAL) acc ^= resourceInterner(st, c).touch(w[o + 12] as number, w[o + 13] as number, w[o + 14] as number, w[o + 15] as number);
    role[i] = sh.roles.touch(w[o + 8] as number, w[o + 9] as number, w[o + 10] as number, w[o + 11] as number);
  }
  // The roles' interner keeps its words apart from its slots: the probe's second miss.
  for (let i = 0; i < n; i++) acc ^= sh.roles.touchSlot(role[i] as number);
  touched.sink ^= acc;
}

/** The batch's third pass: each linked record's subject list head and scope list neighbour, read before placing any. */
function touchHeads(st: State, b: AssignmentBatch, n: number): void {
  const { sk, ck, s, scope } = bat;
  const c = st.c;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    const k = sk[i] as number;
    const kc = ck[i] as number;
    if (k < 0 || kc < 0 || ((b.flags[i] as number) & AB_ACTIVE) === 0) continue;
    acc ^= k === SK_USER ? uHead(c, s[i] as number) : grantHead(st, k).get(s[i] as number);
    const h = scopeHead(st, kc).get(scope[i] as number);
    if (h >= 0) acc ^= c.aPrevC.get(h);
  }
  touched.sink ^= acc;
}

/** Marks assignment a present and, when it is linked, writes its grant record into both lists. */
function placeAssignment(st: State, a: number, sk: number, s: number, ck: number, scope: number, role: number, active: boolean, until: number | null): void {
  const c = st.c;
  const n = st.n;
  n.assignments++;
  if (!(active && sk >= 0 && ck >= 0)) {
    gSet(c, a, G_SUBJ, A_UNLINKED);
    return;
  }
  // grantHead without its head object for users (an allocation a row, 5M rows in a build).
  const r = a;
  gSet(c, r, G_SCOPE, scopeKey(ck, scope));
  gSet(c, r, G_ROLE, role);
  gSet(c, r, G_SUBJ, (s << 2) | sk);
  setUntil(c, r, time(until));
  const head = sk === SK_USER ? uHead(c, s) : grantHead(st, sk).get(s);
  if (head < 0) n.subjects++;
  gSet(c, r, G_NEXT, head);
  if (sk === SK_USER) setUHead(st, s, r);
  else grantHead(st, sk).set(s, r);
  linkFront(scopeHead(st, ck), scope, c.aNextC, c.aPrevC, a);
}

export function removeAssignment(st: State, raw: Raw): void {
  const a = st.shared.assignments.find(String(raw.id));
  if (a >= 0 && aState(st.c, a) !== A_NONE) removeAssignmentAt(st, a);
}

function removeAssignmentAt(st: State, a: number): void {
  const c = st.c;
  const r = a;
  if (aState(c, a) >= 0) {
    const heads = grantHead(st, gSubjectKind(c, r));
    const s = gSubject(c, r);
    const key = gGet(c, r, G_SCOPE);
    unlink(scopeHead(st, key & 3), key >> 2, c.aNextC, c.aPrevC, a);
    // A subject's list is short and singly linked: find the record's predecessor.
    let prev = -1;
    for (let x = heads.get(s); x >= 0 && x !== r; x = gGet(c, x, G_NEXT)) prev = x;
    if (prev >= 0) gSet(c, prev, G_NEXT, gGet(c, r, G_NEXT));
    else heads.set(s, gGet(c, r, G_NEXT));
    if (heads.get(s) < 0) st.n.subjects--;
  }
  gSet(c, a, G_SUBJ, A_NONE);
  st.n.assignments--;
}

/**
 * Lays every subject's grant records side by side, in subject order (a
 * build's rows arrive interleaved: a user's five assignments would sit on
 * five different pages), and renumbers the assignments to match: an
 * assignment's id is its record's index. Linked assignments first, in the
 * order of their records, then the rest in id order. Run once by the
 * builder, which owns every page and the assignments' interner.
 */
export function compactGrants(st: State): void {
  const c = st.c;
  const count = st.shared.assignments.count;
  const perm = new Int32Array(count).fill(-1);
  // The records Check walks go straight into the flat base they end in (paged.ts FlatI32): their count
  // is known, so no pages to grow and copy.
  const pages = Math.max(1, Math.ceil((count * G_STRIDE) / PAGE_SIZE));
  const hot = new Int32Array(pages * PAGE_SIZE).fill(-1);
  const cold = new Int32Array(count * G_COLD).fill(-1);
  let top = 0;
  for (const kind of [SK_USER, SK_ACCOUNT, SK_PRINCIPAL, SK_STAFF]) {
    const heads = grantHead(st, kind);
    const subjects = subjectInterner(st, kind).count;
    for (let s = 0; s < subjects; s++) {
      let prev = -1;
      for (let r = heads.get(s); r >= 0; r = c.gRec.get(r * G_STRIDE + G_NEXT)) {
        const n = top++;
        perm[r] = n;
        for (let f = 0; f < G_STRIDE; f++) hot[n * G_STRIDE + f] = c.gRec.get(r * G_STRIDE + f);
        for (let f = 0; f < G_COLD; f++) cold[n * G_COLD + f] = c.gCold.get(r * G_COLD + f);
        if (prev >= 0) hot[prev * G_STRIDE + G_NEXT] = n;
        else heads.set(s, n);
        prev = n;
      }
      if (prev >= 0) hot[prev * G_STRIDE + G_NEXT] = -1;
    }
  }
  for (let a = 0; a < count; a++) {
    if (perm[a] !== -1) continue;
    perm[a] = top;
    cold[top * G_COLD + G_SUBJ - G_STRIDE] = aState(c, a);
    top++;
  }
  renumberScopeLists(st, perm);
  st.shared.assignments.renumber(perm);
  Object.assign(c, { gRec: new FlatI32(-1, hot, new Int32Array(pages), [], pages, false), gCold: I32.of(-1, cold) });
}

/** The scopes' lists of assignments (heads, next and previous links), under compactGrants' new ids. */
function renumberScopeLists(st: State, perm: Int32Array): void {
  const c = st.c;
  const to = (a: number) => (a < 0 ? a : (perm[a] as number));
  const next = new Int32Array(perm.length).fill(-1);
  const prev = new Int32Array(perm.length).fill(-1);
  for (let a = 0; a < perm.length; a++) {
    const n = perm[a] as number;
    next[n] = to(c.aNextC.get(a));
    prev[n] = to(c.aPrevC.get(a));
  }
  for (const kind of [SC_GLOBAL, SC_TENANT, SC_ORG, SC_AVATAR]) {
    const heads = scopeHead(st, kind);
    const end = heads.pageCount * PAGE_SIZE;
    for (let i = 0; i < end; i++) {
      const h = heads.get(i);
      if (h >= 0) heads.set(i, to(h));
    }
  }
  Object.assign(c, { aNextC: I32.of(-1, next), aPrevC: I32.of(-1, prev) });
}

export function upsertMembership(st: State, raw: Raw): void {
  const c = st.c;
  const row = NORMALIZE.memberships(raw);
  const m = st.shared.memberships.intern(row.id);
  if ((c.mFlags.get(m) & EXISTS) !== 0) removeMembershipAt(st, m);
  const p = st.shared.principals.intern(row.principalId);
  const av = st.shared.avatars.intern(row.avatarId);
  c.mFlags.set(m, EXISTS | (row.active ? ACTIVE : 0) | (row.owner ? OWNER : 0));
  c.mPrincipal.set(m, p);
  c.mAvatar.set(m, av);
  c.mAccepted.set(m, time(row.acceptedAt));
  c.mUntil.set(m, time(row.validUntil));
  linkFront(c.prMembers, p, c.mNextP, c.mPrevP, m);
  linkFront(c.avMembers, av, c.mNextA, c.mPrevA, m);
  st.n.memberships++;
}

export function removeMembership(st: State, raw: Raw): void {
  const m = st.shared.memberships.find(String(raw.id));
  if (m >= 0 && (st.c.mFlags.get(m) & EXISTS) !== 0) removeMembershipAt(st, m);
}

function removeMembershipAt(st: State, m: number): void {
  const c = st.c;
  unlink(c.prMembers, c.mPrincipal.get(m), c.mNextP, c.mPrevP, m);
  unlink(c.avMembers, c.mAvatar.get(m), c.mNextA, c.mPrevA, m);
  c.mFlags.set(m, 0);
  st.n.memberships--;
}

/** Whether a membership counts at `now` (active, accepted, unexpired, in an active avatar). */
export function membershipInForce(st: State, m: number, now: number): boolean {
  const c = st.c;
  if ((c.mFlags.get(m) & ACTIVE) === 0) return false;
  if (!(c.mAccepted.get(m) <= now) || c.mUntil.get(m) <= now) return false;
  return (c.avFlags.get(c.mAvatar.get(m)) & ACTIVE) !== 0;
}
