// The lookups (issue 13): who may do P on R, and on what may S do P. Both
// walk the reverse indexes — the grants made on each scope that covers R,
// an avatar's memberships, an account's principals; and for a subject its
// grants expanded to the resources they cover — and decide each candidate
// with the same grant rule as Check (places.ts holds), never by calling
// Check for every subject or resource. Lazy: a caller paging through the
// answer pays for the pages it takes.

import { scopeRefOf } from "./check.js";
import { G_ROLE, G_SCOPE, gGet, gSubject, gSubjectKind, gUntil, membershipInForce, scopeHead } from "./grant-index.js";
import { grantsOf } from "./list.js";
import {
  cannotAct,
  covers,
  holds,
  matchPermission,
  type Place,
  place,
  resolveById,
  resolvePlace,
  SUBJECT_TYPE_OF,
  subjectExists,
  subjectInterner,
  subjectKind,
} from "./places.js";
import { OWNER, SC_AVATAR, SC_GLOBAL, SC_ORG, SC_TENANT, SK_ACCOUNT, SK_PRINCIPAL, type State } from "./state.js";
import type { ResourceRef, ResourceType, SubjectRef } from "./types.js";

export interface SubjectGrant {
  readonly subject: SubjectRef;
  readonly grant: { readonly kind: "ASSIGNMENT" | "MEMBERSHIP"; readonly id: string; readonly roleId: string };
}

/** Every subject for which check(subject, permission, resource, now) is GRANTED, each once, with a grant that allows it. */
export function* lookupSubjects(st: State, permission: string, resource: ResourceRef, now: number): Generator<SubjectGrant> {
  if (!resolvePlace(st, resource.type, resource.id) || !place.active) return;
  const at: Place = { ...place };
  const matched = matchPermission(st, st.shared.keys.find(permission), at.org);
  if (matched < 0) return;
  const c = st.c;
  const seen = new Set<number>();
  const key = (kind: number, s: number) => s * 4 + kind;
  const canAct = (kind: number, s: number) => subjectExists(st, kind, s) && cannotAct(st, kind, s, now) === undefined;
  const out = (kind: number, s: number, grant: "ASSIGNMENT" | "MEMBERSHIP", id: number, role: number): SubjectGrant => ({
    subject: { type: SUBJECT_TYPE_OF[kind] as SubjectRef["type"], id: subjectInterner(st, kind).uuid(s) },
    grant: { kind: grant, id: (grant === "ASSIGNMENT" ? st.shared.assignments : st.shared.memberships).uuid(id), roleId: st.shared.roles.uuid(role) },
  });
  const scopes: Array<[number, number]> = [[SC_GLOBAL, 0]];
  if (at.tenant >= 0) scopes.push([SC_TENANT, at.tenant]);
  if (at.org >= 0) scopes.push([SC_ORG, at.org]);
  if (at.avatar >= 0) scopes.push([SC_AVATAR, at.avatar]);
  for (const [kind, scope] of scopes) {
    for (let a = scopeHead(st, kind).get(scope); a >= 0; a = c.aNextC.get(a)) {
      const rec = a; // an assignment's grant record is at its id
      const scopeKey = gGet(c, rec, G_SCOPE);
      if (gUntil(c, rec) <= now || !covers(scopeKey & 3, scopeKey >> 2, at)) continue;
      const role = gGet(c, rec, G_ROLE);
      if (!holds(st, role, at, matched)) continue;
      const sk = gSubjectKind(c, rec);
      const s = gSubject(c, rec);
      if (!seen.has(key(sk, s)) && canAct(sk, s)) {
        seen.add(key(sk, s));
        yield out(sk, s, "ASSIGNMENT", a, role);
      }
      // A principal acts with its account's grants.
      if (sk !== SK_ACCOUNT) continue;
      for (let p = c.acPrincipals.get(s); p >= 0; p = c.prNext.get(p)) {
        if (seen.has(key(SK_PRINCIPAL, p)) || !canAct(SK_PRINCIPAL, p)) continue;
        seen.add(key(SK_PRINCIPAL, p));
        yield out(SK_PRINCIPAL, p, "ASSIGNMENT", a, role);
      }
    }
  }
  if (at.avatar < 0) return;
  const { builtinMember: member, builtinOwner: owner } = st.n;
  const memberHolds = member >= 0 && holds(st, member, at, matched);
  const ownerHolds = owner >= 0 && holds(st, owner, at, matched);
  if (!memberHolds && !ownerHolds) return;
  for (let m = c.avMembers.get(at.avatar); m >= 0; m = c.mNextA.get(m)) {
    const p = c.mPrincipal.get(m);
    if (seen.has(key(SK_PRINCIPAL, p)) || !membershipInForce(st, m, now) || !canAct(SK_PRINCIPAL, p)) continue;
    const role = memberHolds ? member : (c.mFlags.get(m) & OWNER) !== 0 ? owner : -1;
    if (role < 0) continue;
    seen.add(key(SK_PRINCIPAL, p));
    yield out(SK_PRINCIPAL, p, "MEMBERSHIP", m, role);
  }
}

const RESOURCE_KIND: Record<ResourceType, number> = { tenant: SC_TENANT, organization: SC_ORG, avatar: SC_AVATAR };

export interface ResourceGrant {
  readonly resource: ResourceRef;
  readonly grant: SubjectGrant["grant"];
}

/** Every resource of `resourceType` on which check(subject, permission, resource, now) is GRANTED, each once. */
export function* lookupResources(st: State, subject: SubjectRef, permission: string, resourceType: ResourceType, now: number): Generator<ResourceRef> {
  for (const r of lookupResourceGrants(st, subject, permission, resourceType, now)) yield r.resource;
}

/** lookupResources, each resource with a grant that allows it (an assignment, or a membership's built-in role). */
export function* lookupResourceGrants(st: State, subject: SubjectRef, permission: string, resourceType: ResourceType, now: number): Generator<ResourceGrant> {
  const kind = subjectKind(subject.type);
  const s = kind < 0 ? -1 : subjectInterner(st, kind).find(subject.id);
  if (s < 0 || !subjectExists(st, kind, s) || cannotAct(st, kind, s, now) !== undefined) return;
  const keyId = st.shared.keys.find(permission);
  if (keyId < 0) return;
  const want = RESOURCE_KIND[resourceType];
  const grants = grantsOf(st, kind, s, now);
  const seen = new Set<number>();
  for (const g of grants) {
    for (const r of covered(st, g.scopeKind, g.scope, want)) {
      if (seen.has(r) || !resolveById(st, want, r) || !place.active) continue;
      const matched = matchPermission(st, keyId, place.org);
      if (matched < 0 || !covers(g.scopeKind, g.scope, place) || !holds(st, g.role, place, matched)) continue;
      seen.add(r);
      const id = (g.kind === "ASSIGNMENT" ? st.shared.assignments : st.shared.memberships).uuid(g.id);
      yield { resource: scopeRefOf(st, want, r) as ResourceRef, grant: { kind: g.kind, id, roleId: st.shared.roles.uuid(g.role) } };
    }
  }
}

/** The resources of kind `want` inside a scope (candidates: existence and activity are checked by the caller). */
function* covered(st: State, scopeKind: number, scope: number, want: number): Generator<number> {
  const c = st.c;
  const sh = st.shared;
  if (scopeKind === SC_GLOBAL) {
    const interner = want === SC_TENANT ? sh.tenants : want === SC_ORG ? sh.orgs : sh.avatars;
    for (let i = 0; i < interner.count; i++) yield i;
    return;
  }
  if (scopeKind === want) {
    yield scope;
    return;
  }
  if (scopeKind === SC_TENANT) {
    for (let o = c.tOrgs.get(scope); o >= 0; o = c.oNext.get(o)) {
      if (want === SC_ORG) yield o;
      else if (want === SC_AVATAR) for (let a = c.oAvatars.get(o); a >= 0; a = c.avNext.get(a)) yield a;
    }
    return;
  }
  if (scopeKind === SC_ORG && want === SC_AVATAR) for (let a = c.oAvatars.get(scope); a >= 0; a = c.avNext.get(a)) yield a;
}
