// The tenancy rule, in one place. A credential may be bound to a tenant
// (Caller.tenantId). Such a caller reads, writes and names only rows of its
// own tenant:
//   - every row a read names (subject, resource) and every row a write
//     changes or refers to (role, permission, scope, subject, avatar,
//     membership, transfer, assignment, policy holder) must belong to it;
//   - rows of no tenant are shared vocabulary only where a rule says so:
//     global roles and permissions may be *referred to* (granted to the
//     tenant's roles, inherited by them, assigned on the tenant's scopes) but
//     never changed; users and staff (identities without a tenant) may be the
//     subject of an assignment on the tenant's scopes;
//   - a row that does not exist passes here, and is reported NOT_FOUND by
//     the code that needs it, which tells nothing about other tenants;
//   - a refusal is PERMISSION_DENIED (reason OTHER_TENANT) naming only what
//     the caller itself supplied, never a field of the other tenant's row.
// Reads place rows with the engine (TenantLookup); writes with the database
// (src/store/tenant-lookup.ts), inside the write's transaction and before
// the first mutation runs.

import type { Caller } from "./auth/caller.js";
import type { AppliedPolicy, RateSubject } from "./engine/rate-limit-policies.js";
import type { ResourceRef, SubjectRef } from "./engine/types.js";
import { AuthzError } from "./errors.js";

/** The tenant of a row: a tenant id, null (global: no tenant), or undefined (no such row). */
export type RowTenant = string | null | undefined;

/** What a read needs to place things in a tenant (the engine provides it). */
export interface TenantLookup {
  resourceTenant(resource: ResourceRef): RowTenant;
  subjectTenant(subject: SubjectRef): RowTenant;
}

export function otherTenant(tenantId: string, what: string): AuthzError {
  return new AuthzError("PERMISSION_DENIED", `this credential is bound to tenant ${tenantId} and cannot reach ${what}`, {
    reason: "OTHER_TENANT",
  });
}

/** PERMISSION_DENIED when a tenant-bound caller reaches data of another tenant (or global data). */
export function confine(caller: Pick<Caller, "tenantId"> | undefined, tenantId: string | null, what: string): void {
  if (!caller?.tenantId) return;
  if (tenantId === caller.tenantId) return;
  throw otherTenant(caller.tenantId, what);
}

/**
 * The rule for one referenced row: passes when the caller is unbound, the
 * row does not exist, the row is in the caller's tenant, or the row is global
 * and `global` allows that.
 */
export function confineRow(caller: Pick<Caller, "tenantId"> | undefined, tenant: RowTenant, what: string, global: "allowed" | "denied"): void {
  if (!caller?.tenantId || tenant === undefined) return;
  if (tenant === null && global === "allowed") return;
  confine(caller, tenant, what);
}

/**
 * PERMISSION_DENIED when a tenant-bound caller names a resource or subject of
 * another tenant (or a resource of no tenant). Subjects without a tenant
 * (users, staff) and unknown records pass.
 */
export function confineRead(
  caller: Pick<Caller, "tenantId"> | undefined,
  lookup: TenantLookup,
  subject: SubjectRef | undefined,
  resource: ResourceRef | undefined,
): void {
  if (!caller?.tenantId) return;
  if (resource) confineRow(caller, lookup.resourceTenant(resource), `${resource.type} ${resource.id}`, "denied");
  if (subject) confineRow(caller, lookup.subjectTenant(subject), `${subject.type} ${subject.id}`, "allowed");
}

/**
 * What a lookup (LookupSubjects, LookupResources, AuthZEN search) shows a
 * tenant-bound caller: subjects of its tenant and subjects of no tenant
 * (users, staff), which it may name in a read; resources of its tenant only.
 * An unbound caller sees everything.
 */
export function visibleSubject(caller: Pick<Caller, "tenantId"> | undefined, lookup: TenantLookup, subject: SubjectRef): boolean {
  if (!caller?.tenantId) return true;
  const t = lookup.subjectTenant(subject);
  return t === null || t === caller.tenantId;
}

/** See visibleSubject: a tenant-bound caller sees only the resources of its tenant. */
export function visibleResource(caller: Pick<Caller, "tenantId"> | undefined, lookup: TenantLookup, resource: ResourceRef): boolean {
  return !caller?.tenantId || lookup.resourceTenant(resource) === caller.tenantId;
}

/**
 * The tenant a Watch stream follows: a tenant-bound caller always follows
 * its own (naming another is PERMISSION_DENIED); an unbound caller follows
 * the one it names, or all (null).
 */
export function watchedTenant(caller: Pick<Caller, "tenantId"> | undefined, requested: string | undefined): string | null {
  if (!caller?.tenantId) return requested ?? null;
  if (requested !== undefined && requested !== caller.tenantId) throw otherTenant(caller.tenantId, `tenant ${requested}`);
  return caller.tenantId;
}

// ---------------------------------------------------------------------------
// Rate-limit counters
// Which rate-limit counters a credential bound to a tenant may spend or read
// (ConsumeRateLimit, GetRateLimitCounters, Envoy ShouldRateLimit).
//
// Policies are global rows; a counter belongs to its owner: a user, an
// organization, a key string, or nobody (a global policy's one counter).
// Only organizations have a tenant in the data model. So a tenant-bound
// caller may touch:
//   - the counters of an organization of its tenant (organization subject);
//   - a user's counters and its organization's, when the call names an
//     organization of its tenant as the context (organization_id);
// and never a key's counters or a global counter, which belong to no
// tenant and are shared with everybody. An organization that does not exist
// is refused like one of another tenant, with the same message: the answer
// tells nothing about other tenants.
//
// Checked before the store is touched, in two steps: the subject (before
// the policies are resolved, so a refused caller learns nothing about the
// policies assigned to a subject), then each counter the call would use.

/** Where an organization belongs: its tenant id, null without one, undefined when unknown (the engine provides it). */
export interface OrganizationTenants {
  resourceTenant(resource: ResourceRef): string | null | undefined;
}

/** What a call asks for, as far as tenancy goes. */
export interface RateLimitReach {
  /** The named policy, or undefined for the subject's assigned policies. */
  readonly policy: string | undefined;
  readonly subject: RateSubject;
  readonly organizationId: string | undefined;
}

const denied = (why: string) =>
  new AuthzError("PERMISSION_DENIED", `this credential is bound to a tenant and may only use the rate limits of organizations in it: ${why}`, {
    reason: "OTHER_TENANT",
  });

function inTenant(tenantId: string, lookup: Partial<OrganizationTenants>, organizationId: string): boolean {
  return lookup.resourceTenant?.({ type: "organization", id: organizationId }) === tenantId;
}

/** PERMISSION_DENIED (OTHER_TENANT) when a tenant-bound caller names a subject whose counters are not its tenant's. */
export function confineRateSubject(tenantId: string | null | undefined, lookup: Partial<OrganizationTenants>, reach: RateLimitReach): void {
  if (!tenantId) return;
  const s = reach.subject;
  switch (s.type) {
    case "key":
      // Keys are never assigned policies: without a named policy a key touches no counter.
      if (reach.policy !== undefined) throw denied("a key's counters belong to no tenant");
      return;
    case "organization":
      if (!inTenant(tenantId, lookup, s.id)) throw denied(`organization ${s.id} is not one of them`);
      return;
    case "user":
      if (reach.organizationId === undefined) throw denied("a user's counters need organization_id, an organization of this tenant");
      if (!inTenant(tenantId, lookup, reach.organizationId)) throw denied(`organization ${reach.organizationId} is not one of them`);
      return;
  }
}

/** PERMISSION_DENIED (OTHER_TENANT) when a counter the call would use is not its tenant's (a global one, above all). */
export function confineRateCounters(
  tenantId: string | null | undefined,
  lookup: Partial<OrganizationTenants>,
  /** What the call named (undefined: nothing but the policy, e.g. an Envoy descriptor naming a global policy). */
  reach: RateLimitReach | undefined,
  applied: readonly AppliedPolicy[],
): void {
  if (!tenantId) return;
  for (const { policy, owner } of applied) {
    switch (owner.type) {
      case "global":
        throw denied(`policy ${policy.name} counts on one global counter, shared by every tenant`);
      case "key":
        throw denied("a key's counters belong to no tenant");
      case "organization":
        if (!inTenant(tenantId, lookup, owner.id)) throw denied(`organization ${owner.id} is not one of them`);
        break;
      case "user":
        // Only with an organization of this tenant as the context (confineRateSubject), and only the user's counter of this tenant.
        if (reach?.subject.type !== "user" || reach.organizationId === undefined || owner.tenantId !== tenantId)
          throw denied("a user's counters need organization_id, an organization of this tenant");
        break;
    }
  }
}
