// The tenancy rule (src/tenancy.ts) at the RPC edge: the caller comes from the call's context.

import { ANONYMOUS } from "../auth/caller.js";
import type { ResourceRef, SubjectRef } from "../engine/types.js";
import type { WriteCaller } from "../store/write-pipeline.js";
import { confineRead as confineReadFor, type TenantLookup } from "../tenancy.js";
import type { CallContext } from "./handler-types.js";

export type { TenantLookup };

/** The writer of a call: its authenticated caller (idempotency scope, tenant binding). */
export function writeCaller(ctx: CallContext): WriteCaller {
  const c = ctx.caller ?? ANONYMOUS;
  return { id: c.id, tenantId: c.tenantId };
}

/** PERMISSION_DENIED when a tenant-bound caller names a resource or subject of another tenant. */
export function confineRead(ctx: CallContext, lookup: TenantLookup, subject: SubjectRef | undefined, resource: ResourceRef | undefined): void {
  confineReadFor(ctx.caller, lookup, subject, resource);
}
