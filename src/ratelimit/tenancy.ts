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

import type { AppliedPolicy, RateSubject } from "../engine/rate-limit-policies.js";
import type { ResourceRef } from "../engine/types.js";
import { AuthzError } from "../errors.js";

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
        // Only with an organization of this tenant as the context (confineRateSubject).
        if (reach?.subject.type !== "user" || reach.organizationId === undefined)
          throw denied("a user's counters need organization_id, an organization of this tenant");
        break;
    }
  }
}
