// Grants: role assignments, threaded through two doubly linked lists (the
// subject's and the scope's), and memberships, threaded through the
// principal's and the avatar's. Removing one is O(1) however long the list
// (an organization's million-member scope list is never walked to delete).
// Only active assignments with a known subject and scope kind are linked;
// expiry is checked at decision time.

import { resourceInterner, scopeKind, subjectInterner, subjectKind } from "./places.js";
import { NORMALIZE } from "./rows.js";
import {
  ACTIVE,
  allocRecord,
  EXISTS,
  F64,
  freeRecord,
  I32,
  LINKED,
  linkFront,
  OWNER,
  SC_GLOBAL,
  SC_ORG,
  SC_TENANT,
  SK_ACCOUNT,
  SK_PRINCIPAL,
  SK_STAFF,
  SK_USER,
  type State,
  unlink,
} from "./state.js";

type Raw = Record<string, unknown>;
const time = (t: number | null): number => (t === null ? Number.POSITIVE_INFINITY : t);

/** aKinds packs the subject kind (low 3 bits) and the scope kind (next 3); 7 = unknown. */
export const UNKNOWN_KIND = 7;
export const subjectKindOf = (kinds: number): number => kinds & 7;
export const scopeKindOf = (kinds: number): number => (kinds >>> 3) & 7;
/** gScope packs the scope id and kind into one int (id << 2 | kind): a grant's coverage is one read and a compare. */
export const scopeKey = (kind: number, scope: number): number => (scope << 2) | kind;

export function grantHead(st: State, kind: number): I32 {
  const c = st.c;
  return kind === SK_USER ? c.uGrants : kind === SK_ACCOUNT ? c.acGrants : kind === SK_PRINCIPAL ? c.prGrants : c.sGrants;
}

export function scopeHead(st: State, kind: number): I32 {
  const c = st.c;
  return kind === SC_GLOBAL ? c.globalScope : kind === SC_TENANT ? c.tScope : kind === SC_ORG ? c.oScope : c.avScope;
}

export function upsertAssignment(st: State, raw: Raw): void {
  const c = st.c;
  const row = NORMALIZE.role_assignments(raw);
  const a = st.shared.assignments.intern(row.id);
  if ((c.aFlags.get(a) & EXISTS) !== 0) removeAssignmentAt(st, a);
  const sk = subjectKind(row.subjectType);
  let ck = scopeKind(row.scopeType);
  if (ck > SC_GLOBAL && row.scopeId === null) ck = -1; // a scoped grant with no scope covers nothing
  const s = sk < 0 ? -1 : subjectInterner(st, sk).intern(row.subjectId);
  const scope = ck < 0 ? -1 : ck === SC_GLOBAL ? 0 : resourceInterner(st, ck).intern(row.scopeId as string);
  const role = st.shared.roles.intern(row.roleId);
  c.aKinds.set(a, (sk < 0 ? UNKNOWN_KIND : sk) | ((ck < 0 ? UNKNOWN_KIND : ck) << 3));
  c.aSubj.set(a, s);
  const linked = row.active && sk >= 0 && ck >= 0;
  c.aFlags.set(a, EXISTS | (linked ? LINKED : 0));
  st.n.assignments++;
  if (!linked) return;
  const r = allocRecord(st.n, "g", c.gNext);
  c.gScope.set(r, scopeKey(ck, scope));
  c.gRole.set(r, role);
  c.gUntil.set(r, time(row.validUntil));
  c.gAssign.set(r, a);
  c.aRec.set(a, r);
  const heads = grantHead(st, sk);
  if (heads.get(s) < 0) st.n.subjects++;
  c.gNext.set(r, heads.get(s));
  heads.set(s, r);
  linkFront(scopeHead(st, ck), scope, c.aNextC, c.aPrevC, a);
}

export function removeAssignment(st: State, raw: Raw): void {
  const a = st.shared.assignments.find(String(raw.id));
  if (a >= 0 && (st.c.aFlags.get(a) & EXISTS) !== 0) removeAssignmentAt(st, a);
}

function removeAssignmentAt(st: State, a: number): void {
  const c = st.c;
  if ((c.aFlags.get(a) & LINKED) !== 0) {
    const kinds = c.aKinds.get(a);
    const heads = grantHead(st, subjectKindOf(kinds));
    const s = c.aSubj.get(a);
    const r = c.aRec.get(a);
    unlink(scopeHead(st, scopeKindOf(kinds)), c.gScope.get(r) >> 2, c.aNextC, c.aPrevC, a);
    // A subject's list is short and singly linked: find the record's predecessor.
    let prev = -1;
    for (let x = heads.get(s); x >= 0 && x !== r; x = c.gNext.get(x)) prev = x;
    if (prev >= 0) c.gNext.set(prev, c.gNext.get(r));
    else heads.set(s, c.gNext.get(r));
    if (heads.get(s) < 0) st.n.subjects--;
    freeRecord(st.n, "g", c.gNext, r);
    c.aRec.set(a, -1);
  }
  c.aFlags.set(a, 0);
  st.n.assignments--;
}

/**
 * Lays every subject's grant records side by side, in subject order (a
 * build's rows arrive interleaved: a user's five assignments would sit on
 * five different pages). Run once by the builder, which owns every page.
 */
export function compactGrants(st: State): void {
  const c = st.c;
  const old = { scope: c.gScope, role: c.gRole, until: c.gUntil, assign: c.gAssign, next: c.gNext };
  const next = { scope: new I32(-1), role: new I32(-1), until: new F64(), assign: new I32(-1), next: new I32(-1) };
  let top = 0;
  for (const kind of [SK_USER, SK_ACCOUNT, SK_PRINCIPAL, SK_STAFF]) {
    const heads = grantHead(st, kind);
    const count = subjectInterner(st, kind).count;
    for (let s = 0; s < count; s++) {
      let prev = -1;
      for (let r = heads.get(s); r >= 0; r = old.next.get(r)) {
        const n = top++;
        next.scope.set(n, old.scope.get(r));
        next.role.set(n, old.role.get(r));
        next.until.set(n, old.until.get(r));
        next.assign.set(n, old.assign.get(r));
        c.aRec.set(old.assign.get(r), n);
        if (prev >= 0) next.next.set(prev, n);
        else heads.set(s, n);
        prev = n;
      }
    }
  }
  Object.assign(c, { gScope: next.scope, gRole: next.role, gUntil: next.until, gAssign: next.assign, gNext: next.next });
  st.n.gTop = top;
  st.n.gFree = -1;
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
