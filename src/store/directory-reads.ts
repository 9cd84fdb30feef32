// DirectoryService reads, from Postgres: the in-memory engine holds only
// what decisions need, not the names, emails and metadata read here. Every
// read runs in one repeatable-read snapshot taken at exactly one revision
// (no committed write in it left unnumbered), which it returns. Lists page
// by key (id order) with a token bound to the request, and are never cut
// short silently. A tenant-bound caller sees only its tenant's rows (and
// global roles, permissions and policies; users and staff, and a policy's
// assignments to users, only when the user or staff member has a place or a
// principal in its tenant).

import { createHash } from "node:crypto";
import { AuthzError, invalidArgument } from "../errors.js";
import { pageSize } from "../validation.js";
import type { SqlClient, SqlQuerier } from "./sql.js";

const iso = (c: string): string => `to_char(${c} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** One readable kind of record: its rows, its key, its filters and its tenant. */
interface Entity {
  readonly from: string;
  readonly cols: string;
  /** The key rows are ordered and paged by. */
  readonly key: string;
  readonly keyCast: "uuid" | "integer" | "bigint";
  /** Filters a caller may give: a SQL condition with `$` for the value. */
  readonly filters: Readonly<Record<string, string>>;
  /** The SQL condition that a row is visible to a caller bound to tenant `$`; undefined: every row (global vocabulary). */
  readonly tenant?: string;
  /** Its name in messages. */
  readonly what: string;
}

const rowTenant = (table: string, alias: string) => `authz_row_tenant('${table}', to_jsonb(${alias})) = $::uuid`;
const ORG_OF_TENANT = "select o.id from organizations o where o.tenant_id = $::uuid";
/** A user (column `user`) a caller bound to tenant `$` may see: one with a place or a principal in the tenant. */
const userInTenant = (user: string) => `(exists (select 1 from user_organizations x where x.user_id = ${user} and x.organization_id in (${ORG_OF_TENANT}))
              or exists (select 1 from principals p join accounts a on a.id = p.account_id where p.user_id = ${user} and a.organization_id in (${ORG_OF_TENANT})))`;

export const ENTITIES = {
  tenants: {
    from: "tenants t",
    cols: `t.id::text as id, t.name, t.slug, ${iso("t.created_at")} as "createdAt", ${iso("t.updated_at")} as "updatedAt"`,
    key: "t.id",
    keyCast: "uuid",
    filters: { id: "t.id = $::uuid", slug: "t.slug = $" },
    tenant: "t.id = $::uuid",
    what: "tenant",
  },
  organizations: {
    from: "organizations o",
    cols: `o.id::text as id, o.tenant_id::text as "tenantId", o.name, o.slug, o.metadata::text as metadata, o.role_structure as "roleStructure",
           ${iso("o.created_at")} as "createdAt", ${iso("o.updated_at")} as "updatedAt"`,
    key: "o.id",
    keyCast: "uuid",
    // Equality and "is null" apart, so the indexes serve both ("is not distinct from" would scan).
    filters: { id: "o.id = $::uuid", tenantId: "o.tenant_id = $::uuid", noTenant: "o.tenant_id is null and $::boolean", slug: "o.slug = $" },
    tenant: "o.tenant_id = $::uuid",
    what: "organization",
  },
  users: {
    from: "users u",
    cols: `u.id::text as id, u.email, u.email_confirmed as "emailConfirmed", u.username, u.first_name as "firstName", u.last_name as "lastName",
           u.picture_url as "pictureUrl", u.properties::text as properties, u.has_password as "hasPassword",
           u.update_password_required as "updatePasswordRequired", u.locked, u.enabled, u.mfa_enabled as "mfaEnabled",
           u.can_create_orgs as "canCreateOrgs", u.legacy_user_id as "legacyUserId", u.logical_key as "logicalKey",
           ${iso("u.created_at")} as "createdAt", ${iso("u.last_active_at")} as "lastActiveAt", ${iso("u.updated_at")} as "updatedAt"`,
    key: "u.id",
    keyCast: "uuid",
    filters: {
      id: "u.id = $::uuid",
      logicalKey: "u.logical_key = $",
      email: "u.email = $",
      legacyUserId: "u.legacy_user_id = $",
      organizationId: "exists (select 1 from user_organizations x where x.user_id = u.id and x.organization_id = $::uuid)",
    },
    tenant: userInTenant("u.id"),
    what: "user",
  },
  staff: {
    from: "staff s",
    cols: `s.id::text as id, s.logical_key as "logicalKey", ${iso("s.created_at")} as "createdAt", ${iso("s.updated_at")} as "updatedAt"`,
    key: "s.id",
    keyCast: "uuid",
    filters: { id: "s.id = $::uuid", logicalKey: "s.logical_key = $" },
    tenant: `exists (select 1 from principals p join accounts a on a.id = p.account_id where p.staff_id = s.id and a.organization_id in (${ORG_OF_TENANT}))`,
    what: "staff member",
  },
  accounts: {
    from: "accounts a",
    cols: `a.id::text as id, a.organization_id::text as "organizationId", a.email, a.active, ${iso("a.created_at")} as "createdAt", ${iso("a.updated_at")} as "updatedAt"`,
    key: "a.id",
    keyCast: "uuid",
    filters: { id: "a.id = $::uuid", organizationId: "a.organization_id = $::uuid" },
    tenant: rowTenant("accounts", "a"),
    what: "account",
  },
  principals: {
    from: "principals p",
    cols: `p.id::text as id, p.account_id::text as "accountId", p.subject_type as "subjectType", p.subject_id::text as "subjectId",
           p.identity_id::text as "identityId", p.region, p.personality_key as "personalityKey", p.active,
           ${iso("p.accepted_at")} as "acceptedAt", ${iso("p.valid_until")} as "validUntil", ${iso("p.created_at")} as "createdAt", ${iso("p.updated_at")} as "updatedAt"`,
    key: "p.id",
    keyCast: "uuid",
    filters: { id: "p.id = $::uuid", accountId: "p.account_id = $::uuid", subjectType: "p.subject_type = $", subjectId: "p.subject_id = $::uuid" },
    tenant: rowTenant("principals", "p"),
    what: "principal",
  },
  avatars: {
    from: "avatars v",
    cols: `v.id::text as id, v.organization_id::text as "organizationId", v.handle, v.active, ${iso("v.created_at")} as "createdAt", ${iso("v.updated_at")} as "updatedAt"`,
    key: "v.id",
    keyCast: "uuid",
    filters: { id: "v.id = $::uuid", organizationId: "v.organization_id = $::uuid", handle: "v.handle = $" },
    tenant: rowTenant("avatars", "v"),
    what: "avatar",
  },
  memberships: {
    from: "memberships m",
    cols: `m.id::text as id, m.principal_id::text as "principalId", m.avatar_id::text as "avatarId", m.owner, m.active,
           ${iso("m.accepted_at")} as "acceptedAt", ${iso("m.valid_until")} as "validUntil", ${iso("m.created_at")} as "createdAt", ${iso("m.updated_at")} as "updatedAt"`,
    key: "m.id",
    keyCast: "uuid",
    filters: { id: "m.id = $::uuid", avatarId: "m.avatar_id = $::uuid", principalId: "m.principal_id = $::uuid", owner: "m.owner and m.active and $::boolean" },
    tenant: rowTenant("memberships", "m"),
    what: "membership",
  },
  members: {
    from: "user_organization_info i",
    cols: `i.user_id::text as "userId", i.org_id::text as "orgId", coalesce(i.user_role, '') as "userRole", coalesce(i.url_safe_org_name, '') as "urlSafeOrgName",
           i.org_role_structure as "orgRoleStructure", i.inherited_user_roles_plus_current_role as "inheritedUserRolesPlusCurrentRole",
           i.user_permissions as "userPermissions", i.additional_roles as "additionalRoles"`,
    key: "i.user_id",
    keyCast: "uuid",
    filters: { organizationId: "i.org_id = $::uuid" },
    tenant: `i.org_id in (${ORG_OF_TENANT})`,
    what: "member",
  },
  roles: {
    from: "roles r",
    cols: `r.id::text as id, r.organization_id::text as "organizationId", r.key, r.name, r.description,
           array(select p.key from role_permissions rp join permissions p on p.id = rp.permission_id where rp.role_id = r.id order by p.key) as "permissionKeys",
           array(select ri.parent_role_id::text from role_inheritance ri where ri.role_id = r.id order by 1) as "parentRoleIds",
           ${iso("r.created_at")} as "createdAt"`,
    key: "r.id",
    keyCast: "uuid",
    filters: { organizationId: "r.organization_id = $::uuid", global: "r.organization_id is null and $::boolean" },
    tenant: "(r.organization_id is null or r.organization_id in (select o.id from organizations o where o.tenant_id = $::uuid))",
    what: "role",
  },
  permissions: {
    from: "permissions x",
    cols: `x.id::text as id, x.organization_id::text as "organizationId", x.key, x.description, ${iso("x.created_at")} as "createdAt"`,
    key: "x.id",
    keyCast: "uuid",
    filters: { organizationId: "x.organization_id = $::uuid", global: "x.organization_id is null and $::boolean" },
    tenant: "(x.organization_id is null or x.organization_id in (select o.id from organizations o where o.tenant_id = $::uuid))",
    what: "permission",
  },
  assignments: {
    from: "role_assignments ra join roles r on r.id = ra.role_id",
    cols: `ra.id::text as id, ra.subject_type as "subjectType", ra.subject_id::text as "subjectId", ra.role_id::text as "roleId", r.key as "roleKey",
           ra.scope_type as "scopeType", ra.scope_id::text as "scopeId", ra.active, ${iso("ra.assigned_at")} as "assignedAt", ${iso("ra.valid_until")} as "validUntil"`,
    key: "ra.id",
    keyCast: "uuid",
    filters: {
      subjectType: "ra.subject_type = $",
      subjectId: "ra.subject_id = $::uuid",
      scopeType: "ra.scope_type = $",
      scopeId: "ra.scope_id = $::uuid",
    },
    tenant: rowTenant("role_assignments", "ra"),
    what: "assignment",
  },
  policies: {
    from: "rate_limit_policies rp",
    cols: `rp.id, rp.name, rp.scope, rp.limit_count as "limitCount", rp.window_sec as "windowSec", rp.description, rp.algorithm,
           rp.failure_mode as "failureMode", rp.shadow, ${iso("rp.created_at")} as "createdAt"`,
    key: "rp.id",
    keyCast: "integer",
    filters: { name: "rp.name = $" },
    what: "rate-limit policy",
  },
  rateLimitAssignments: {
    from: "rate_limit_assignments rla join rate_limit_policies rlp on rlp.id = rla.policy_id",
    cols: `rla.id::text as id, rla.policy_id as "policyId", rlp.name as policy, rla.user_id::text as "userId", rla.org_id::text as "organizationId",
           ${iso("rla.created_at")} as "createdAt"`,
    key: "rla.id",
    keyCast: "bigint",
    filters: { policy: "rlp.name = $", organizationId: "rla.org_id = $::uuid", userId: "rla.user_id = $::uuid" },
    // An organization's assignment is its tenant's; a user's is seen where the user is (as ListUsers sees users).
    tenant: `(rla.org_id in (${ORG_OF_TENANT}) or (rla.user_id is not null and ${userInTenant("rla.user_id")}))`,
    what: "rate-limit assignment",
  },
} as const satisfies Record<string, Entity>;

export type EntityName = keyof typeof ENTITIES;
export type Filters<E extends EntityName> = Partial<Record<keyof (typeof ENTITIES)[E]["filters"], string>>;

export interface ReadOptions {
  /** The caller's tenant binding. */
  tenantId: string | null;
  /** Consistency.at_least_as_fresh: INVALID_ARGUMENT (UNKNOWN_REVISION) when the database has not handed it out. */
  atLeast?: bigint;
}

/** How often a read retries for a snapshot without unnumbered commits before it settles for a newer-than-returned one. */
const SNAPSHOT_ATTEMPTS = 5;

/**
 * Runs `fn` in a repeatable-read snapshot and returns it with the snapshot's
 * revision. Committed writes not numbered yet are numbered first (authz_stamp)
 * and the snapshot retaken if one slipped in, so the data is exactly that
 * revision's.
 */
export async function readAt<T>(db: SqlClient, opts: ReadOptions, fn: (tx: SqlQuerier) => Promise<T>): Promise<{ revision: string; value: T }> {
  let out: { revision: string; value: T; exact: boolean } | undefined;
  for (let attempt = 0; attempt < SNAPSHOT_ATTEMPTS && !out?.exact; attempt++) {
    await db.query("select authz_stamp()");
    out = await db.readWriteTx(
      async (tx) => {
        const [h] = await tx.query<{ revision: string; pending: boolean }>(
          "select revision::text as revision, exists (select 1 from authz_changes where revision is null) as pending from authz_revision",
        );
        const head = h as { revision: string; pending: boolean };
        if (opts.atLeast !== undefined && opts.atLeast > BigInt(head.revision)) {
          throw new AuthzError("INVALID_ARGUMENT", `consistency.at_least_as_fresh ${opts.atLeast} is newer than the newest revision ${head.revision}`, {
            reason: "UNKNOWN_REVISION",
          });
        }
        return { revision: head.revision, value: await fn(tx), exact: !head.pending };
      },
      { isolation: "repeatable read" },
    );
  }
  const done = out as { revision: string; value: T };
  return { revision: done.revision, value: done.value };
}

function where<E extends EntityName>(e: E, filters: Filters<E>, tenantId: string | null): { conds: string[]; params: unknown[] } {
  const spec: Entity = ENTITIES[e];
  const conds: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    conds.push(sql.replaceAll("$", `$${params.length}::text`));
  };
  for (const [k, v] of Object.entries(filters) as Array<[string, string | undefined]>) {
    const sql = spec.filters[k];
    if (sql !== undefined && v !== undefined) add(sql, v === "" ? null : v);
  }
  if (tenantId && spec.tenant) add(spec.tenant, tenantId);
  return { conds, params };
}

/** One record matching the filters (the first by key), or undefined; rows outside a bound caller's tenant are not seen. */
export async function getRecord<E extends EntityName>(
  tx: SqlQuerier,
  e: E,
  filters: Filters<E>,
  tenantId: string | null,
): Promise<Record<string, unknown> | undefined> {
  const spec: Entity = ENTITIES[e];
  const { conds, params } = where(e, filters, tenantId);
  const rows = await tx.query(
    `select ${spec.cols} from ${spec.from} ${conds.length ? `where ${conds.join(" and ")}` : ""} order by ${spec.key} limit 1`,
    params,
  );
  return rows[0];
}

/** Whether a record exists at all (whatever the caller's tenant), to tell PERMISSION_DENIED from NOT_FOUND. */
export async function recordExists<E extends EntityName>(tx: SqlQuerier, e: E, filters: Filters<E>): Promise<boolean> {
  return (await getRecord(tx, e, filters, null)) !== undefined;
}

export const DEFAULT_PAGE_SIZE = 100;

export interface PageRequest {
  pageSize: number;
  pageToken: string;
}

interface Token {
  /** The last key of the previous page. */
  k: string;
  /** Digest of the request the token belongs to. */
  q: string;
}

const digest = (e: string, filters: object, size: number): string =>
  createHash("sha256")
    .update(JSON.stringify([e, Object.entries(filters).sort(), size]))
    .digest("base64url")
    .slice(0, 16);

/** Keys as listPage writes them (`key::text`): a lowercase UUID, or an integer in int4 (int8) range without sign tricks, exponent or fraction. */
const LOWER_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const INT4 = /^-?(0|[1-9][0-9]{0,9})$/;
const INT8 = /^-?(0|[1-9][0-9]{0,18})$/;

/** Whether `k` is a key of this type, so a tampered token is refused before it reaches the SQL cast. */
function isKey(k: string, cast: Entity["keyCast"]): boolean {
  if (cast === "uuid") return LOWER_UUID.test(k);
  if (cast === "bigint") return INT8.test(k) && BigInt(k) >= -(2n ** 63n) && BigInt(k) <= 2n ** 63n - 1n;
  return INT4.test(k) && Number(k) >= -(2 ** 31) && Number(k) <= 2 ** 31 - 1;
}

function decodeToken(token: string, q: string, cast: Entity["keyCast"]): string | undefined {
  if (token === "") return undefined;
  try {
    const t = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Token;
    if (typeof t.k === "string" && t.q === q && isKey(t.k, cast)) return t.k;
  } catch {
    // falls through to the refusal
  }
  throw invalidArgument(
    "page_token is not a token of this request: pass the next_page_token of the previous page with the same filters and page_size",
    "page_token",
  );
}

/** One page of records in key order, and the token of the next page ("" on the last). */
export async function listPage<E extends EntityName>(
  tx: SqlQuerier,
  e: E,
  filters: Filters<E>,
  page: PageRequest,
  tenantId: string | null,
): Promise<{ rows: Record<string, unknown>[]; nextPageToken: string }> {
  const spec: Entity = ENTITIES[e];
  const size = pageSize(page.pageSize, DEFAULT_PAGE_SIZE);
  const q = digest(e, filters, size);
  const after = decodeToken(page.pageToken, q, spec.keyCast);
  const { conds, params } = where(e, filters, tenantId);
  if (after !== undefined) {
    params.push(after);
    conds.push(`${spec.key} > $${params.length}::text::${spec.keyCast}`);
  }
  const rows = await tx.query(
    `select ${spec.cols}, ${spec.key}::text as "pageKey" from ${spec.from} ${conds.length ? `where ${conds.join(" and ")}` : ""}
      order by ${spec.key} limit ${size + 1}`,
    params,
  );
  const more = rows.length > size;
  const shown = rows.slice(0, size);
  const last = shown[shown.length - 1];
  const nextPageToken = more && last ? Buffer.from(JSON.stringify({ k: String(last.pageKey), q } satisfies Token)).toString("base64url") : "";
  return { rows: shown.map(({ pageKey: _, ...r }) => r), nextPageToken };
}
