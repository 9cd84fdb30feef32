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
