// Directory rows: tenants, organizations, users, staff, accounts,
// principals, avatars and user_organizations, written into a (forked)
// State. Ids are interned on sight, so rows may arrive in any order (an
// account before its organization); a row's absence is its EXISTS flag.

import { NORMALIZE } from "./rows.js";
import {
  ACTIVE,
  allocRecord,
  ENABLED,
  EXISTS,
  freeRecord,
  linkFront,
  LOCKED,
  orgFlags,
  orgTenant,
  setOrgFlags,
  setOrgTenant,
  setUFlags,
  touched,
  STAFF_SUBJECT,
  type State,
  unlink,
} from "./state.js";

type Raw = Record<string, unknown>;
const time = (t: number | null): number => (t === null ? Number.POSITIVE_INFINITY : t);

export function upsertTenant(st: State, raw: Raw): void {
  const t = st.shared.tenants.intern(NORMALIZE.tenants(raw).id);
  st.c.tFlags.set(t, EXISTS);
}

export function removeTenant(st: State, raw: Raw): void {
  const t = st.shared.tenants.find(String(raw.id));
  if (t >= 0) st.c.tFlags.set(t, 0);
}

/** Insert, or update in place (an organization keeps its permissions and their numbering across a rename). */
export function upsertOrganization(st: State, raw: Raw): void {
  const c = st.c;
  const row = NORMALIZE.organizations(raw);
  const o = st.shared.orgs.intern(row.id);
  const tenant = row.tenantId === null ? -1 : st.shared.tenants.intern(row.tenantId);
  const exists = (orgFlags(c, o) & EXISTS) !== 0;
  if (exists && orgTenant(c, o) !== tenant) unlinkOrg(st, o);
  if (!exists || orgTenant(c, o) !== tenant) {
    setOrgTenant(st, o, tenant);
    if (tenant >= 0) linkFront(c.tOrgs, tenant, c.oNext, c.oPrev, o);
  }
  setOrgFlags(st, o, EXISTS);
  c.oName.set(o, row.name);
  c.oSlug.set(o, row.slug);
  c.oStructure.set(o, row.roleStructure);
}

function unlinkOrg(st: State, o: number): void {
  const c = st.c;
  const tenant = orgTenant(c, o);
  if (tenant >= 0) unlink(c.tOrgs, tenant, c.oNext, c.oPrev, o);
  setOrgTenant(st, o, -1);
}

/** On DELETE only; the rows inside it arrive as deletes of their own. */
export function removeOrganization(st: State, raw: Raw): void {
  const o = st.shared.orgs.find(String(raw.id));
  if (o < 0 || (orgFlags(st.c, o) & EXISTS) === 0) return;
  unlinkOrg(st, o);
  setOrgFlags(st, o, 0);
}

export function upsertUser(st: State, raw: Raw): void {
  const row = NORMALIZE.users(raw);
  const u = st.shared.users.intern(row.id);
  setUFlags(st, u, EXISTS | (row.locked ? LOCKED : 0) | (row.enabled ? ENABLED : 0));
}

/**
 * Rows of users read as words (a binary COPY): row i's id at words[4 * i], its flags at flags[i]
 * (UW_LOCKED, UW_ENABLED). Every id's slot is read before any is interned, so their cache misses overlap.
 */
export const UW_LOCKED = 1;
export const UW_ENABLED = 2;

export function upsertUserWords(st: State, words: Uint32Array, flags: Uint8Array, n: number): void {
  const users = st.shared.users;
  let acc = 0;
  for (let i = 0, o = 0; i < n; i++, o += 4) acc ^= users.touch(words[o] as number, words[o + 1] as number, words[o + 2] as number, words[o + 3] as number);
  for (let i = 0, o = 0; i < n; i++, o += 4) {
    const u = users.internWords(words[o] as number, words[o + 1] as number, words[o + 2] as number, words[o + 3] as number);
    const f = flags[i] as number;
    setUFlags(st, u, EXISTS | ((f & UW_LOCKED) !== 0 ? LOCKED : 0) | ((f & UW_ENABLED) !== 0 ? ENABLED : 0));
  }
  touched.sink ^= acc;
}

export function removeUser(st: State, raw: Raw): void {
  const u = st.shared.users.find(String(raw.id));
  if (u >= 0) setUFlags(st, u, 0);
}

export function upsertStaff(st: State, raw: Raw): void {
  st.c.sFlags.set(st.shared.staff.intern(NORMALIZE.staff(raw).id), EXISTS);
}

export function removeStaff(st: State, raw: Raw): void {
  const s = st.shared.staff.find(String(raw.id));
  if (s >= 0) st.c.sFlags.set(s, 0);
}

export function upsertAccount(st: State, raw: Raw): void {
  const row = NORMALIZE.accounts(raw);
  const a = st.shared.accounts.intern(row.id);
  st.c.acOrg.set(a, st.shared.orgs.intern(row.organizationId));
  st.c.acFlags.set(a, EXISTS | (row.active ? ACTIVE : 0));
}

export function removeAccount(st: State, raw: Raw): void {
  const a = st.shared.accounts.find(String(raw.id));
  if (a >= 0) st.c.acFlags.set(a, 0);
}

export function upsertPrincipal(st: State, raw: Raw): void {
  const c = st.c;
  const row = NORMALIZE.principals(raw);
  const p = st.shared.principals.intern(row.id);
  if ((c.prFlags.get(p) & EXISTS) !== 0) removePrincipalAt(st, p);
  const staff = row.subjectType === "staff";
  const account = st.shared.accounts.intern(row.accountId);
  c.prFlags.set(p, EXISTS | (row.active ? ACTIVE : 0) | (staff ? STAFF_SUBJECT : 0));
  c.prAccount.set(p, account);
  c.prSubject.set(p, (staff ? st.shared.staff : st.shared.users).intern(row.subjectId));
  c.prAccepted.set(p, time(row.acceptedAt));
  c.prUntil.set(p, time(row.validUntil));
  linkFront(c.acPrincipals, account, c.prNext, c.prPrev, p);
}

export function removePrincipal(st: State, raw: Raw): void {
  const p = st.shared.principals.find(String(raw.id));
  if (p >= 0 && (st.c.prFlags.get(p) & EXISTS) !== 0) removePrincipalAt(st, p);
}

function removePrincipalAt(st: State, p: number): void {
  const c = st.c;
  unlink(c.acPrincipals, c.prAccount.get(p), c.prNext, c.prPrev, p);
  c.prFlags.set(p, 0);
}

export function upsertAvatar(st: State, raw: Raw): void {
  const c = st.c;
  const row = NORMALIZE.avatars(raw);
  const a = st.shared.avatars.intern(row.id);
  if ((c.avFlags.get(a) & EXISTS) !== 0) removeAvatarAt(st, a);
  const o = st.shared.orgs.intern(row.organizationId);
  c.avOrg.set(a, o);
  c.avFlags.set(a, EXISTS | (row.active ? ACTIVE : 0));
  linkFront(c.oAvatars, o, c.avNext, c.avPrev, a);
}

export function removeAvatar(st: State, raw: Raw): void {
  const a = st.shared.avatars.find(String(raw.id));
  if (a >= 0 && (st.c.avFlags.get(a) & EXISTS) !== 0) removeAvatarAt(st, a);
}

function removeAvatarAt(st: State, a: number): void {
  const c = st.c;
  unlink(c.oAvatars, c.avOrg.get(a), c.avNext, c.avPrev, a);
  c.avFlags.set(a, 0);
}

/** A user's place in an organization (and its primary role): one record per (user, organization). */
export function upsertUserOrganization(st: State, raw: Raw): void {
  const row = NORMALIZE.user_organizations(raw);
  const u = st.shared.users.intern(row.userId);
  const o = st.shared.orgs.intern(row.organizationId);
  placeUserOrganization(st, u, o, row.primaryRoleId === null ? -1 : st.shared.roles.intern(row.primaryRoleId));
}

let placeIds = new Int32Array(0);

/**
 * A batch of user_organizations rows read as words (k = 3 ids a row, as SnapshotBuilder.loadIds takes
 * them; bit 2 of nulls[r] set when row r has no primary role): every row's ids are interned, then every
 * user's list head is read, then the rows are placed, so the heads' cache misses overlap. The same ids
 * and records as upsertUserOrganization row by row.
 */
export function upsertUserOrganizationBatch(st: State, words: Uint32Array, nulls: Uint8Array, n: number): void {
  const { users, orgs, roles } = st.shared;
  if (placeIds.length < 3 * n) placeIds = new Int32Array(3 * n);
  const ids = placeIds;
  for (let r = 0, o = 0; r < n; r++, o += 12) {
    ids[3 * r] = users.internWords(words[o] as number, words[o + 1] as number, words[o + 2] as number, words[o + 3] as number);
    ids[3 * r + 1] = orgs.internWords(words[o + 4] as number, words[o + 5] as number, words[o + 6] as number, words[o + 7] as number);
    ids[3 * r + 2] =
      ((nulls[r] as number) & 4) === 0
        ? roles.internWords(words[o + 8] as number, words[o + 9] as number, words[o + 10] as number, words[o + 11] as number)
        : -1;
  }
  let acc = 0;
  for (let r = 0; r < n; r++) acc ^= st.c.uPlaces.get(ids[3 * r] as number);
  touched.sink ^= acc;
  for (let r = 0; r < n; r++) placeUserOrganization(st, ids[3 * r] as number, ids[3 * r + 1] as number, ids[3 * r + 2] as number);
}

function placeUserOrganization(st: State, u: number, o: number, role: number): void {
  const c = st.c;
  for (let r = c.uPlaces.get(u); r >= 0; r = c.plNext.get(r)) {
    if (c.plOrg.get(r) === o) {
      c.plRole.set(r, role);
      return;
    }
  }
  const r = allocRecord(st.n, "pl", c.plNext);
  c.plOrg.set(r, o);
  c.plRole.set(r, role);
  c.plNext.set(r, c.uPlaces.get(u));
  c.uPlaces.set(u, r);
}

export function removeUserOrganization(st: State, raw: Raw): void {
  const c = st.c;
  const row = NORMALIZE.user_organizations(raw);
  const u = st.shared.users.find(row.userId);
  const o = st.shared.orgs.find(row.organizationId);
  if (u < 0 || o < 0) return;
  let prev = -1;
  for (let r = c.uPlaces.get(u); r >= 0; prev = r, r = c.plNext.get(r)) {
    if (c.plOrg.get(r) !== o) continue;
    const next = c.plNext.get(r);
    if (prev >= 0) c.plNext.set(prev, next);
    else c.uPlaces.set(u, next);
    freeRecord(st.n, "pl", c.plNext, r);
    return;
  }
}
