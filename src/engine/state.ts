// The state one snapshot reads: structure-of-arrays columns (paged,
// copy-on-write; see paged.ts) indexed by the dense ids of interner.ts, a
// few scalars, and the rate-limit policies. A fork shares every page with
// its parent and copies a page the first time it writes to it.
//
// Relations are lists threaded through the columns: doubly linked where a
// list can be long and a member must leave in O(1) (grants per subject and
// per scope, memberships per principal and per avatar, principals per
// account, organizations per tenant, avatars per organization), singly
// linked with a free list for the short per-role and per-user ones (direct
// permissions, inheritance edges, a user's places). -1 ends a list.

import { InlineUuidInterner, KeyInterner, UuidInterner, WordArena } from "./interner.js";
import { F64, FlatI32, I32, Obj, U8 } from "./paged.js";
import { PolicyIndex } from "./rate-limit-policies.js";
import { forkSlots, type HotSlots, mirrorSlot, unbuiltSlots } from "./hot-slots.js";

// Subject kinds and scope kinds, as stored.
export const SK_USER = 0;
export const SK_ACCOUNT = 1;
export const SK_PRINCIPAL = 2;
export const SK_STAFF = 3;
export const SC_GLOBAL = 0;
export const SC_TENANT = 1;
export const SC_ORG = 2;
export const SC_AVATAR = 3;

// Flag bits.
export const EXISTS = 1;
export const ACTIVE = 2;
export const LOCKED = 4;
export const ENABLED = 8;
export const OWNER = 16;
export const STAFF_SUBJECT = 32;

/** Interners and arenas every snapshot of one lineage shares (append-only). */
export interface Shared {
  readonly users: InlineUuidInterner;
  readonly staff: InlineUuidInterner;
  readonly accounts: InlineUuidInterner;
  readonly principals: InlineUuidInterner;
  readonly tenants: InlineUuidInterner;
  readonly orgs: InlineUuidInterner;
  readonly avatars: InlineUuidInterner;
  /** Roles and permissions: never parsed by Check (it names a permission by key), so the denser layout. */
  readonly roles: UuidInterner;
  readonly perms: UuidInterner;
  readonly assignments: UuidInterner;
  readonly memberships: UuidInterner;
  /** Permission keys, role keys, role names. */
  readonly keys: KeyInterner;
  readonly arena: WordArena;
}

export function createShared(): Shared {
  // Check parses subject and resource ids: their interners hold the words inline (one cache line a find);
  // the rest keep 16 bytes an id beside a slot table of ids (~22 bytes an id against ~33).
  const u = () => new InlineUuidInterner();
  return {
    users: u(),
    staff: u(),
    accounts: u(),
    principals: u(),
    tenants: u(),
    orgs: u(),
    avatars: u(),
    roles: new UuidInterner(),
    perms: new UuidInterner(),
    assignments: new UuidInterner(),
    memberships: new UuidInterner(),
    keys: new KeyInterner(),
    arena: new WordArena(),
  };
}

/** A list head or link column: -1 ends a list. */
const link = () => new I32(-1);

/** Users, staff, accounts and principals: the subjects a grant can name. */
function subjectColumns() {
  return {
    // users: what Check reads of one, side by side (one cache line): [flags, grant list head + 1]
    // at 2u (both 0 for an unknown user; see uFlags/uHead), and places (user_organizations records)
    uHot: new FlatI32(0),
    uPlaces: link(),
    sFlags: new U8(),
    sGrants: link(),
    // accounts
    acFlags: new U8(),
    acOrg: link(),
    acGrants: link(),
    acPrincipals: link(),
    // principals
    prFlags: new U8(),
    prAccount: link(),
    prSubject: link(),
    prAccepted: new F64(),
    prUntil: new F64(),
    prGrants: link(),
    prMembers: link(),
    prNext: link(),
    prPrev: link(),
  };
}

/** Tenants, organizations and avatars: the scopes a grant can name. */
function scopeColumns() {
  return {
    // tenants
    tFlags: new U8(),
    tScope: link(),
    tOrgs: link(),
    // organizations
    /** What Check reads of an organization, side by side (one cache line): [flags, tenant + 1, the arena
     *  offset of its permissions as a pair table (role-graph.ts writePairs; 0: none), 0] at 4o; all 0 for
     *  an unknown organization. Read through orgFlags/orgTenant/orgPerms. */
    oHot: new FlatI32(0),
    oName: new Obj<string>(""),
    oSlug: new Obj<string | null>(null),
    oStructure: new Obj<string>(""),
    oScope: link(),
    oAvatars: link(),
    oNext: link(),
    oPrev: link(),
    oNextBit: new I32(0),
    // avatars
    avFlags: new U8(),
    avOrg: link(),
    avScope: link(),
    avMembers: link(),
    avNext: link(),
    avPrev: link(),
  };
}

/** Roles, their permissions and inheritance edges, and the permissions themselves. */
function roleColumns() {
  return {
    // roles: key and name are key ids; closures are arena offsets (0 = empty)
    rFlags: new U8(),
    rOrg: link(),
    rKey: link(),
    rName: link(),
    rDirect: link(),
    rParents: link(),
    rChildren: link(),
    /** What the grant rule reads of a role, side by side (one cache line): [exists, org, orgBits, globBits] at 4r,
     *  the closure's two bitsets as arena offsets (0: empty). */
    rHot: new FlatI32(0),
    // role_permissions records, in the role's list
    rpPerm: link(),
    rpNext: link(),
    // role_inheritance records, in the child's parent list and the parent's child list
    eChild: link(),
    eParent: link(),
    eNextOfChild: link(),
    eNextOfParent: link(),
    // permissions
    pFlags: new U8(),
    pKey: link(),
    /** A permission's organization (-1: global) and bit in its numbering: [org, bit] at 2p. */
    pHot: new FlatI32(0),
    /** Global permissions by key id and by bit. */
    gPermByKey: link(),
    gPermByBit: link(),
    /** Index 0: the list of global-scope grants. */
    globalScope: link(),
  };
}

/** Assignments, the grant records Check reads, memberships and a user's places. */
function grantColumns() {
  return {
    // assignments: the scope list (an assignment's grant record is at its id; grant-index.ts)
    aNextC: link(),
    aPrevC: link(),
    // grant records of linked assignments, in the subject's list: what Check walks as one 16-byte
    // struct (gRec), the rest (8 bytes) in gCold (grant-index.ts G_*). A build lays each subject's records
    // side by side (compactGrants): a user's five records are 80 bytes.
    gRec: new FlatI32(-1),
    gCold: link(),
    // memberships
    mFlags: new U8(),
    mPrincipal: link(),
    mAvatar: link(),
    mAccepted: new F64(),
    mUntil: new F64(),
    mNextP: link(),
    mPrevP: link(),
    mNextA: link(),
    mPrevA: link(),
    // user_organizations records
    plOrg: link(),
    plRole: link(),
    plNext: link(),
  };
}

function makeColumns() {
  return { ...subjectColumns(), ...scopeColumns(), ...roleColumns(), ...grantColumns() };
}

export type Columns = ReturnType<typeof makeColumns>;

/** Counters and list heads that are not per entity. */
export interface Scalars {
  globalNextBit: number;
  /** Record pools: next unused index and free-list head. */
  rpTop: number;
  rpFree: number;
  eTop: number;
  eFree: number;
  plTop: number;
  plFree: number;
  /** The built-in global roles (by key), -1 when absent. */
  builtinMember: number;
  builtinOwner: number;
  roles: number;
  perms: number;
  assignments: number;
  memberships: number;
  /** Subjects with at least one grant in their list. */
  subjects: number;
}

export interface State {
  readonly shared: Shared;
  readonly c: Columns;
  readonly n: Scalars;
  readonly policies: PolicyIndex;
  /** Users and organizations by UUID with their uHot / oHot entries (hot-slots.ts); cap 0 while a builder loads. */
  us: HotSlots;
  os: HotSlots;
}

export function createState(shared: Shared = createShared()): State {
  return {
    shared,
    c: makeColumns(),
    n: {
      globalNextBit: 0,
      rpTop: 0,
      rpFree: -1,
      eTop: 0,
      eFree: -1,
      plTop: 0,
      plFree: -1,
      builtinMember: -1,
      builtinOwner: -1,
      roles: 0,
      perms: 0,
      assignments: 0,
      memberships: 0,
      subjects: 0,
    },
    policies: new PolicyIndex(),
    us: unbuiltSlots(2, 2),
    os: unbuiltSlots(4, 3),
  };
}

/** A writable copy of `s` that shares everything with it (a column copies its directory on its first write, a page on its first write). */
export function forkState(s: State): State {
  const out: Record<string, unknown> = {};
  for (const k in s.c) out[k] = (s.c[k as keyof Columns] as { fork(): unknown }).fork();
  return { shared: s.shared, c: out as Columns, n: { ...s.n }, policies: s.policies.fork(), us: forkSlots(s.us), os: forkSlots(s.os) };
}

/** Ends writing to a state: from now on it is a published snapshot's, read-only. */
export function sealState(s: State): void {
  for (const k in s.c) (s.c[k as keyof Columns] as { seal(): void }).seal();
  s.us.t.seal();
  s.os.t.seal();
}

type Pool = "rp" | "e" | "pl";
const FREE = { rp: "rpFree", e: "eFree", pl: "plFree" } as const;
const TOP = { rp: "rpTop", e: "eTop", pl: "plTop" } as const;

/** Where a pool's records keep their next link (a column, or a field of a struct column). */
export interface NextLinks {
  get(rec: number): number;
  set(rec: number, v: number): void;
}

/** Allocates a record from a pool (free list first). */
export function allocRecord(n: Scalars, pool: Pool, next: NextLinks): number {
  const free = n[FREE[pool]];
  if (free >= 0) {
    n[FREE[pool]] = next.get(free);
    return free;
  }
  return n[TOP[pool]]++;
}

export function freeRecord(n: Scalars, pool: Pool, next: NextLinks, rec: number): void {
  next.set(rec, n[FREE[pool]]);
  n[FREE[pool]] = rec;
}

/** A user's flags (0: no such user). */
export const uFlags = (c: Columns, u: number): number => c.uHot.get(u * 2);
export function setUFlags(st: State, u: number, flags: number): void {
  st.c.uHot.set(u * 2, flags);
  mirrorUserHot(st, u);
}
/** The head of a user's grant list (-1: none); stored + 1 so that the column's default 0 is "none". */
export const uHead = (c: Columns, u: number): number => c.uHot.get(u * 2 + 1) - 1;
export function setUHead(st: State, u: number, r: number): void {
  st.c.uHot.set(u * 2 + 1, r + 1);
  mirrorUserHot(st, u);
}

/** Copies a user's uHot entry to its slot in st.us (not while a builder loads: build() fills the table once). */
function mirrorUserHot(st: State, u: number): void {
  st.us = mirrorSlot(st.us, st.shared.users, st.c.uHot, u);
}

/** An organization's flags (0: unknown), tenant (-1: none) and permission pair table (arena offset, 0: none); see oHot. */
export const orgFlags = (c: Columns, o: number): number => c.oHot.get(o * 4);
export function setOrgFlags(st: State, o: number, flags: number): void {
  st.c.oHot.set(o * 4, flags);
  st.os = mirrorSlot(st.os, st.shared.orgs, st.c.oHot, o);
}
export const orgTenant = (c: Columns, o: number): number => c.oHot.get(o * 4 + 1) - 1;
export function setOrgTenant(st: State, o: number, t: number): void {
  st.c.oHot.set(o * 4 + 1, t + 1);
  st.os = mirrorSlot(st.os, st.shared.orgs, st.c.oHot, o);
}
export const orgPerms = (c: Columns, o: number): number => c.oHot.get(o * 4 + 2);
export function setOrgPerms(st: State, o: number, off: number): void {
  st.c.oHot.set(o * 4 + 2, off);
  st.os = mirrorSlot(st.os, st.shared.orgs, st.c.oHot, o);
}

/** Puts `item` at the front of the doubly linked list of `owner`. */
export function linkFront(head: I32, owner: number, next: I32, prev: I32, item: number): void {
  const h = head.get(owner);
  next.set(item, h);
  prev.set(item, -1);
  if (h >= 0) prev.set(h, item);
  head.set(owner, item);
}

/** Takes `item` out of the doubly linked list of `owner` in O(1). */
export function unlink(head: I32, owner: number, next: I32, prev: I32, item: number): void {
  const n = next.get(item);
  const p = prev.get(item);
  if (p >= 0) next.set(p, n);
  else head.set(owner, n);
  if (n >= 0) prev.set(n, p);
  next.set(item, -1);
  prev.set(item, -1);
}

export { F64, FlatI32, I32, Obj, U8 };

/** Where a batch load's touches (reads that only warm the cache) go, so the compiler keeps them. */
export const touched = { sink: 0 };
