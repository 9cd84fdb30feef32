import { confine } from "../auth/authenticator.js";
import type { ResourceRef, SubjectRef } from "../engine/types.js";
import { confinedToTenant } from "../store/tenant-confined.js";
import type { SqlClient } from "../store/sql.js";
import type { CallContext } from "./handler-types.js";

/** What a read needs to place things in a tenant (the engine provides it). */
export interface TenantLookup {
  resourceTenant(resource: ResourceRef): string | null | undefined;
  subjectTenant(subject: SubjectRef): string | null | undefined;
}

/** The database as this caller may write it: confined to its tenant when its credential is bound to one. */
export function dbFor(db: () => SqlClient, ctx: CallContext): SqlClient {
  const tenant = ctx.caller?.tenantId;
  return tenant ? confinedToTenant(db(), tenant) : db();
}

/**
 * PERMISSION_DENIED when a tenant-bound caller names a resource or subject of
 * another tenant (or data of no tenant). Unknown records pass: the answer
 * for them is "not found", which tells nothing about other tenants.
 */
export function confineRead(ctx: CallContext, lookup: TenantLookup, subject: SubjectRef | undefined, resource: ResourceRef | undefined): void {
  const caller = ctx.caller;
  if (!caller?.tenantId) return;
  if (resource) {
    const t = lookup.resourceTenant(resource);
    if (t !== undefined) confine(caller, t, `${resource.type} ${resource.id}`);
  }
  if (subject) {
    const t = lookup.subjectTenant(subject);
    if (t !== undefined && t !== null) confine(caller, t, `${subject.type} ${subject.id}`);
  }
}
