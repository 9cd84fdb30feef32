// Reads shared by every decision: ids to dense ints, where a resource sits
// (tenant ⊃ organization ⊃ avatar), whether a subject exists and can act,
// which permission a key matches, and the grant rule itself. Nothing here
// allocates: a resolved place is written to the module's scratch `place`.

import type { InlineUuidInterner } from "./interner.js";
import { PAGE_MASK, PAGE_SHIFT } from "./paged.js";
import {
  ACTIVE,
  ENABLED,
  EXISTS,
  LOCKED,
  orgFlags,
  orgPerms,
  orgTenant,
  SC_AVATAR,
  SC_GLOBAL,
  SC_ORG,
  SC_TENANT,
  SK_ACCOUNT,
  SK_PRINCIPAL,
  SK_STAFF,
  SK_USER,
  STAFF_SUBJECT,
  type State,
  uFlags,
} from "./state.js";
import type { Reason, ResourceType, ScopeType, SubjectType } from "./types.js";

/** A resource resolved to its place in the hierarchy (-1: none). */
export interface Place {
  tenant: number;
  org: number;
  avatar: number;
  active: boolean;
}

/** The scratch place the last resolvePlace() wrote. */
export const place: Place = { tenant: -1, org: -1, avatar: -1, active: true };

export function subjectKind(type: string): number {
  switch (type) {
    case "user":
      return SK_USER;
    case "account":
      return SK_ACCOUNT;
    case "principal":
      return SK_PRINCIPAL;
    case "staff":
      return SK_STAFF;
    default:
      return -1;
  }
}

export const SUBJECT_TYPE_OF: readonly SubjectType[] = ["user", "account", "principal", "staff"];

export function scopeKind(type: string): number {
  switch (type) {
    case "global":
      return SC_GLOBAL;
    case "tenant":
      return SC_TENANT;
    case "organization":
      return SC_ORG;
    case "avatar":
      return SC_AVATAR;
    default:
      return -1;
  }
}

/** A resource type's scope kind (SC_TENANT / SC_ORG / SC_AVATAR), -1 for any other type ("global" included). */
export function resourceKind(type: string): number {
  const kind = scopeKind(type);
  return kind === SC_GLOBAL ? -1 : kind;
}

export const SCOPE_TYPE_OF: readonly ScopeType[] = ["global", "tenant", "organization", "avatar"];

export function subjectInterner(st: State, kind: number): InlineUuidInterner {
  const s = st.shared;
  return kind === SK_USER ? s.users : kind === SK_ACCOUNT ? s.accounts : kind === SK_PRINCIPAL ? s.principals : s.staff;
}

export function resourceInterner(st: State, kind: number): InlineUuidInterner {
  const s = st.shared;
  return kind === SC_TENANT ? s.tenants : kind === SC_ORG ? s.orgs : s.avatars;
}

export function subjectExists(st: State, kind: number, s: number): boolean {
  const c = st.c;
  if (kind === SK_USER) return (uFlags(c, s) & EXISTS) !== 0;
  const flags = kind === SK_ACCOUNT ? c.acFlags : kind === SK_PRINCIPAL ? c.prFlags : c.sFlags;
  return (flags.get(s) & EXISTS) !== 0;
}

/** Resolves a resource into `place`; false when it does not exist. */
export function resolvePlace(st: State, type: ResourceType | string, id: string): boolean {
  const c = st.c;
  switch (type) {
    case "tenant": {
      const t = st.shared.tenants.find(id);
      if (t < 0 || (c.tFlags.get(t) & EXISTS) === 0) return false;
      return setPlace(t, -1, -1, true);
    }
    case "organization": {
      const o = st.shared.orgs.find(id);
      if (o < 0 || (orgFlags(c, o) & EXISTS) === 0) return false;
      return setPlace(orgTenant(c, o), o, -1, true);
    }
    case "avatar": {
      const a = st.shared.avatars.find(id);
      if (a < 0) return false;
      return resolveAvatar(st, a);
    }
    default:
      return false;
  }
}

/** Resolves an avatar by its dense id. */
export function resolveAvatar(st: State, a: number): boolean {
  const c = st.c;
  const flags = c.avFlags.get(a);
  if ((flags & EXISTS) === 0) return false;
  const o = c.avOrg.get(a);
  const tenant = (orgFlags(c, o) & EXISTS) !== 0 ? orgTenant(c, o) : -1;
  return setPlace(tenant, o, a, (flags & ACTIVE) !== 0);
}

/** Resolves an organization from its hot entry's flags and tenant + 1 (as oHot holds them). */
export function resolveOrgEntry(org: number, flags: number, tenantPlus1: number): boolean {
  return (flags & EXISTS) !== 0 && setPlace(tenantPlus1 - 1, org, -1, true);
}

/** Resolves a resource by kind and dense id (SC_TENANT / SC_ORG / SC_AVATAR). */
export function resolveById(st: State, kind: number, i: number): boolean {
  const c = st.c;
  if (kind === SC_TENANT) return (c.tFlags.get(i) & EXISTS) !== 0 && setPlace(i, -1, -1, true);
  if (kind === SC_ORG) return (orgFlags(c, i) & EXISTS) !== 0 && setPlace(orgTenant(c, i), i, -1, true);
  return resolveAvatar(st, i);
}

function setPlace(tenant: number, org: number, avatar: number, active: boolean): true {
  place.tenant = tenant;
  place.org = org;
  place.avatar = avatar;
  place.active = active;
  return true;
}

/** The last matchPermission()'s permission: its organization (-1: global) and bit, for holdsBit. */
export const matchedPerm = { org: -1, bit: 0 };

/**
 * The permission a key matches on `place`: the organization's own first,
 * then the global one (docs/data-model.md, rule 3). -1 when none. Its
 * organization and bit go to `matchedPerm`. `perms` is the organization's
 * pair table (0: none), when the caller has read it.
 */
export function matchPermission(
  st: State,
  keyId: number,
  org: number,
  perms = org >= 0 && (orgFlags(st.c, org) & EXISTS) !== 0 ? orgPerms(st.c, org) : 0,
): number {
  if (keyId < 0) return -1;
  const c = st.c;
  if (perms !== 0) {
    const p = orgPermission(st.shared.arena.words, perms, keyId);
    if (p >= 0) {
      matchedPerm.org = org;
      return p;
    }
  }
  const p = c.gPermByKey.get(keyId);
  if (p >= 0) {
    matchedPerm.org = -1;
    matchedPerm.bit = c.pHot.get(p * 2 + 1);
  }
  return p;
}

/** Pair tables with at least this many pairs have no hash slots (a slot is a byte: index + 1). */
export const PAIR_SLOT_MAX = 255;
/** A key's first slot in an organization's pair table (role-graph.ts writePairs). */
export const pairSlot = (keyId: number, mask: number): number => (Math.imul(keyId, 0x9e3779b1) >>> 16) & mask;
/** Where the (key, permission, bit) triples of the pair table at `off` start. */
export const pairsAt = (words: Uint32Array, off: number): number => off + 2 + ((words[off + 1] as number) === 0 ? 0 : ((words[off + 1] as number) + 1) >>> 2);

/**
 * Check's match on an organization whose permission table is \`perms\` (its hot entry): the
 * organization when it defines the key, -1 when a global permission has it, -2 when neither; the bit
 * goes to \`matchedPerm.bit\`. What matchPermission decides, without the permission's id, which only
 * explain and the lookups need.
 */
export function permOrgOf(st: State, keyId: number, org: number, perms: number): number {
  if (keyId < 0) return -2;
  if (perms !== 0 && orgPermission(st.shared.arena.words, perms, keyId) >= 0) return org;
  const p = st.c.gPermByKey.get(keyId);
  if (p < 0) return -2;
  matchedPerm.bit = st.c.pHot.get(p * 2 + 1);
  return -1;
}

/**
 * The permission of key `keyId` in an organization's pair table at `off` (-1:
 * none), its bit to `matchedPerm.bit`: [count, mask, byte slots, sorted (key,
 * permission, bit) triples], see role-graph.ts writePairs. One hash probe; a
 * binary search when there are no slots.
 */
export function orgPermission(words: Uint32Array, off: number, keyId: number): number {
  if (off === 0) return -1;
  const mask = words[off + 1] as number;
  if (mask !== 0) {
    const at = off + 2 + ((mask + 1) >>> 2);
    for (let j = pairSlot(keyId, mask); ; j = (j + 1) & mask) {
      const i = ((words[off + 2 + (j >>> 2)] as number) >>> ((j & 3) * 8)) & 255;
      if (i === 0) return -1;
      const t = at + (i - 1) * 3;
      if (words[t] === keyId) {
        matchedPerm.bit = words[t + 2] as number;
        return words[t + 1] as number;
      }
    }
  }
  const at = off + 2;
  let lo = 0;
  let hi = (words[off] as number) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const k = words[at + mid * 3] as number;
    if (k === keyId) {
      matchedPerm.bit = words[at + mid * 3 + 2] as number;
      return words[at + mid * 3 + 1] as number;
    }
    if (k < keyId) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Why a user with these flags cannot act (rule 1), or undefined. */
export function userReason(flags: number): Reason | undefined {
  if ((flags & EXISTS) === 0) return "SUBJECT_NOT_FOUND";
  if ((flags & LOCKED) !== 0) return "SUBJECT_LOCKED";
  if ((flags & ENABLED) === 0) return "SUBJECT_DISABLED";
  return undefined;
}

/** Why an existing subject cannot act at `now`, or undefined when it can (rule 1, in the documented order). */
export function cannotAct(st: State, kind: number, s: number, now: number): Reason | undefined {
  const c = st.c;
  switch (kind) {
    case SK_USER:
      return userReason(uFlags(c, s));
    case SK_ACCOUNT:
      return (c.acFlags.get(s) & ACTIVE) !== 0 ? undefined : "ACCOUNT_INACTIVE";
    case SK_STAFF:
      return (c.sFlags.get(s) & EXISTS) !== 0 ? undefined : "SUBJECT_NOT_FOUND";
    default: {
      const f = c.prFlags.get(s);
      if ((f & ACTIVE) === 0) return "PRINCIPAL_INACTIVE";
      if (!(c.prAccepted.get(s) <= now)) return "NOT_ACCEPTED";
      if (c.prUntil.get(s) <= now) return "PRINCIPAL_EXPIRED";
      if ((c.acFlags.get(c.prAccount.get(s)) & ACTIVE) === 0) return "ACCOUNT_INACTIVE";
      const subject = c.prSubject.get(s);
      if ((f & STAFF_SUBJECT) !== 0) return (c.sFlags.get(subject) & EXISTS) !== 0 ? undefined : "SUBJECT_NOT_FOUND";
      return userReason(uFlags(c, subject));
    }
  }
}

/** Whether a grant made on (scope kind, scope) covers `place`. */
export function covers(kind: number, scope: number, p: Place): boolean {
  switch (kind) {
    case SC_GLOBAL:
      return true;
    case SC_TENANT:
      return scope === p.tenant;
    case SC_ORG:
      return scope === p.org;
    case SC_AVATAR:
      return scope === p.avatar;
    default:
      return false;
  }
}

/**
 * Whether a closure bitset holds `bit`. `off` is what role-graph.ts store()
 * returned: 0 for the empty set, an arena offset of [length, words...], or,
 * for a set of one word without bit 31 (an organization's roles, mostly),
 * the word itself negated, so the grant rule reads no arena line for it.
 */
export function hasBit(words: Uint32Array, off: number, bit: number): boolean {
  if (off < 0) return bit < 31 && ((-off >>> bit) & 1) !== 0;
  if (off === 0) return false;
  const w = bit >>> 5;
  return w < (words[off] as number) && ((words[off + 1 + w] as number) & (1 << (bit & 31))) !== 0;
}

/**
 * The grant rule, the one place Check, explain, List and the lookups decide
 * it: an existing role (with its closure) holds the matched permission on
 * the place. An organization's permission is held only by that
 * organization's roles there; a global one by any role's closure.
 */
export function holds(st: State, role: number, p: Place, matched: number): boolean {
  const pHot = st.c.pHot;
  const m = matched * 2;
  return m >>> PAGE_SHIFT < pHot.pageCount && holdsBit(st, role, p.org, pHot.get(m), pHot.get(m + 1));
}

/** The grant rule for a permission known by its organization (-1: global) and bit (matchPermission's `matchedPerm`). */
export function holdsBit(st: State, role: number, org: number, permOrg: number, bit: number): boolean {
  // Straight from the flat base or the page laid over it (rHot's 4 ints per entry never straddle a
  // page; paged.ts FlatI32): the hot path's reads.
  const rHot = st.c.rHot;
  const r = role * 4;
  const pg = r >>> PAGE_SHIFT;
  if (pg >= rHot.pageCount) return false;
  const k = rHot.over[pg] as number;
  const rp = k === 0 ? rHot.base : (rHot.pages[k - 1] as Int32Array);
  const ro = k === 0 ? r : r & PAGE_MASK;
  if (rp[ro] === 0) return false;
  if (permOrg < 0) return hasBit(st.shared.arena.words, rp[ro + 3] as number, bit);
  const roleOrg = rp[ro + 1] as number;
  return roleOrg >= 0 && roleOrg === org && permOrg === org && hasBit(st.shared.arena.words, rp[ro + 2] as number, bit);
}
