// The decision engine, v2: immutable snapshots in a compact layout.
//
// A Snapshot is read-only and answers Check, List, the lookups, tenancy and
// rate-limit policy questions at one revision. apply(changes, revision)
// returns the next Snapshot and leaves this one exactly as it was: the new
// one shares every page of storage and copies only the pages the changes
// touch (plus the chunks of their page directories that hold them: see paged.ts). If apply throws, nothing
// the old snapshot reads was written, so a caller keeps serving it.
//
// Layout (one job per module):
//   paged.ts          paged copy-on-write typed-array columns; the hot ones read from one flat
//                     base per build, with the pages a later write copied laid over it
//   interner.ts       UUIDs and keys → dense ints; the closure word arena
//   hot-slots.ts      users and organizations by UUID with what Check reads of them, per snapshot
//   state.ts          the columns of every entity, list plumbing, fork
//   directory-rows.ts tenants, organizations, users, staff, accounts, principals, avatars, places
//   role-graph.ts     roles, permissions, grants of permissions, inheritance, closures
//   grant-index.ts    assignments (per subject, per scope), memberships (per principal, per avatar)
//   places.ts         resolution, "can act", permission matching, the grant rule
//   check.ts, list.ts, lookups.ts   the decisions
// Pure: no I/O, no clock, no node:*, no gen/.

import { check } from "./check.js";
import * as dir from "./directory-rows.js";
import * as grants from "./grant-index.js";
import { list } from "./list.js";
import { lookupResourceGrants, lookupResources, lookupSubjects, type ResourceGrant, type SubjectGrant } from "./lookups.js";
import { resolvePlace, place, subjectInterner, subjectKind } from "./places.js";
import type { AppliedPolicy, RatePolicy, RatePolicyLookup, RateSubject } from "./rate-limit-policies.js";
import { InlineUuidInterner, UuidInterner, type UuidIds } from "./interner.js";
import { pagedBytes } from "./paged.js";
import { buildSlots } from "./hot-slots.js";
import { RoleGraphWriter } from "./role-graph.js";
import { type Change, FOLLOWED_TABLES, type FollowedTable, NORMALIZE } from "./rows.js";
import { createState, EXISTS, forkState, orgFlags, orgTenant, sealState, SK_ACCOUNT, SK_PRINCIPAL, type State, touched } from "./state.js";
import type { Decision, Listing, ResourceRef, ResourceType, SubjectRef } from "./types.js";

/** Thrown by apply() when a change cannot be applied incrementally (TRUNCATE, a bulk import's RELOAD): reload from the database. */
export class NeedsReload extends Error {}

export interface EngineStats {
  roles: number;
  permissions: number;
  assignments: number;
  memberships: number;
  subjects: number;
}

type Raw = Record<string, unknown>;

/** Writes rows into one (fresh or forked) state; closes dirty roles on finish(). */
class Writer {
  readonly roles: RoleGraphWriter;
  constructor(
    readonly st: State,
    building = false,
  ) {
    this.roles = new RoleGraphWriter(st, building);
  }

  upsert(table: FollowedTable, raw: Raw): void {
    const { st, roles } = this;
    switch (table) {
      case "tenants":
        return dir.upsertTenant(st, raw);
      case "organizations":
        return dir.upsertOrganization(st, raw);
      case "users":
        return dir.upsertUser(st, raw);
      case "staff":
        return dir.upsertStaff(st, raw);
      case "accounts":
        return dir.upsertAccount(st, raw);
      case "principals":
        return dir.upsertPrincipal(st, raw);
      case "avatars":
        return dir.upsertAvatar(st, raw);
      case "memberships":
        return grants.upsertMembership(st, raw);
      case "roles":
        return roles.upsertRole(raw);
      case "permissions":
        return roles.upsertPermission(raw);
      case "role_permissions":
        return roles.upsertRolePermission(raw);
      case "role_inheritance":
        return roles.upsertInheritance(raw);
      case "role_assignments":
        return grants.upsertAssignment(st, raw);
      case "user_organizations":
        return dir.upsertUserOrganization(st, raw);
      case "rate_limit_policies":
        return st.policies.upsertPolicy(NORMALIZE.rate_limit_policies(raw));
      case "rate_limit_assignments":
        return st.policies.upsertAssignment(NORMALIZE.rate_limit_assignments(raw));
    }
  }

  remove(table: FollowedTable, raw: Raw): void {
    const { st, roles } = this;
    switch (table) {
      case "tenants":
        return dir.removeTenant(st, raw);
      case "organizations":
        return dir.removeOrganization(st, raw);
      case "users":
        return dir.removeUser(st, raw);
      case "staff":
        return dir.removeStaff(st, raw);
      case "accounts":
        return dir.removeAccount(st, raw);
      case "principals":
        return dir.removePrincipal(st, raw);
      case "avatars":
        return dir.removeAvatar(st, raw);
      case "memberships":
        return grants.removeMembership(st, raw);
      case "roles":
        return roles.removeRole(raw);
      case "permissions":
        return roles.removePermission(raw);
      case "role_permissions":
        return roles.removeRolePermission(raw);
      case "role_inheritance":
        return roles.removeInheritance(raw);
      case "role_assignments":
        return grants.removeAssignment(st, raw);
      case "user_organizations":
        return dir.removeUserOrganization(st, raw);
      case "rate_limit_policies":
        return st.policies.removePolicy(Number(raw.id));
      case "rate_limit_assignments":
        return st.policies.removeAssignment(String(raw.id));
    }
  }

  /** One change-log row: organizations, roles and permissions update in place (their numbering, edges and grants survive a rename). */
  change(c: Change): void {
    // A bulk import logs one RELOAD row instead of its rows (migration 0009).
    if (c.op === "RELOAD") throw new NeedsReload("a bulk import changed the data");
    if (!(FOLLOWED_TABLES as readonly string[]).includes(c.table)) return;
    const table = c.table as FollowedTable;
    if (c.op === "TRUNCATE") throw new NeedsReload(`${c.table} was truncated`);
    const inPlace = c.op === "UPDATE" && (table === "organizations" || table === "roles" || table === "permissions");
    if (c.oldRow && (c.op === "DELETE" || (c.op === "UPDATE" && !inPlace))) this.remove(table, c.oldRow);
    if (c.newRow && (c.op === "INSERT" || c.op === "UPDATE")) this.upsert(table, c.newRow);
  }
}

/** A read-only view of the followed tables at one revision. */
export class Snapshot implements RatePolicyLookup {
  readonly #st: State;
  readonly revision: bigint;

  /** @internal Use SnapshotBuilder or apply(). */
  constructor(st: State, revision: bigint) {
    this.#st = st;
    this.revision = revision;
  }

  /** @internal The snapshot's tables, for a benchmark that times a Check's stages (bench/engine-stages.ts). */
  static stateOf(s: Snapshot): State {
    return s.#st;
  }

  /** Check(subject, permission, resource) at `now` (epoch ms); the rules and their order are docs/data-model.md's. */
  check(subject: SubjectRef, permission: string, resource: ResourceRef, now: number, explain = false): Decision {
    return check(this.#st, subject, permission, resource, now, explain);
  }

  /** Everything the subject holds, per scope (ListPermissions); undefined when the subject does not exist. */
  list(subject: SubjectRef, within: ResourceRef | undefined, now: number): Listing | undefined {
    return list(this.#st, subject, within, now);
  }

  /** Every subject for which check(subject, permission, resource, now) would be GRANTED, with a grant that allows it. */
  lookupSubjects(permission: string, resource: ResourceRef, now: number): Iterable<SubjectGrant> {
    return lookupSubjects(this.#st, permission, resource, now);
  }

  /** Every resource of a type on which check(subject, permission, resource, now) would be GRANTED. */
  lookupResources(subject: SubjectRef, permission: string, resourceType: ResourceType, now: number): Iterable<ResourceRef> {
    return lookupResources(this.#st, subject, permission, resourceType, now);
  }

  /** lookupResources, each resource with a grant that allows it. */
  lookupResourceGrants(subject: SubjectRef, permission: string, resourceType: ResourceType, now: number): Iterable<ResourceGrant> {
    return lookupResourceGrants(this.#st, subject, permission, resourceType, now);
  }

  /** The tenant a resource belongs to: its id, null when it has none, undefined when unknown. */
  resourceTenant(resource: ResourceRef): string | null | undefined {
    if (!resolvePlace(this.#st, resource.type, resource.id)) return undefined;
    return place.tenant >= 0 ? this.#st.shared.tenants.uuid(place.tenant) : null;
  }

  /** The tenant of an account or principal (null for users and staff, which belong to no tenant); undefined when unknown. */
  subjectTenant(subject: SubjectRef): string | null | undefined {
    if (subject.type === "user" || subject.type === "staff") return null;
    const st = this.#st;
    const c = st.c;
    const kind = subjectKind(subject.type);
    if (kind !== SK_ACCOUNT && kind !== SK_PRINCIPAL) return undefined;
    const s = subjectInterner(st, kind).find(subject.id);
    if (s < 0) return undefined;
    if (kind === SK_PRINCIPAL && (c.prFlags.get(s) & EXISTS) === 0) return undefined;
    const account = kind === SK_ACCOUNT ? s : c.prAccount.get(s);
    if ((c.acFlags.get(account) & EXISTS) === 0) return undefined;
    const org = c.acOrg.get(account);
    if ((orgFlags(c, org) & EXISTS) === 0) return null;
    const t = orgTenant(c, org);
    return t >= 0 ? st.shared.tenants.uuid(t) : null;
  }

  ratePolicy(name: string): RatePolicy | undefined {
    return this.#st.policies.ratePolicy(name);
  }

  ratePoliciesFor(subject: RateSubject, organizationId?: string): AppliedPolicy[] {
    return this.#st.policies.ratePoliciesFor(subject, organizationId);
  }

  /** Bytes held per column and per interner (pages only; shared pages count in every snapshot that holds them). */
  memory(): Record<string, number> {
    const st = this.#st;
    const out: Record<string, number> = {};
    for (const [k, col] of Object.entries(st.c)) out[k] = pagedBytes(col);
    out.userSlots = pagedBytes(st.us.t);
    out.orgSlots = pagedBytes(st.os.t);
    for (const [k, v] of Object.entries(st.shared)) if (v instanceof UuidInterner || v instanceof InlineUuidInterner) out[`interner.${k}`] = v.bytes;
    out.arena = st.shared.arena.words.byteLength;
    return out;
  }

  stats(): EngineStats {
    const n = this.#st.n;
    return { roles: n.roles, permissions: n.perms, assignments: n.assignments, memberships: n.memberships, subjects: n.subjects };
  }

  /**
   * The snapshot after the rows of one or more committed revisions, in log
   * order. This snapshot is unchanged, whether apply returns or throws
   * (NeedsReload on TRUNCATE, or anything else).
   */
  apply(changes: Iterable<Change>, revision: bigint): Snapshot {
    const w = new Writer(forkState(this.#st));
    for (const c of changes) w.change(c);
    w.roles.close();
    sealState(w.st);
    return new Snapshot(w.st, revision > this.revision ? revision : this.revision);
  }
}

/** Builds the first snapshot from full tables, streamed table by table (rows as the normalizers in rows.ts accept them). */
/** A count above this is not trusted (a planner estimate can be stale): past it, the tables grow as they fill. */
const MAX_RESERVE = 1 << 24;

/** The interner each table's ids go to, for SnapshotBuilder.reserve. */
const INTERNER_OF: Partial<Record<FollowedTable, keyof State["shared"]>> = {
  tenants: "tenants",
  organizations: "orgs",
  users: "users",
  staff: "staff",
  accounts: "accounts",
  principals: "principals",
  avatars: "avatars",
  memberships: "memberships",
  roles: "roles",
  permissions: "perms",
  role_assignments: "assignments",
};

/** Tables whose rows are ids only (and whose id columns may not be NULL but the last of user_organizations). */
export type IdTable = "role_permissions" | "role_inheritance" | "user_organizations";
/** The id columns of each IdTable that may be NULL, as bits (column i = bit i). */
export const ID_TABLE_NULLABLE: Record<IdTable, number> = { role_permissions: 0, role_inheritance: 0, user_organizations: 4 };

/** The interner each column of an id-only table's ids goes to. */
function idInterners(sh: State["shared"], table: IdTable): readonly UuidIds[] {
  if (table === "role_permissions") return [sh.roles, sh.perms];
  if (table === "role_inheritance") return [sh.roles, sh.roles];
  return [sh.users, sh.orgs, sh.roles];
}

/** One row of an id-only table, copied out of a batch. */
const idRow = new Uint32Array(12);
let firstReads = new Int32Array(0);

/** Reads every non-NULL id's probe slot in a batch of id rows (and then, for the paged interners, the id's words). */
function touchIdRows(cols: readonly UuidIds[], words: Uint32Array, nulls: Uint8Array, n: number): void {
  const k = cols.length;
  if (firstReads.length < n * k) firstReads = new Int32Array(n * k);
  const first = firstReads;
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < k; i++) {
      const o = 4 * (k * r + i);
      first[k * r + i] =
        ((nulls[r] as number) & (1 << i)) !== 0
          ? 0
          : (cols[i] as UuidIds).touch(words[o] as number, words[o + 1] as number, words[o + 2] as number, words[o + 3] as number);
    }
  }
  let acc = 0;
  for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) acc ^= (cols[i] as UuidIds).touchSlot(first[k * r + i] as number);
  touched.sink ^= acc;
}

export class SnapshotBuilder {
  #w: Writer | undefined = new Writer(createState(), true);

  /**
   * Sizes the id tables for about `counts` rows per table before loading, so
   * they are not rehashed as they grow. A hint: a wrong count costs a rehash
   * or some memory, never a wrong answer.
   */
  reserve(counts: Partial<Record<FollowedTable, number>>): void {
    const shared = this.#writer().st.shared;
    for (const [table, n] of Object.entries(counts)) {
      const k = INTERNER_OF[table as FollowedTable];
      if (k && typeof n === "number" && n > 0) (shared[k] as { reserve(n: number): void }).reserve(Math.min(n, MAX_RESERVE));
    }
  }

  load(table: FollowedTable, rows: Iterable<Raw>): void {
    const w = this.#writer();
    for (const r of rows) w.upsert(table, r);
  }

  /**
   * Rows of a table of ids only, read as words (a binary load), as load(table, ...) would take them:
   * with k columns, the UUID of row r's column i at words[4 * (k * r + i)]; bit i of nulls[r] set when
   * that column is NULL. Every id's slot is read before any row is loaded, so their cache misses overlap.
   */
  loadIds(table: IdTable, words: Uint32Array, nulls: Uint8Array, n: number): void {
    const w = this.#writer();
    const cols = idInterners(w.st.shared, table);
    touchIdRows(cols, words, nulls, n);
    if (table === "user_organizations") return dir.upsertUserOrganizationBatch(w.st, words, nulls, n);
    const row = idRow;
    for (let r = 0, o = 0; r < n; r++, o += 4 * cols.length) {
      for (let k = 0; k < 4 * cols.length; k++) row[k] = words[o + k] as number;
      if (table === "role_permissions") w.roles.upsertRolePermissionWords(row);
      else w.roles.upsertInheritanceWords(row);
    }
  }

  /** A permissions row read as words (a binary load): its id at words[0], its organization at words[4] when hasOrg. */
  loadPermission(words: Uint32Array, hasOrg: boolean, key: string): void {
    this.#writer().roles.upsertPermissionWords(words, hasOrg, key);
  }

  /** A roles row read as words (a binary load): its id at words[0], its organization at words[4] when hasOrg. */
  loadRole(words: Uint32Array, hasOrg: boolean, key: string, name: string): void {
    this.#writer().roles.upsertRoleWords(words, hasOrg, key, name);
  }

  /** Users read as words (a binary load): row i's id at words[4 * i], dir.UW_LOCKED / dir.UW_ENABLED in flags[i]. */
  loadUsers(words: Uint32Array, flags: Uint8Array, n: number): void {
    dir.upsertUserWords(this.#writer().st, words, flags, n);
  }

  /**
   * A batch of role_assignments rows read as words (a binary load), as load("role_assignments", ...)
   * would take them; each assignment id at most once (the rows of the whole table, read once).
   */
  loadAssignments(batch: grants.AssignmentBatch): void {
    grants.loadAssignmentBatch(this.#writer().st, batch);
  }

  /** The snapshot of everything loaded; the builder cannot be used afterwards. */
  build(revision: bigint): Snapshot {
    const w = this.#writer();
    this.#w = undefined;
    // The assignment ids a binary load appended unindexed, placed at once (see UuidInterner.appendUnindexed).
    w.st.shared.assignments.indexPending();
    w.roles.finishBuild();
    w.roles.closeAll();
    w.st.shared.arena.trim();
    grants.compactGrants(w.st);
    w.st.us = buildSlots(w.st.shared.users, w.st.c.uHot, 2, 2);
    w.st.os = buildSlots(w.st.shared.orgs, w.st.c.oHot, 4, 3);
    sealState(w.st);
    return new Snapshot(w.st, revision);
  }

  #writer(): Writer {
    if (!this.#w) throw new Error("engine: this builder already built its snapshot");
    return this.#w;
  }
}

/** Builds a snapshot from full tables at once (tests, benchmarks). */
export function buildSnapshot(
  revision: bigint,
  tables: Partial<Record<FollowedTable, Iterable<Raw>>>,
  counts: Partial<Record<FollowedTable, number>> = {},
): Snapshot {
  const b = new SnapshotBuilder();
  b.reserve(counts);
  for (const t of FOLLOWED_TABLES) {
    const rows = tables[t];
    if (rows) b.load(t, rows);
  }
  return b.build(revision);
}
