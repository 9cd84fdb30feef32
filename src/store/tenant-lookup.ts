// Where a referenced row lives, asked of the database inside a write's
// transaction, for the tenancy rule (src/tenancy.ts). The tenant of a row is
// the database's own definition (authz_row_tenant, migrations 0006/0007), so
// the pre-check here and the commit-time backstop cannot disagree.

import type { Caller } from "../auth/caller.js";
import { confineRow, type RowTenant } from "../tenancy.js";
import type { SqlQuerier } from "./sql.js";

/** Tables whose rows are referred to by id in writes. */
export type TenantTable =
  | "tenants"
  | "organizations"
  | "accounts"
  | "principals"
  | "avatars"
  | "memberships"
  | "ownership_transfers"
  | "roles"
  | "permissions"
  | "role_assignments"
  | "users"
  | "staff";

/** A tenant of a row whose subject and scope lie in different tenants (migration 0007). */
export const MIXED_TENANT = "ffffffff-ffff-4fff-bfff-ffffffffffff";

/** The tenant of the row `table.id`: its tenant, null (global) or undefined (no such row). */
export async function rowTenant(tx: SqlQuerier, table: TenantTable, id: string): Promise<RowTenant> {
  const rows = await tx.query<{ tenant: string | null }>(
    `select authz_row_tenant($1::text, to_jsonb(t))::text as tenant from ${table} t where t.id = $2::text::uuid`,
    [table, id],
  );
  const r = rows[0];
  return r === undefined ? undefined : r.tenant;
}

/** The tenant of an organization (null: none), or undefined when it does not exist. */
export const organizationTenant = (tx: SqlQuerier, id: string): Promise<RowTenant> => rowTenant(tx, "organizations", id);

/**
 * The confinement of one write: each method checks one reference against the
 * caller's tenant before any mutation runs. For an unbound caller every
 * method returns at once without a query.
 */
export class WriteConfinement {
  constructor(
    private readonly tx: SqlQuerier,
    private readonly caller: Pick<Caller, "tenantId">,
  ) {}

  get bound(): boolean {
    return Boolean(this.caller.tenantId);
  }

  /** The row must be missing or in the caller's tenant (global rows denied). */
  async own(table: TenantTable, id: string, what: string): Promise<void> {
    if (!this.bound) return;
    confineRow(this.caller, await rowTenant(this.tx, table, id), what, "denied");
  }

  /** The row must be missing, in the caller's tenant, or global (shared vocabulary it may refer to). */
  async ownOrGlobal(table: TenantTable, id: string, what: string): Promise<void> {
    if (!this.bound) return;
    confineRow(this.caller, await rowTenant(this.tx, table, id), what, "allowed");
  }

  /** An organization the write places a row in: null (global) is denied, a missing one passes. */
  async organization(id: string | null, what: string): Promise<void> {
    if (!this.bound) return;
    confineRow(this.caller, id === null ? null : await organizationTenant(this.tx, id), what, "denied");
  }

  /** An API key, placed by its tenant_id: a missing key passes (NOT_FOUND later), an unbound key is denied. */
  async apiKey(id: string, what: string): Promise<void> {
    if (!this.bound) return;
    const [row] = await this.tx.query<{ tenant_id: string | null }>("select tenant_id::text as tenant_id from api_keys where id = $1", [id]);
    confineRow(this.caller, row === undefined ? undefined : row.tenant_id, what, "denied");
  }

  /**
   * A rate-limit policy the write assigns or unassigns: one of scope global is denied (its one counter is
   * shared by every tenant, so a tenant joining it would spend what others are limited by); a policy of
   * another scope, or a missing one (NOT_FOUND later), passes.
   */
  async policy(name: string, what: string): Promise<void> {
    if (!this.bound) return;
    const [row] = await this.tx.query<{ scope: string }>("select scope from rate_limit_policies where name = $1::text", [name]);
    if (row?.scope === "global") this.global(what);
  }

  /** Denies outright: the write changes rows of no tenant (global roles, policies). */
  global(what: string): void {
    confineRow(this.caller, null, what, "denied");
  }
}
