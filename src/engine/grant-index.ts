// Grants: role assignments, threaded through two doubly linked lists (the
// subject's and the scope's), and memberships, threaded through the
// principal's and the avatar's. Removing one is O(1) however long the list
// (an organization's million-member scope list is never walked to delete).
// Only active assignments with a known subject and scope kind are linked;
// expiry is checked at decision time.

import { resourceInterner, scopeKind, subjectInterner, subjectKind } from "./places.js";
import { NORMALIZE } from "./rows.js";
import { ACTIVE, EXISTS, type I32, LINKED, linkFront, OWNER, SC_GLOBAL, SC_ORG, SC_TENANT, SK_ACCOUNT, SK_PRINCIPAL, SK_USER, type State, unlink } from "./state.js";

type Raw = Record<string, unknown>;
const time = (t: number | null): number => (t === null ? Number.POSITIVE_INFINITY : t);

/** aKinds packs the subject kind (low 3 bits) and the scope kind (next 3); 7 = unknown. */
export const UNKNOWN_KIND = 7;
export const subjectKindOf = (kinds: number): number => kinds & 7;
export const scopeKindOf = (kinds: number): number => (kinds >>> 3) & 7;
/** aScope packs the scope id and kind into one int (id << 2 | kind): a grant's coverage is one read and a compare. */
export const scopeKey = (kind: number, scope: number): number => (scope << 2) | kind;

export function grantHead(st: State, kind: number): I32 {
  const c = st.c;
  return kind === SK_USER ? c.uGrants : kind === SK_ACCOUNT ? c.acGrants : kind === SK_PRINCIPAL ? c.prGrants : c.sGrants;
}

export function scopeHead(st: State, kind: number): I32 {
  const c = st.c;
  return kind === SC_GLOBAL ? c.gScope : kind === SC_TENANT ? c.tScope : kind === SC_ORG ? c.oScope : c.avScope;
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
  c.aKinds.set(a, (sk < 0 ? UNKNOWN_KIND : sk) | ((ck < 0 ? UNKNOWN_KIND : ck) << 3));
  c.aSubj.set(a, s);
  c.aRole.set(a, st.shared.roles.intern(row.roleId));
  c.aScope.set(a, ck < 0 ? -1 : scopeKey(ck, scope));
  c.aUntil.set(a, time(row.validUntil));
  const linked = row.active && sk >= 0 && ck >= 0;
  c.aFlags.set(a, EXISTS | (linked ? LINKED : 0));
  st.n.assignments++;
  if (!linked) return;
  const heads = grantHead(st, sk);
  if (heads.get(s) < 0) st.n.subjects++;
  linkFront(heads, s, c.aNextS, c.aPrevS, a);
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
    unlink(heads, s, c.aNextS, c.aPrevS, a);
    if (heads.get(s) < 0) st.n.subjects--;
    unlink(scopeHead(st, scopeKindOf(kinds)), c.aScope.get(a) >> 2, c.aNextC, c.aPrevC, a);
  }
  c.aFlags.set(a, 0);
  st.n.assignments--;
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
