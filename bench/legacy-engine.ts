// The shipped engine before v2 (src/engine/snapshot.ts), kept only so that
// bench/engine.ts can compare the two in one run. Not used by the service.

// The decision engine: pure, no I/O, no clock. It holds the followed tables
// in memory, keeps each role's closure (every role it inherits, and its
// permission set as bitsets) precomputed, and indexes grants per subject, so
// a Check is a few map lookups and bit tests. Changes from the change log are
// applied incrementally: only the roles a change touches (and the roles that
// inherit from them) are closed again.

import { EMPTY_BITS, eachBit, hasBit, or, withBit } from "./legacy-bits.js";
import { type AppliedPolicy, PolicyIndex, type RatePolicy, type RatePolicyLookup, type RateSubject } from "../src/engine/rate-limit-policies.js";
import {
  type AccountRow,
  type AssignmentRow,
  type AvatarRow,
  type Change,
  FOLLOWED_TABLES,
  type FollowedTable,
  type MembershipRow,
  NORMALIZE,
  type OrganizationRow,
  type PrincipalRow,
  type UserRow,
} from "../src/engine/rows.js";
import {
  AVATAR_MEMBER_ROLE_KEY,
  AVATAR_OWNER_ROLE_KEY,
  type Decision,
  type Listing,
  type Reason,
  type ResourceRef,
  type ScopeEntry,
  type Step,
  type SubjectRef,
} from "../src/engine/types.js";

interface Perm {
  id: string;
  orgId: string | null;
  key: string;
  /** Index in its organization's (or the global) numbering; never reused. */
  bit: number;
}

interface Org {
  row: OrganizationRow;
  permsByKey: Map<string, Perm>;
  permsByBit: Map<number, Perm>;
  nextBit: number;
}

interface Role {
  id: string;
  orgId: string | null;
  key: string;
  name: string;
  /** Permission ids granted to this role directly. */
  direct: Set<string>;
  /** Roles this role inherits from (shared with the edge index). */
  parents: Set<string>;
  /** Roles that inherit from this role (shared with the edge index). */
  children: Set<string>;
  /** Precomputed: this role and every role it inherits, transitively. */
  closure: Role[];
  /** Precomputed: permissions of the closure, in the role's organization numbering. */
  orgBits: Uint32Array;
  /** Precomputed: global permissions of the closure. */
  globalBits: Uint32Array;
  dirty: boolean;
}

interface Grant {
  /** The assignment or membership id. */
  id: string;
  kind: "ASSIGNMENT" | "MEMBERSHIP";
  roleId: string;
  scopeType: string;
  scopeId: string | null;
  validUntil: number | null;
}

/** A resource resolved to its place in the hierarchy. */
interface Place {
  tenantId: string | null;
  orgId: string | null;
  avatarId: string | null;
  active: boolean;
}

/** Thrown by apply() when a change cannot be applied incrementally (TRUNCATE): reload from a snapshot. */
export class NeedsReload extends Error {}

const subjectKey = (type: string, id: string) => `${type}:${id}`;

function edgeSet(index: Map<string, Set<string>>, id: string): Set<string> {
  let set = index.get(id);
  if (!set) index.set(id, (set = new Set()));
  return set;
}

export interface EngineStats {
  roles: number;
  permissions: number;
  assignments: number;
  memberships: number;
  subjects: number;
}

export class Engine implements RatePolicyLookup {
  #revision: bigint;
  readonly #tenants = new Set<string>();
  readonly #orgs = new Map<string, Org>();
  readonly #globalPerms = new Map<string, Perm>();
  readonly #globalPermsByBit = new Map<number, Perm>();
  #globalNextBit = 0;
  readonly #permsById = new Map<string, Perm>();
  readonly #roles = new Map<string, Role>();
  readonly #users = new Map<string, UserRow>();
  readonly #staff = new Set<string>();
  readonly #accounts = new Map<string, AccountRow>();
  readonly #principals = new Map<string, PrincipalRow>();
  readonly #avatars = new Map<string, AvatarRow>();
  readonly #memberships = new Map<string, MembershipRow>();
  readonly #membershipsByPrincipal = new Map<string, Map<string, MembershipRow>>();
  readonly #assignments = new Map<string, AssignmentRow>();
  /** "type:id" → active assignments of that subject. */
  readonly #grants = new Map<string, Map<string, AssignmentRow>>();
  /** user id → organization id → primary role id. */
  readonly #primaryRoles = new Map<string, Map<string, string | null>>();
  readonly #dirty = new Set<Role>();
  /** Inheritance edges by role id, kept apart from the roles so edge and role rows may arrive in any order. */
  readonly #parentsOf = new Map<string, Set<string>>();
  readonly #childrenOf = new Map<string, Set<string>>();
  /** Global roles by key (the built-in avatar roles are looked up here). */
  readonly #globalRolesByKey = new Map<string, Role>();
  /** Rate-limit policies and assignments (followed like everything else, used by ConsumeRateLimit). */
  readonly #ratePolicies = new PolicyIndex();

  constructor(revision = 0n) {
    this.#revision = revision;
  }

  get revision(): bigint {
    return this.#revision;
  }

  stats(): EngineStats {
    return {
      roles: this.#roles.size,
      permissions: this.#permsById.size,
      assignments: this.#assignments.size,
      memberships: this.#memberships.size,
      subjects: this.#grants.size,
    };
  }

  // ---------------------------------------------------------------------------
  // Building and applying changes

  /** Loads rows of one table (a snapshot); call close() when every table is in. */
  load(table: FollowedTable, rows: Iterable<Record<string, unknown>>): void {
    for (const r of rows) this.#upsert(table, r);
  }

  /** Applies the rows of one or more committed revisions, in log order, and re-closes what they touched. */
  apply(changes: Iterable<Change>, revision: bigint): void {
    for (const c of changes) {
      if (!(FOLLOWED_TABLES as readonly string[]).includes(c.table)) continue;
      const table = c.table as FollowedTable;
      if (c.op === "TRUNCATE") throw new NeedsReload(`${c.table} was truncated`);
      // Organizations, roles and permissions are updated in place: their
      // permission numbering, edges and grants must survive a rename.
      const inPlace = c.op === "UPDATE" && (table === "organizations" || table === "roles" || table === "permissions");
      if (c.oldRow && (c.op === "DELETE" || (c.op === "UPDATE" && !inPlace))) this.#remove(table, c.oldRow);
      if (c.newRow && (c.op === "INSERT" || c.op === "UPDATE")) this.#upsert(table, c.newRow);
    }
    this.close();
    if (revision > this.#revision) this.#revision = revision;
  }

  /** Recomputes the closure of every role marked dirty. */
  close(): void {
    for (const role of this.#dirty) this.#closeRole(role, new Set());
    this.#dirty.clear();
  }

  setRevision(revision: bigint): void {
    this.#revision = revision;
  }

  #markDirty(role: Role): void {
    if (role.dirty) return;
    role.dirty = true;
    this.#dirty.add(role);
    for (const childId of role.children) {
      const child = this.#roles.get(childId);
      if (child) this.#markDirty(child);
    }
  }

  #closeRole(role: Role, visiting: Set<Role>): void {
    if (!role.dirty) return;
    if (visiting.has(role)) return; // the database forbids cycles; never loop if one slipped in
    visiting.add(role);
    const closure: Role[] = [role];
    const seen = new Set<Role>([role]);
    let orgBits: Uint32Array = new Uint32Array(0);
    let globalBits: Uint32Array = new Uint32Array(0);
    for (const permId of role.direct) {
      const p = this.#permsById.get(permId);
      if (!p) continue;
      if (p.orgId === null) globalBits = withBit(globalBits, p.bit);
      else if (p.orgId === role.orgId) orgBits = withBit(orgBits, p.bit);
    }
    for (const parentId of role.parents) {
      const parent = this.#roles.get(parentId);
      if (!parent) continue;
      this.#closeRole(parent, visiting);
      for (const r of parent.closure) {
        if (!seen.has(r)) {
          seen.add(r);
          closure.push(r);
        }
      }
      globalBits = or(globalBits, parent.globalBits);
      if (parent.orgId !== null && parent.orgId === role.orgId) orgBits = or(orgBits, parent.orgBits);
    }
    role.closure = closure;
    role.orgBits = orgBits.length ? orgBits : EMPTY_BITS;
    role.globalBits = globalBits.length ? globalBits : EMPTY_BITS;
    role.dirty = false;
    visiting.delete(role);
  }

  #role(id: string): Role | undefined {
    return this.#roles.get(id);
  }

  #upsert(table: FollowedTable, raw: Record<string, unknown>): void {
    switch (table) {
      case "tenants":
        this.#tenants.add(NORMALIZE.tenants(raw).id);
        return;
      case "organizations": {
        const row = NORMALIZE.organizations(raw);
        const org = this.#orgs.get(row.id);
        if (org) org.row = row;
        else this.#orgs.set(row.id, { row, permsByKey: new Map(), permsByBit: new Map(), nextBit: 0 });
        return;
      }
      case "users": {
        const row = NORMALIZE.users(raw);
        this.#users.set(row.id, row);
        return;
      }
      case "staff":
        this.#staff.add(NORMALIZE.staff(raw).id);
        return;
      case "accounts": {
        const row = NORMALIZE.accounts(raw);
        this.#accounts.set(row.id, row);
        return;
      }
      case "principals": {
        const row = NORMALIZE.principals(raw);
        this.#principals.set(row.id, row);
        return;
      }
      case "avatars": {
        const row = NORMALIZE.avatars(raw);
        this.#avatars.set(row.id, row);
        return;
      }
      case "memberships": {
        const row = NORMALIZE.memberships(raw);
        this.#memberships.set(row.id, row);
        let m = this.#membershipsByPrincipal.get(row.principalId);
        if (!m) this.#membershipsByPrincipal.set(row.principalId, (m = new Map()));
        m.set(row.id, row);
        return;
      }
      case "roles": {
        const row = NORMALIZE.roles(raw);
        const existing = this.#roles.get(row.id);
        if (existing) {
          if (existing.orgId === null && this.#globalRolesByKey.get(existing.key) === existing) this.#globalRolesByKey.delete(existing.key);
          existing.key = row.key;
          existing.name = row.name;
          if (existing.orgId === null) this.#globalRolesByKey.set(existing.key, existing);
          return;
        }
        const role: Role = {
          id: row.id,
          orgId: row.organizationId,
          key: row.key,
          name: row.name,
          direct: new Set(),
          parents: edgeSet(this.#parentsOf, row.id),
          children: edgeSet(this.#childrenOf, row.id),
          closure: [],
          orgBits: EMPTY_BITS,
          globalBits: EMPTY_BITS,
          dirty: false,
        };
        this.#roles.set(row.id, role);
        if (role.orgId === null) this.#globalRolesByKey.set(role.key, role);
        this.#markDirty(role);
        return;
      }
      case "permissions": {
        const row = NORMALIZE.permissions(raw);
        const existing = this.#permsById.get(row.id);
        const byKey = row.organizationId === null ? this.#globalPerms : this.#orgs.get(row.organizationId)?.permsByKey;
        if (!byKey) return; // organization unknown: the log will bring it, or it is gone
        if (existing) {
          if (existing.key !== row.key) {
            if (byKey.get(existing.key) === existing) byKey.delete(existing.key);
            existing.key = row.key;
            byKey.set(row.key, existing);
          }
          return;
        }
        let bit: number;
        if (row.organizationId === null) bit = this.#globalNextBit++;
        else {
          const org = this.#orgs.get(row.organizationId) as Org;
          bit = org.nextBit++;
        }
        const perm: Perm = { id: row.id, orgId: row.organizationId, key: row.key, bit };
        this.#permsById.set(row.id, perm);
        byKey.set(row.key, perm);
        (row.organizationId === null ? this.#globalPermsByBit : (this.#orgs.get(row.organizationId) as Org).permsByBit).set(bit, perm);
        return;
      }
      case "role_permissions": {
        const row = NORMALIZE.role_permissions(raw);
        const role = this.#role(row.roleId);
        if (!role) return;
        role.direct.add(row.permissionId);
        this.#markDirty(role);
        return;
      }
      case "role_inheritance": {
        const row = NORMALIZE.role_inheritance(raw);
        edgeSet(this.#parentsOf, row.roleId).add(row.parentRoleId);
        edgeSet(this.#childrenOf, row.parentRoleId).add(row.roleId);
        const child = this.#role(row.roleId);
        if (child) this.#markDirty(child);
        return;
      }
      case "role_assignments": {
        const row = NORMALIZE.role_assignments(raw);
        this.#assignments.set(row.id, row);
        if (!row.active) return;
        const key = subjectKey(row.subjectType, row.subjectId);
        let g = this.#grants.get(key);
        if (!g) this.#grants.set(key, (g = new Map()));
        g.set(row.id, row);
        return;
      }
      case "user_organizations": {
        const row = NORMALIZE.user_organizations(raw);
        let byOrg = this.#primaryRoles.get(row.userId);
        if (!byOrg) this.#primaryRoles.set(row.userId, (byOrg = new Map()));
        byOrg.set(row.organizationId, row.primaryRoleId);
        return;
      }
      case "rate_limit_policies":
        this.#ratePolicies.upsertPolicy(NORMALIZE.rate_limit_policies(raw));
        return;
      case "rate_limit_assignments":
        this.#ratePolicies.upsertAssignment(NORMALIZE.rate_limit_assignments(raw));
        return;
    }
  }

  #remove(table: FollowedTable, raw: Record<string, unknown>): void {
    switch (table) {
      case "tenants":
        this.#tenants.delete(String(raw.id));
        return;
      case "organizations":
        // Only on DELETE (updates are applied in place): rows inside it arrive as their own deletes.
        this.#orgs.delete(String(raw.id));
        return;
      case "users":
        this.#users.delete(String(raw.id));
        return;
      case "staff":
        this.#staff.delete(String(raw.id));
        return;
      case "accounts":
        this.#accounts.delete(String(raw.id));
        return;
      case "principals":
        this.#principals.delete(String(raw.id));
        return;
      case "avatars":
        this.#avatars.delete(String(raw.id));
        return;
      case "memberships": {
        const row = NORMALIZE.memberships(raw);
        this.#memberships.delete(row.id);
        const m = this.#membershipsByPrincipal.get(row.principalId);
        m?.delete(row.id);
        if (m && m.size === 0) this.#membershipsByPrincipal.delete(row.principalId);
        return;
      }
      case "roles": {
        const role = this.#roles.get(String(raw.id));
        if (!role) return;
        this.#roles.delete(role.id);
        this.#dirty.delete(role);
        if (role.orgId === null && this.#globalRolesByKey.get(role.key) === role) this.#globalRolesByKey.delete(role.key);
        for (const childId of role.children) {
          const child = this.#roles.get(childId);
          if (child) this.#markDirty(child);
        }
        return;
      }
      case "permissions": {
        // Only on DELETE. The grants of it arrive as their own role_permissions deletes.
        const perm = this.#permsById.get(String(raw.id));
        if (!perm) return;
        this.#permsById.delete(perm.id);
        const byKey = perm.orgId === null ? this.#globalPerms : this.#orgs.get(perm.orgId)?.permsByKey;
        if (byKey?.get(perm.key) === perm) byKey.delete(perm.key);
        (perm.orgId === null ? this.#globalPermsByBit : this.#orgs.get(perm.orgId)?.permsByBit)?.delete(perm.bit);
        return;
      }
      case "role_permissions": {
        const row = NORMALIZE.role_permissions(raw);
        const role = this.#role(row.roleId);
        if (!role) return;
        role.direct.delete(row.permissionId);
        this.#markDirty(role);
        return;
      }
      case "role_inheritance": {
        const row = NORMALIZE.role_inheritance(raw);
        this.#parentsOf.get(row.roleId)?.delete(row.parentRoleId);
        this.#childrenOf.get(row.parentRoleId)?.delete(row.roleId);
        const child = this.#role(row.roleId);
        if (child) this.#markDirty(child);
        return;
      }
      case "role_assignments": {
        const row = NORMALIZE.role_assignments(raw);
        this.#assignments.delete(row.id);
        const key = subjectKey(row.subjectType, row.subjectId);
        const g = this.#grants.get(key);
        g?.delete(row.id);
        if (g && g.size === 0) this.#grants.delete(key);
        return;
      }
      case "user_organizations": {
        const row = NORMALIZE.user_organizations(raw);
        const byOrg = this.#primaryRoles.get(row.userId);
        byOrg?.delete(row.organizationId);
        if (byOrg && byOrg.size === 0) this.#primaryRoles.delete(row.userId);
        return;
      }
      case "rate_limit_policies":
        this.#ratePolicies.removePolicy(Number(raw.id));
        return;
      case "rate_limit_assignments":
        this.#ratePolicies.removeAssignment(String(raw.id));
        return;
    }
  }

  // ---------------------------------------------------------------------------
  // Rate-limit policies (counting is in src/ratelimit/)

  /** The rate-limit policy with this name. */
  ratePolicy(name: string): RatePolicy | undefined {
    return this.#ratePolicies.ratePolicy(name);
  }

  /** The policies assigned to the subject and, for a user in an organization context, to the organization. */
  ratePoliciesFor(subject: RateSubject, organizationId?: string): AppliedPolicy[] {
    return this.#ratePolicies.ratePoliciesFor(subject, organizationId);
  }

  // ---------------------------------------------------------------------------
  // Tenancy (for callers bound to one tenant)

  /** The tenant a resource belongs to: its id, null when it has none, undefined when unknown. */
  resourceTenant(resource: ResourceRef): string | null | undefined {
    const place = this.#place(resource);
    return place ? place.tenantId : undefined;
  }

  /** The tenant of an account or principal (null for users and staff, which belong to no tenant); undefined when unknown. */
  subjectTenant(subject: SubjectRef): string | null | undefined {
    if (subject.type === "user" || subject.type === "staff") return null;
    const accountId = subject.type === "account" ? subject.id : this.#principals.get(subject.id)?.accountId;
    const account = accountId === undefined ? undefined : this.#accounts.get(accountId);
    if (!account) return undefined;
    return this.#orgs.get(account.organizationId)?.row.tenantId ?? null;
  }

  // ---------------------------------------------------------------------------
  // Decisions

  #place(resource: ResourceRef): Place | undefined {
    switch (resource.type) {
      case "tenant":
        return this.#tenants.has(resource.id) ? { tenantId: resource.id, orgId: null, avatarId: null, active: true } : undefined;
      case "organization": {
        const org = this.#orgs.get(resource.id);
        return org ? { tenantId: org.row.tenantId, orgId: org.row.id, avatarId: null, active: true } : undefined;
      }
      case "avatar": {
        const a = this.#avatars.get(resource.id);
        if (!a) return undefined;
        const org = this.#orgs.get(a.organizationId);
        return { tenantId: org?.row.tenantId ?? null, orgId: a.organizationId, avatarId: a.id, active: a.active };
      }
    }
  }

  /** Why the subject cannot act, or undefined when it can; "SUBJECT_NOT_FOUND" when unknown. */
  #cannotAct(subject: SubjectRef, now: number): Reason | undefined {
    switch (subject.type) {
      case "user": {
        const u = this.#users.get(subject.id);
        if (!u) return "SUBJECT_NOT_FOUND";
        return userReason(u);
      }
      case "account": {
        const a = this.#accounts.get(subject.id);
        if (!a) return "SUBJECT_NOT_FOUND";
        return a.active ? undefined : "ACCOUNT_INACTIVE";
      }
      case "staff":
        return this.#staff.has(subject.id) ? undefined : "SUBJECT_NOT_FOUND";
      case "principal": {
        const p = this.#principals.get(subject.id);
        if (!p) return "SUBJECT_NOT_FOUND";
        if (!p.active) return "PRINCIPAL_INACTIVE";
        if (p.acceptedAt === null || p.acceptedAt > now) return "NOT_ACCEPTED";
        if (p.validUntil !== null && p.validUntil <= now) return "PRINCIPAL_EXPIRED";
        const account = this.#accounts.get(p.accountId);
        if (!account?.active) return "ACCOUNT_INACTIVE";
        if (p.subjectType === "user") {
          const u = this.#users.get(p.subjectId);
          if (!u) return "SUBJECT_NOT_FOUND";
          return userReason(u);
        }
        return this.#staff.has(p.subjectId) ? undefined : "SUBJECT_NOT_FOUND";
      }
    }
  }

  #exists(subject: SubjectRef): boolean {
    switch (subject.type) {
      case "user":
        return this.#users.has(subject.id);
      case "account":
        return this.#accounts.has(subject.id);
      case "staff":
        return this.#staff.has(subject.id);
      case "principal":
        return this.#principals.has(subject.id);
    }
  }

  /** Every grant the subject holds that is in force at `now` (scope not yet considered). */
  *#grantsOf(subject: SubjectRef, now: number): Generator<Grant> {
    const fromAssignments = function* (g: Map<string, AssignmentRow> | undefined): Generator<Grant> {
      if (!g) return;
      for (const a of g.values()) {
        if (a.validUntil !== null && a.validUntil <= now) continue;
        yield { id: a.id, kind: "ASSIGNMENT", roleId: a.roleId, scopeType: a.scopeType, scopeId: a.scopeId, validUntil: a.validUntil };
      }
    };
    yield* fromAssignments(this.#grants.get(subjectKey(subject.type, subject.id)));
    if (subject.type !== "principal") return;
    const p = this.#principals.get(subject.id);
    if (!p) return;
    yield* fromAssignments(this.#grants.get(subjectKey("account", p.accountId)));
    const ms = this.#membershipsByPrincipal.get(p.id);
    if (!ms) return;
    const member = this.#builtin(AVATAR_MEMBER_ROLE_KEY);
    const owner = this.#builtin(AVATAR_OWNER_ROLE_KEY);
    for (const m of ms.values()) {
      if (!m.active || m.acceptedAt === null || m.acceptedAt > now) continue;
      if (m.validUntil !== null && m.validUntil <= now) continue;
      if (!this.#avatars.get(m.avatarId)?.active) continue;
      if (member) yield { id: m.id, kind: "MEMBERSHIP", roleId: member.id, scopeType: "avatar", scopeId: m.avatarId, validUntil: m.validUntil };
      if (owner && m.owner) yield { id: m.id, kind: "MEMBERSHIP", roleId: owner.id, scopeType: "avatar", scopeId: m.avatarId, validUntil: m.validUntil };
    }
  }

  #builtin(key: string): Role | undefined {
    return this.#globalRolesByKey.get(key);
  }

  /**
   * Check(subject, permission, resource) at time `now` (epoch ms). The rules
   * and their order are the definition in docs/data-model.md.
   */
  check(subject: SubjectRef, permission: string, resource: ResourceRef, now: number, explain = false): Decision {
    if (!this.#exists(subject)) return { allowed: false, reason: "SUBJECT_NOT_FOUND" };
    const place = this.#place(resource);
    if (!place) return { allowed: false, reason: "RESOURCE_NOT_FOUND" };
    const org = place.orgId === null ? undefined : this.#orgs.get(place.orgId);
    // The permission is matched by key in the resource's organization first, then
    // among global ones; a role must hold the matched permission (docs/data-model.md).
    const matched = org?.permsByKey.get(permission) ?? this.#globalPerms.get(permission);
    if (!matched) return { allowed: false, reason: "PERMISSION_NOT_FOUND" };
    const cannot = this.#cannotAct(subject, now);
    if (cannot) return { allowed: false, reason: cannot };
    if (!place.active) return { allowed: false, reason: "RESOURCE_INACTIVE" };
    if (!explain && subject.type !== "principal") {
      // The common case, without allocating: the subject's own assignments.
      const own = this.#grants.get(subjectKey(subject.type, subject.id));
      if (own) {
        for (const a of own.values()) {
          if (a.validUntil !== null && a.validUntil <= now) continue;
          if (!covers(a, place)) continue;
          const role = this.#roles.get(a.roleId);
          if (role && holds(role, place, matched)) return GRANTED;
        }
      }
      return NO_GRANT;
    }
    for (const g of this.#grantsOf(subject, now)) {
      if (!covers(g, place)) continue;
      const role = this.#roles.get(g.roleId);
      if (!role || !holds(role, place, matched)) continue;
      if (!explain) return GRANTED;
      return { allowed: true, reason: "GRANTED", steps: this.#path(g, role, matched) };
    }
    return NO_GRANT;
  }

  /** assignment/membership → role → inherited roles → the role holding the permission → permission. */
  #path(g: Grant, role: Role, perm: Perm): Step[] {
    const scope = scopeRef(g.scopeType, g.scopeId);
    const steps: Step[] = [{ kind: g.kind, id: g.id, ...(scope ? { scope } : {}) }, { kind: "ROLE", id: role.id, key: role.key }];
    // Breadth-first over parents to the nearest role that holds the permission directly.
    const prev = new Map<Role, Role | null>([[role, null]]);
    const queue: Role[] = [role];
    let found: Role | undefined;
    while (queue.length) {
      const r = queue.shift() as Role;
      if (r.direct.has(perm.id)) {
        found = r;
        break;
      }
      for (const pid of r.parents) {
        const p = this.#roles.get(pid);
        if (p && !prev.has(p)) {
          prev.set(p, r);
          queue.push(p);
        }
      }
    }
    const chain: Role[] = [];
    for (let r: Role | null | undefined = found; r && r !== role; r = prev.get(r)) chain.unshift(r);
    for (const r of chain) steps.push({ kind: "INHERITED_ROLE", id: r.id, key: r.key });
    steps.push({ kind: "PERMISSION", id: perm.id, key: perm.key });
    return steps;
  }

  // ---------------------------------------------------------------------------
  // Listing

  /**
   * Everything the subject holds, per scope: each scope it has a grant on
   * (and, for users, each organization it belongs to), or, with `within`,
   * that resource and the scopes inside it. Complete: never truncated.
   */
  list(subject: SubjectRef, within: ResourceRef | undefined, now: number): Listing | undefined {
    if (!this.#exists(subject)) return undefined;
    const cannot = this.#cannotAct(subject, now);
    if (cannot) return { subjectStatus: cannot, entries: [] };
    const grants = [...this.#grantsOf(subject, now)].filter((g) => this.#roles.has(g.roleId));

    // The scopes to report.
    const scopes = new Map<string, { type: string; id: string | null; place: Place }>();
    const addScope = (type: string, id: string | null) => {
      const place = type === "global" ? GLOBAL_PLACE : this.#place({ type: type as ResourceRef["type"], id: id as string });
      if (!place) return;
      scopes.set(`${type}:${id ?? ""}`, { type, id, place });
    };
    const withinPlace = within ? this.#place(within) : undefined;
    if (within && !withinPlace) return { subjectStatus: "GRANTED", entries: [] };
    const inside = (type: string, id: string | null): boolean => {
      if (!within || !withinPlace) return true;
      if (type === "global") return false;
      const p = this.#place({ type: type as ResourceRef["type"], id: id as string });
      if (!p) return false;
      if (within.type === "tenant") return p.tenantId === within.id;
      if (within.type === "organization") return p.orgId === within.id;
      return p.avatarId === within.id;
    };
    if (within) addScope(within.type, within.id);
    for (const g of grants) if (inside(g.scopeType, g.scopeId)) addScope(g.scopeType, g.scopeId);
    if (subject.type === "user") {
      for (const orgId of this.#primaryRoles.get(subject.id)?.keys() ?? []) {
        if (inside("organization", orgId)) addScope("organization", orgId);
      }
    }

    const entries: Array<ScopeEntry & { sortKey: string }> = [];
    for (const s of scopes.values()) {
      const held: Role[] = [];
      for (const g of grants) {
        if (!covers(g, s.place)) continue;
        const role = this.#roles.get(g.roleId) as Role;
        if (role.orgId !== null && role.orgId !== s.place.orgId) continue;
        if (!held.includes(role)) held.push(role);
      }
      const org = s.place.orgId ? this.#orgs.get(s.place.orgId) : undefined;
      const perms = new Set<string>();
      // An inactive avatar denies everything: its entry lists the roles held there, no permissions.
      for (const role of s.place.active ? held : []) {
        for (const bit of eachBit(role.globalBits)) {
          const p = this.#permByBit(null, bit);
          // A global permission whose key the organization defines itself is not the matched one there.
          if (p && !org?.permsByKey.has(p.key)) perms.add(p.key);
        }
        if (org && role.orgId === org.row.id) {
          for (const bit of eachBit(role.orgBits)) {
            const p = this.#permByBit(org, bit);
            if (p) perms.add(p.key);
          }
        }
      }
      // The primary role: a user's place in the organization names it, and the user holds it there. No guessing otherwise.
      const primaryId = subject.type === "user" && s.type === "organization" ? this.#primaryRoles.get(subject.id)?.get(s.id as string) : undefined;
      const primary = primaryId ? held.find((r) => r.id === primaryId) : undefined;
      entries.push({
        sortKey: `${s.place.orgId ?? ""}|${s.type === "avatar" ? 1 : 0}|${s.id ?? ""}|${s.type}`,
        scope: s.type === "global" ? undefined : { type: s.type as ResourceRef["type"], id: s.id as string },
        orgId: org?.row.id,
        orgName: org?.row.name ?? "",
        urlSafeOrgName: org?.row.slug ?? "",
        orgRoleStructure: org?.row.roleStructure ?? "",
        userRole: primary?.key ?? "",
        inheritedUserRolesPlusCurrentRole: primary ? [...new Set(primary.closure.map((r) => r.key))].sort(cmp) : [],
        userPermissions: [...perms].sort(cmp),
        additionalRoles: [...new Set(held.filter((r) => r !== primary).map((r) => r.key))].sort(cmp),
      });
    }
    entries.sort((a, b) => cmp(a.sortKey, b.sortKey));
    return { subjectStatus: "GRANTED", entries: entries.map(({ sortKey: _s, ...e }) => e) };
  }

  #permByBit(org: Org | null | undefined, bit: number): Perm | undefined {
    return (org ? org.permsByBit : this.#globalPermsByBit).get(bit);
  }}

/**
 * The grant rule, used by Check, explain and List: a role (with its closure)
 * holds the matched permission on the place. An organization's permission is
 * held only by that organization's roles; a global one by any role's closure.
 */
function holds(role: Role, place: Place, matched: Perm): boolean {
  if (matched.orgId === null) return hasBit(role.globalBits, matched.bit);
  return role.orgId !== null && role.orgId === place.orgId && matched.orgId === place.orgId && hasBit(role.orgBits, matched.bit);
}

const GRANTED: Decision = Object.freeze({ allowed: true, reason: "GRANTED" });
const NO_GRANT: Decision = Object.freeze({ allowed: false, reason: "NO_GRANT" });
const GLOBAL_PLACE: Place = { tenantId: null, orgId: null, avatarId: null, active: true };

function userReason(u: UserRow): Reason | undefined {
  if (u.locked) return "SUBJECT_LOCKED";
  if (!u.enabled) return "SUBJECT_DISABLED";
  return undefined;
}

function covers(g: { scopeType: string; scopeId: string | null }, place: Place): boolean {
  switch (g.scopeType) {
    case "global":
      return true;
    case "tenant":
      return g.scopeId === place.tenantId;
    case "organization":
      return g.scopeId === place.orgId;
    case "avatar":
      return g.scopeId === place.avatarId;
    default:
      return false;
  }
}

function scopeRef(type: string, id: string | null): ResourceRef | undefined {
  return type === "global" || id === null ? undefined : { type: type as ResourceRef["type"], id };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Builds an engine from a full snapshot of the followed tables. */
export function buildEngine(revision: bigint, tables: Partial<Record<FollowedTable, Iterable<Record<string, unknown>>>>): Engine {
  const e = new Engine(revision);
  for (const t of FOLLOWED_TABLES) {
    const rows = tables[t];
    if (rows) e.load(t, rows);
  }
  e.close();
  return e;
}
