// Check and its explanation. The fast path allocates nothing: ids are
// parsed into scratch words, the place and the found grant go to module
// scratch, and every outcome without explain is a frozen constant. Explain
// runs the very same search and then builds the path.

import { G_NEXT, G_ROLE, G_SCOPE, G_STRIDE, G_UNTIL_HI, gUntil, membershipInForce, scopeKey, TWO_32 } from "./grant-index.js";
import { parseWords } from "./interner.js";
import { PAGE_MASK, PAGE_SHIFT } from "./paged.js";
import {
  cannotAct,
  holds,
  holdsBit,
  matchedPerm,
  matchPermission,
  place,
  resolveById,
  resolveOrgEntry,
  resourceInterner,
  resourceKind,
  SCOPE_TYPE_OF,
  permOrgOf,
  subjectExists,
  subjectInterner,
  subjectKind,
  userReason,
} from "./places.js";
import { findSlot, HS_ENTRY } from "./hot-slots.js";
import { ENABLED, EXISTS, LOCKED, OWNER, SC_AVATAR, SC_ORG, SC_TENANT, SK_ACCOUNT, SK_PRINCIPAL, SK_USER, type State, uHead } from "./state.js";
import { type Decision, REASONS, type Reason, type ResourceRef, type ResourceType, type Step, type SubjectRef } from "./types.js";

const DECISIONS = new Map<Reason, Decision>(REASONS.map((r) => [r, Object.freeze({ allowed: r === "GRANTED", reason: r })]));
export const decisionOf = (r: Reason): Decision => DECISIONS.get(r) as Decision;
const GRANTED = decisionOf("GRANTED");
const NO_GRANT = decisionOf("NO_GRANT");

/** The grant the last findGrant() found: for an assignment, id is its grant record (explain reads the assignment from it). */
export const found = { kind: "ASSIGNMENT" as "ASSIGNMENT" | "MEMBERSHIP", id: -1, role: -1, scopeKind: 0, scope: 0 };

/** Why the subject cannot get a decision before grants are looked at (rules 1-5), with the place resolved; -1 subject on success. */
function preflight(
  st: State,
  subject: SubjectRef,
  permission: string,
  resource: ResourceRef,
  now: number,
  out: { s: number; kind: number; matched: number; permOrg: number; bit: number; head: number },
): Reason | undefined {
  const kind = subjectKind(subject.type);
  const rkind = resourceKind(resource.type);
  // Both ids parsed before either is looked up, so that the two tables' cache misses are in flight
  // together (no side effects: the reasons still come in the documented order). A user and an
  // organization are found in the snapshot's hot slots, which hold what Check reads of them on the
  // same line (hot-slots.ts).
  const sOk = kind >= 0 && parseWords(subject.id, W, 0);
  const rOk = rkind >= 0 && parseWords(resource.id, W, 4);
  const us = sOk && kind === SK_USER ? findSlot(st.us, W, 0) : -1;
  const os = rOk && rkind === SC_ORG ? findSlot(st.os, W, 4) : -1;
  const s = kind === SK_USER ? (us < 0 ? -1 : st.us.t.get(us) - 1) : sOk ? subjectInterner(st, kind).findWords(W, 0) : -1;
  const r = rkind === SC_ORG ? (os < 0 ? -1 : st.os.t.get(os) - 1) : rOk ? resourceInterner(st, rkind).findWords(W, 4) : -1;
  const uf = us < 0 ? 0 : st.us.t.get(us + HS_ENTRY);
  if (s < 0 || (kind === SK_USER ? (uf & EXISTS) === 0 : !subjectExists(st, kind, s))) return "SUBJECT_NOT_FOUND";
  if (r < 0 || !(rkind === SC_ORG ? resolveOrgEntry(r, st.os.t.get(os + HS_ENTRY), st.os.t.get(os + HS_ENTRY + 1)) : resolveById(st, rkind, r)))
    return "RESOURCE_NOT_FOUND";
  const keyId = st.shared.keys.find(permission);
  const matched = rkind === SC_ORG ? matchPermission(st, keyId, r, st.os.t.get(os + HS_ENTRY + 2)) : matchPermission(st, keyId, place.org);
  if (matched < 0) return "PERMISSION_NOT_FOUND";
  const cannot = kind === SK_USER ? userReason(uf) : cannotAct(st, kind, s, now);
  if (cannot) return cannot;
  if (!place.active) return "RESOURCE_INACTIVE";
  out.s = s;
  out.kind = kind;
  out.matched = matched;
  out.permOrg = matchedPerm.org;
  out.bit = matchedPerm.bit;
  out.head = us < 0 ? -1 : st.us.t.get(us + HS_ENTRY + 1) - 1;
  return undefined;
}

/** The subject's words at 0, the resource's at 4 (preflight). */
const W = new Int32Array(8);
const pre = { s: -1, kind: -1, matched: -1, permOrg: -1, bit: 0, head: -1 };

/** Check(subject, permission, resource) at `now` (epoch ms): the rules of docs/data-model.md, in their order. */
export function check(st: State, subject: SubjectRef, permission: string, resource: ResourceRef, now: number, explain = false): Decision {
  if (!explain && subject.type === "user" && resource.type === "organization") {
    const d = userOnOrg(st, subject.id, permission, resource.id, now);
    if (d !== undefined) return d;
  }
  const why = preflight(st, subject, permission, resource, now, pre);
  if (why !== undefined) return decisionOf(why);
  if (!findGrant(st, pre.kind, pre.s, pre, now, pre.head)) return NO_GRANT;
  if (!explain) return GRANTED;
  return { allowed: true, reason: "GRANTED", steps: explainPath(st, pre.matched) };
}

/**
 * The commonest Check, a user on an organization, when every rule before the grants passes: GRANTED
 * or NO_GRANT, exactly as preflight() and findGrant() decide them. Undefined when a rule before the
 * grants fails (check() then runs the general path, which names the reason). Kept short on purpose:
 * at scale the same walk ran 150-200 ns faster in a small function than inside preflight() and
 * findGrant(), as what V8 inlines of the chain changed (docs/benchmarks.md, "Tenth look").
 */
function userOnOrg(st: State, userId: string, permission: string, orgId: string, now: number): Decision | undefined {
  if (!parseWords(userId, W, 0) || !parseWords(orgId, W, 4)) return undefined;
  const us = findSlot(st.us, W, 0);
  const os = findSlot(st.os, W, 4);
  if (us < 0 || os < 0) return undefined;
  // Each slot's ints read from the array that holds its page (a slot never straddles one).
  const ut = st.us.t;
  const uk = ut.over[us >>> PAGE_SHIFT] as number;
  const ua = uk === 0 ? ut.base : (ut.pages[uk - 1] as Int32Array);
  const u = (uk === 0 ? us : us & PAGE_MASK) + HS_ENTRY;
  const ot = st.os.t;
  const ok = ot.over[os >>> PAGE_SHIFT] as number;
  const oa = ok === 0 ? ot.base : (ot.pages[ok - 1] as Int32Array);
  const o = ok === 0 ? os : os & PAGE_MASK;
  const org = (oa[o] as number) - 1;
  if (((oa[o + HS_ENTRY] as number) & EXISTS) === 0) return undefined;
  const permOrg = permOrgOf(st, st.shared.keys.find(permission), org, oa[o + HS_ENTRY + 2] as number);
  // The user exists, is not locked and is enabled (userReason() would name the first that fails).
  if (permOrg === -2 || ((ua[u] as number) & (EXISTS | LOCKED | ENABLED)) !== (EXISTS | ENABLED)) return undefined;
  const tenant = (oa[o + HS_ENTRY + 1] as number) - 1;
  const bit = matchedPerm.bit;
  const t = tenant >= 0 ? scopeKey(SC_TENANT, tenant) : -2;
  const ko = scopeKey(SC_ORG, org);
  const nowHi = Math.floor(now / TWO_32);
  // assignmentGrant's walk, without the avatar key or the found grant, written out here: calling it
  // instead costs about 12% at 5M (A/B 0.898 and 1/1.163, docs/benchmarks.md "Tenth look");
  // check-fast-path.test.ts holds the two to the same decisions.
  const gRec = st.c.gRec;
  const base = gRec.base;
  const over = gRec.over;
  for (let r = (ua[u + 1] as number) - 1; r >= 0; ) {
    const i = r * G_STRIDE;
    const k = over[i >>> PAGE_SHIFT] as number;
    const g = k === 0 ? base : (gRec.pages[k - 1] as Int32Array);
    const at = k === 0 ? i : i & PAGE_MASK;
    const key = g[at + G_SCOPE] as number;
    const hi = g[at + G_UNTIL_HI] as number;
    if (
      (key === ko || key === 0 || key === t) &&
      (hi > nowHi || (hi === nowHi && gUntil(st.c, r) > now)) &&
      holdsBit(st, g[at + G_ROLE] as number, org, permOrg, bit)
    )
      return GRANTED;
    r = g[at + G_NEXT] as number;
  }
  return NO_GRANT;
}

/** The permission matched: its id, organization (-1: global) and bit (matchPermission's `matchedPerm`). */
interface Matched {
  matched: number;
  permOrg: number;
  bit: number;
}

/**
 * The first grant of the subject that covers `place` and whose role holds the permission; written to
 * `found`. A user's grant list head may be given (Check read it with the user).
 */
export function findGrant(st: State, kind: number, s: number, perm: Matched, now: number, userHead = -2): boolean {
  const c = st.c;
  const matched = perm.matched;
  const head =
    kind === SK_USER ? (userHead === -2 ? uHead(c, s) : userHead) : (kind === SK_ACCOUNT ? c.acGrants : kind === SK_PRINCIPAL ? c.prGrants : c.sGrants).get(s);
  if (assignmentGrant(st, head, perm.permOrg, perm.bit, now)) return true;
  if (kind !== SK_PRINCIPAL) return false;
  if (assignmentGrant(st, c.acGrants.get(c.prAccount.get(s)), perm.permOrg, perm.bit, now)) return true;
  if (place.avatar < 0) return false;
  const member = st.n.builtinMember;
  const owner = st.n.builtinOwner;
  for (let m = c.prMembers.get(s); m >= 0; m = c.mNextP.get(m)) {
    if (c.mAvatar.get(m) !== place.avatar || !membershipInForce(st, m, now)) continue;
    if (member >= 0 && holds(st, member, place, matched)) return setFound("MEMBERSHIP", m, member, SC_AVATAR, place.avatar);
    if (owner >= 0 && (c.mFlags.get(m) & OWNER) !== 0 && holds(st, owner, place, matched)) return setFound("MEMBERSHIP", m, owner, SC_AVATAR, place.avatar);
  }
  return false;
}

function assignmentGrant(st: State, head: number, permOrg: number, bit: number, now: number): boolean {
  const gRec = st.c.gRec;
  const base = gRec.base;
  const over = gRec.over;
  const nowHi = Math.floor(now / TWO_32);
  // The packed scope keys that cover the place (-2 matches nothing stored); global is 0.
  const t = place.tenant >= 0 ? scopeKey(SC_TENANT, place.tenant) : -2;
  const o = place.org >= 0 ? scopeKey(SC_ORG, place.org) : -2;
  const av = place.avatar >= 0 ? scopeKey(SC_AVATAR, place.avatar) : -2;
  for (let r = head; r >= 0; ) {
    // One record is G_STRIDE ints on one page (see grant-index.ts), read from the flat base unless a
    // write since the build laid a copy of its page over it (paged.ts FlatI32).
    const i = r * G_STRIDE;
    const k = over[i >>> PAGE_SHIFT] as number;
    const g = k === 0 ? base : (gRec.pages[k - 1] as Int32Array);
    const at = k === 0 ? i : i & PAGE_MASK;
    const key = g[at + G_SCOPE] as number;
    const next = g[at + G_NEXT] as number;
    const hi = g[at + G_UNTIL_HI] as number;
    // The expiry's high int decides unless it is now's; then the low int (gCold) does.
    if ((key === o || key === 0 || key === t || key === av) && (hi > nowHi || (hi === nowHi && gUntil(st.c, r) > now))) {
      const role = g[at + G_ROLE] as number;
      if (holdsBit(st, role, place.org, permOrg, bit)) return setFound("ASSIGNMENT", r, role, key & 3, key >> 2);
    }
    r = next;
  }
  return false;
}

function setFound(kind: "ASSIGNMENT" | "MEMBERSHIP", id: number, role: number, scopeKind: number, scope: number): true {
  found.kind = kind;
  found.id = id;
  found.role = role;
  found.scopeKind = scopeKind;
  found.scope = scope;
  return true;
}

/** A grant's scope as a ResourceRef (undefined for a global grant). */
export function scopeRefOf(st: State, kind: number, scope: number): ResourceRef | undefined {
  if (kind === 0 || scope < 0) return undefined;
  const s = st.shared;
  const interner = kind === 1 ? s.tenants : kind === 2 ? s.orgs : s.avatars;
  return { type: SCOPE_TYPE_OF[kind] as ResourceType, id: interner.uuid(scope) };
}

/** assignment/membership → role → inherited roles → the role holding the permission → permission. */
function explainPath(st: State, matched: number): Step[] {
  const c = st.c;
  const sh = st.shared;
  const scope = scopeRefOf(st, found.scopeKind, found.scope);
  const grantId = found.kind === "ASSIGNMENT" ? sh.assignments.uuid(found.id) : sh.memberships.uuid(found.id);
  const role = found.role;
  const steps: Step[] = [{ kind: found.kind, id: grantId, ...(scope ? { scope } : {}) }, roleStep("ROLE", st, role)];
  // Breadth-first over parents to the nearest role that holds the permission directly.
  const prev = new Map<number, number>([[role, -1]]);
  const queue = [role];
  let at: number | undefined;
  for (let i = 0; i < queue.length && at === undefined; i++) {
    const r = queue[i] as number;
    for (let rp = c.rDirect.get(r); rp >= 0; rp = c.rpNext.get(rp)) if (c.rpPerm.get(rp) === matched) at = r;
    if (at !== undefined) break;
    for (let e = c.rParents.get(r); e >= 0; e = c.eNextOfChild.get(e)) {
      const p = c.eParent.get(e);
      if ((c.rFlags.get(p) & EXISTS) !== 0 && !prev.has(p)) {
        prev.set(p, r);
        queue.push(p);
      }
    }
  }
  const chain: number[] = [];
  for (let r = at; r !== undefined && r !== role && r >= 0; r = prev.get(r)) chain.unshift(r);
  for (const r of chain) steps.push(roleStep("INHERITED_ROLE", st, r));
  steps.push({ kind: "PERMISSION", id: sh.perms.uuid(matched), key: sh.keys.key(c.pKey.get(matched)) });
  return steps;
}

function roleStep(kind: "ROLE" | "INHERITED_ROLE", st: State, r: number): Step {
  return { kind, id: st.shared.roles.uuid(r), key: st.shared.keys.key(st.c.rKey.get(r)) };
}
