// ListPermissions: everything a subject holds, per scope, in seed 000's
// UserOrganizationInfo shape (docs/data-model.md, "What ListPermissions
// returns"). Not on the hot path: it allocates freely.

import { scopeRefOf } from "./check.js";
import { G_NEXT, G_ROLE, G_SCOPE, gGet, grantHead, gUntil, membershipInForce } from "./grant-index.js";
import { cannotAct, covers, hasBit, type Place, place, resolveById, resolvePlace, subjectExists, subjectInterner, subjectKind } from "./places.js";
import { readPairs } from "./role-graph.js";
import { EXISTS, orgFlags, orgPerms, OWNER, SC_AVATAR, SC_GLOBAL, SC_ORG, SK_PRINCIPAL, SK_USER, type State } from "./state.js";
import type { Listing, ResourceRef, ScopeEntry, SubjectRef } from "./types.js";

/** A grant in force: an assignment, or a membership's built-in role. */
export interface HeldGrant {
  readonly kind: "ASSIGNMENT" | "MEMBERSHIP";
  readonly id: number;
  readonly role: number;
  readonly scopeKind: number;
  readonly scope: number;
}

/** Every grant of the subject in force at `now` whose role exists (scope not yet considered). */
export function grantsOf(st: State, kind: number, s: number, now: number): HeldGrant[] {
  const c = st.c;
  const out: HeldGrant[] = [];
  const fromAssignments = (head: number) => {
    for (let r = head; r >= 0; r = gGet(c, r, G_NEXT)) {
      if (gUntil(c, r) <= now) continue;
      const key = gGet(c, r, G_SCOPE);
      out.push({ kind: "ASSIGNMENT", id: r, role: gGet(c, r, G_ROLE), scopeKind: key & 3, scope: key >> 2 });
    }
  };
  fromAssignments(grantHead(st, kind).get(s));
  if (kind === SK_PRINCIPAL) {
    fromAssignments(c.acGrants.get(c.prAccount.get(s)));
    const { builtinMember: member, builtinOwner: owner } = st.n;
    for (let m = c.prMembers.get(s); m >= 0; m = c.mNextP.get(m)) {
      if (!membershipInForce(st, m, now)) continue;
      const av = c.mAvatar.get(m);
      if (member >= 0) out.push({ kind: "MEMBERSHIP", id: m, role: member, scopeKind: SC_AVATAR, scope: av });
      if (owner >= 0 && (c.mFlags.get(m) & OWNER) !== 0) out.push({ kind: "MEMBERSHIP", id: m, role: owner, scopeKind: SC_AVATAR, scope: av });
    }
  }
  return out.filter((g) => (c.rFlags.get(g.role) & EXISTS) !== 0);
}

function placeOf(st: State, kind: number, id: number): Place | undefined {
  if (kind === SC_GLOBAL) return { tenant: -1, org: -1, avatar: -1, active: true };
  return resolveById(st, kind, id) ? { ...place } : undefined;
}

interface ScopeAt {
  kind: number;
  id: number;
  place: Place;
}

/**
 * Everything the subject holds, per scope: each scope it has a grant on
 * (and, for users, each organization it belongs to), or, with `within`,
 * that resource and the scopes inside it. Complete: never truncated.
 */
export function list(st: State, subject: SubjectRef, within: ResourceRef | undefined, now: number): Listing | undefined {
  const kind = subjectKind(subject.type);
  const s = kind < 0 ? -1 : subjectInterner(st, kind).find(subject.id);
  if (s < 0 || !subjectExists(st, kind, s)) return undefined;
  const cannot = cannotAct(st, kind, s, now);
  if (cannot) return { subjectStatus: cannot, entries: [] };
  const grants = grantsOf(st, kind, s, now);
  let withinPlace: Place | undefined;
  if (within) {
    if (!resolvePlace(st, within.type, within.id)) return { subjectStatus: "GRANTED", entries: [] };
    withinPlace = { ...place };
  }
  const scopes = new Map<string, ScopeAt>();
  const add = (k: number, id: number) => {
    const p = placeOf(st, k, id);
    if (!p) return;
    if (withinPlace && !inside(within as ResourceRef, withinPlace, k, p)) return;
    scopes.set(`${k}:${id}`, { kind: k, id, place: p });
  };
  if (within && withinPlace) {
    const k = within.type === "tenant" ? 1 : within.type === "organization" ? 2 : 3;
    scopes.set(`${k}:${k === 1 ? withinPlace.tenant : k === 2 ? withinPlace.org : withinPlace.avatar}`, {
      kind: k,
      id: k === 1 ? withinPlace.tenant : k === 2 ? withinPlace.org : withinPlace.avatar,
      place: withinPlace,
    });
  }
  for (const g of grants) add(g.scopeKind, g.scope);
  if (kind === SK_USER) for (let r = st.c.uPlaces.get(s); r >= 0; r = st.c.plNext.get(r)) add(SC_ORG, st.c.plOrg.get(r));
  const entries = [...scopes.values()].map((at) => entryFor(st, kind, s, at, grants));
  entries.sort((a, b) => cmp(a.sortKey, b.sortKey));
  return { subjectStatus: "GRANTED", entries: entries.map(({ sortKey: _s, ...e }) => e) };
}

function inside(within: ResourceRef, w: Place, kind: number, p: Place): boolean {
  if (kind === SC_GLOBAL) return false;
  if (within.type === "tenant") return p.tenant === w.tenant;
  if (within.type === "organization") return p.org === w.org;
  return p.avatar === w.avatar;
}

function entryFor(st: State, kind: number, s: number, at: ScopeAt, grants: HeldGrant[]): ScopeEntry & { sortKey: string } {
  const c = st.c;
  const sh = st.shared;
  const held: number[] = [];
  for (const g of grants) {
    if (!covers(g.scopeKind, g.scope, at.place)) continue;
    const roleOrg = c.rOrg.get(g.role);
    if (roleOrg >= 0 && roleOrg !== at.place.org) continue;
    if (!held.includes(g.role)) held.push(g.role);
  }
  const org = at.place.org >= 0 && (orgFlags(c, at.place.org) & EXISTS) !== 0 ? at.place.org : -1;
  // An inactive avatar denies everything: its entry lists the roles held there, no permissions.
  const perms = at.place.active ? permissionKeys(st, held, org) : [];
  // The primary role: a user's place in the organization names it, and the user holds it there. No guessing otherwise.
  let primary = -1;
  if (kind === SK_USER && at.kind === SC_ORG) {
    for (let r = c.uPlaces.get(s); r >= 0; r = c.plNext.get(r)) {
      if (c.plOrg.get(r) === at.id && held.includes(c.plRole.get(r))) primary = c.plRole.get(r);
    }
  }
  const keyOf = (r: number) => sh.keys.key(c.rKey.get(r));
  const orgUuid = org >= 0 ? sh.orgs.uuid(org) : undefined;
  const scope = scopeRefOf(st, at.kind, at.id);
  return {
    sortKey: `${at.place.org >= 0 ? sh.orgs.uuid(at.place.org) : ""}|${at.kind === SC_AVATAR ? 1 : 0}|${scope?.id ?? ""}|${scope?.type ?? "global"}`,
    scope,
    orgId: orgUuid,
    orgName: org >= 0 ? c.oName.get(org) : "",
    urlSafeOrgName: org >= 0 ? (c.oSlug.get(org) ?? "") : "",
    orgRoleStructure: org >= 0 ? c.oStructure.get(org) : "",
    userRole: primary >= 0 ? keyOf(primary) : "",
    inheritedUserRolesPlusCurrentRole: primary >= 0 ? uniqueSorted(closureOf(st, primary).map(keyOf)) : [],
    userPermissions: perms,
    additionalRoles: uniqueSorted(held.filter((r) => r !== primary).map(keyOf)),
  };
}

/** The matched permissions the held roles' closures grant on a place of organization `org` (-1: none). */
function permissionKeys(st: State, held: number[], org: number): string[] {
  const c = st.c;
  const sh = st.shared;
  const words = sh.arena.words;
  const out = new Set<string>();
  const orgPairs = org >= 0 ? readPairs(st, orgPerms(c, org)) : [];
  const orgKeys = new Set<number>();
  for (let i = 0; i < orgPairs.length; i += 2) orgKeys.add(orgPairs[i] as number);
  for (const role of held) {
    const glob = c.rHot.get(role * 4 + 3);
    for (let bit = 0; bit < st.n.globalNextBit; bit++) {
      if (!hasBit(words, glob, bit)) continue;
      const p = c.gPermByBit.get(bit);
      // A global permission whose key the organization defines itself is not the matched one there.
      if (p >= 0 && !orgKeys.has(c.pKey.get(p))) out.add(sh.keys.key(c.pKey.get(p)));
    }
    if (org >= 0 && c.rOrg.get(role) === org) {
      const bits = c.rHot.get(role * 4 + 2);
      for (let i = 0; i < orgPairs.length; i += 2) {
        const p = orgPairs[i + 1] as number;
        if (hasBit(words, bits, c.pHot.get(p * 2 + 1))) out.add(sh.keys.key(orgPairs[i] as number));
      }
    }
  }
  return [...out].sort(cmp);
}

/** The role and every existing role it inherits, transitively. */
export function closureOf(st: State, role: number): number[] {
  const c = st.c;
  const seen = new Set<number>([role]);
  const out = [role];
  for (let i = 0; i < out.length; i++) {
    for (let e = c.rParents.get(out[i] as number); e >= 0; e = c.eNextOfChild.get(e)) {
      const p = c.eParent.get(e);
      if ((c.rFlags.get(p) & EXISTS) !== 0 && !seen.has(p)) {
        seen.add(p);
        out.push(p);
      }
    }
  }
  return out;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const uniqueSorted = (xs: string[]): string[] => [...new Set(xs)].sort(cmp);
