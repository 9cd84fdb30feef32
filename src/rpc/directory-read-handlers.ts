// DirectoryService reads at the edge: request fields to the filters of
// store/directory-reads.ts (UUIDs checked here), rows back to messages. Every
// read returns the revision it was read at; see directory-reads.ts for the
// snapshot, the paging and the tenancy rule.

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Consistency, ResourceRef, SubjectRef } from "../../gen/authz/v1/common_pb.js";
import type { DirectoryService } from "../../gen/authz/v1/directory_service_pb.js";
import { AuthzError, invalidArgument, printablePrefix } from "../errors.js";
import { type EntityName, type Filters, getRecord, listPage, readAt, recordExists } from "../store/directory-reads.js";
import type { SqlClient, SqlQuerier } from "../store/sql.js";
import { otherTenant } from "../tenancy.js";
import { KEY, UUID } from "../validation.js";
import { toFreshness } from "./consistency.js";
import type { CallContext, ServiceHandlers } from "./handler-types.js";

type Row = Record<string, unknown>;
type Handlers = Omit<ServiceHandlers<typeof DirectoryService>, "manageDirectory">;

const JSON_FIELDS = new Set(["metadata", "properties"]);
const TIME = /(At|Until)$/;

/** A row as a message init: null text → "", ISO times → Timestamp (absent when null), JSON text → objects, subject/scope pairs → refs. */
function toMessage(row: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    if (TIME.test(k)) {
      if (v !== null) out[k] = timestampFromDate(new Date(String(v)));
    } else if (JSON_FIELDS.has(k)) out[k] = v === null ? {} : JSON.parse(String(v));
    else if (k === "subjectType" || k === "subjectId" || k === "scopeType" || k === "scopeId") continue;
    else out[k] = v ?? "";
  }
  if ("subjectType" in row) out.subject = { type: row.subjectType, id: row.subjectId };
  if ("scopeType" in row && row.scopeType !== "global") out.scope = { type: row.scopeType, id: row.scopeId };
  return out;
}

function uuidField(v: string, field: string, required = false): string | undefined {
  if (v === "") {
    if (required) throw invalidArgument(`${field} is required`, field);
    return undefined;
  }
  if (!UUID.test(v)) throw invalidArgument(`${field} must be a UUID in canonical text form`, field);
  return v.toLowerCase();
}

function options(ctx: CallContext, consistency: Consistency | undefined) {
  const f = toFreshness(consistency);
  return { tenantId: ctx.caller?.tenantId ?? null, ...(f.kind === "at_least" ? { atLeast: f.revision } : {}) };
}

/** Users and staff belong to no tenant: one a bound caller may not see is NOT_FOUND, which tells nothing. */
const GLOBAL_IDENTITIES = new Set<EntityName>(["users", "staff"]);

/** The record a Get names, as the caller may see it: PERMISSION_DENIED when it lies in another tenant. */
async function findVisible<E extends EntityName>(tx: SqlQuerier, e: E, filters: Filters<E>, tenantId: string | null, what: string): Promise<Row | undefined> {
  const row = await getRecord(tx, e, filters, tenantId);
  if (row || !tenantId || GLOBAL_IDENTITIES.has(e)) return row;
  if (await recordExists(tx, e, filters)) throw otherTenant(tenantId, what);
  return undefined;
}

async function get<E extends EntityName>(
  db: SqlClient,
  ctx: CallContext,
  consistency: Consistency | undefined,
  e: E,
  filters: Filters<E>,
  what: string,
): Promise<{ revision: string; row: Row }> {
  const opts = options(ctx, consistency);
  const { revision, value } = await readAt(db, opts, (tx) => findVisible(tx, e, filters, opts.tenantId, what));
  if (!value) throw new AuthzError("NOT_FOUND", `${what} not found`);
  return { revision, row: toMessage(value) };
}

interface ListRequest {
  consistency?: Consistency | undefined;
  pageSize: number;
  pageToken: string;
}

async function list<E extends EntityName>(db: SqlClient, ctx: CallContext, req: ListRequest, e: E, filters: Filters<E>) {
  const opts = options(ctx, req.consistency);
  const { revision, value } = await readAt(db, opts, (tx) => listPage(tx, e, filters, { pageSize: req.pageSize, pageToken: req.pageToken }, opts.tenantId));
  return { revision, rows: value.rows.map(toMessage), nextPageToken: value.nextPageToken };
}

/**
 * How a message names the record a Get asked for: by its id (a checked UUID)
 * as is, by another key as `with <field> "<a short printable prefix>"`.
 */
const named = (what: string, field: string, value: string): string =>
  field === "id" ? `${what} ${value}` : `${what} with ${field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)} "${printablePrefix(value)}"`;

function oneOf<T extends { case: string | undefined; value?: unknown }>(by: T, field: string): { key: string; value: string } {
  if (by.case === undefined || typeof by.value !== "string" || by.value === "") throw invalidArgument(`${field} must name the record one way`, field);
  return { key: by.case, value: by.value };
}

const ASSIGNMENT_SUBJECTS = ["user", "account", "principal", "staff"];
const ASSIGNMENT_SCOPES = ["tenant", "organization", "avatar"];

function subjectFilter(s: SubjectRef): Filters<"assignments"> {
  if (!ASSIGNMENT_SUBJECTS.includes(s.type)) throw invalidArgument(`subject.type must be one of ${ASSIGNMENT_SUBJECTS.join(", ")}`, "subject.type");
  return { subjectType: s.type, subjectId: uuidField(s.id, "subject.id", true) };
}

/** A scope, or type "global" (no id) for the global assignments. */
function scopeFilter(s: ResourceRef): Filters<"assignments"> {
  if (s.type === "global") return { scopeType: "global" };
  if (!ASSIGNMENT_SCOPES.includes(s.type)) throw invalidArgument(`scope.type must be one of ${ASSIGNMENT_SCOPES.join(", ")} or global`, "scope.type");
  return { scopeType: s.type, scopeId: uuidField(s.id, "scope.id", true) };
}

/** A policy named as ManageRateLimits names it (1 to 128 of A-Za-z0-9._:-); undefined when empty. */
function policyFilter(v: string): string | undefined {
  if (v === "") return undefined;
  if (!KEY.test(v)) throw invalidArgument(`policy must be 1 to 128 characters of letters, digits and "._:-"`, "policy");
  return v;
}

function entityReads(
  db: () => SqlClient,
): Pick<Handlers, "getTenant" | "listTenants" | "getOrganization" | "listOrganizations" | "getUser" | "listUsers" | "getStaff" | "listStaff"> {
  return {
    async getTenant(req, ctx) {
      const by = oneOf(req.by, "by");
      const filters = by.key === "id" ? { id: uuidField(by.value, "id") } : { slug: by.value };
      const { revision, row } = await get(db(), ctx, req.consistency, "tenants", filters, named("tenant", by.key, by.value));
      return { tenant: row, revision };
    },
    async listTenants(req, ctx) {
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "tenants", {});
      return { tenants: rows, revision, nextPageToken };
    },
    async getOrganization(req, ctx) {
      const orgId = uuidField(req.id, "id");
      if (!orgId && req.slug === "") throw invalidArgument("id or slug is required", "id");
      const tenantId = uuidField(req.tenantId, "tenant_id");
      const filters = orgId ? { id: orgId } : { ...(tenantId ? { tenantId } : { noTenant: "true" }), slug: req.slug };
      const { revision, row } = await get(
        db(),
        ctx,
        req.consistency,
        "organizations",
        filters,
        orgId ? named("organization", "id", orgId) : named("organization", "slug", req.slug),
      );
      return { organization: row, revision };
    },
    async listOrganizations(req, ctx) {
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "organizations", { tenantId: uuidField(req.tenantId, "tenant_id") });
      return { organizations: rows, revision, nextPageToken };
    },
    async getUser(req, ctx) {
      const by = oneOf(req.by, "by");
      const filters = { [by.key]: by.key === "id" ? uuidField(by.value, "id") : by.value } as Filters<"users">;
      const { revision, row } = await get(db(), ctx, req.consistency, "users", filters, named("user", by.key, by.value));
      return { user: row, revision };
    },
    async listUsers(req, ctx) {
      const filters = {
        organizationId: uuidField(req.organizationId, "organization_id"),
        ...(req.email !== "" ? { email: req.email } : {}),
        ...(req.legacyUserId !== "" ? { legacyUserId: req.legacyUserId } : {}),
      };
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "users", filters);
      return { users: rows, revision, nextPageToken };
    },
    async getStaff(req, ctx) {
      const by = oneOf(req.by, "by");
      const filters = by.key === "id" ? { id: uuidField(by.value, "id") } : { logicalKey: by.value };
      const { revision, row } = await get(db(), ctx, req.consistency, "staff", filters, named("staff member", by.key, by.value));
      return { staff: row, revision };
    },
    async listStaff(req, ctx) {
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "staff", {});
      return { staff: rows, revision, nextPageToken };
    },
  };
}

function accountReads(db: () => SqlClient): Pick<Handlers, "getAccount" | "listAccounts" | "getPrincipal" | "listPrincipals" | "getAvatar" | "listAvatars"> {
  return {
    async getAccount(req, ctx) {
      const { revision, row } = await get(db(), ctx, req.consistency, "accounts", { id: uuidField(req.id, "id", true) }, `account ${req.id}`);
      return { account: row, revision };
    },
    async listAccounts(req, ctx) {
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "accounts", { organizationId: uuidField(req.organizationId, "organization_id") });
      return { accounts: rows, revision, nextPageToken };
    },
    async getPrincipal(req, ctx) {
      const { revision, row } = await get(db(), ctx, req.consistency, "principals", { id: uuidField(req.id, "id", true) }, `principal ${req.id}`);
      return { principal: row, revision };
    },
    async listPrincipals(req, ctx) {
      const accountId = uuidField(req.accountId, "account_id");
      if (!accountId && !req.subject) throw invalidArgument("account_id or subject is required", "account_id");
      if (req.subject && req.subject.type !== "user" && req.subject.type !== "staff")
        throw invalidArgument("subject.type must be user or staff", "subject.type");
      const filters = {
        accountId,
        ...(req.subject ? { subjectType: req.subject.type, subjectId: uuidField(req.subject.id, "subject.id", true) } : {}),
      };
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "principals", filters);
      return { principals: rows, revision, nextPageToken };
    },
    async getAvatar(req, ctx) {
      const avatarId = uuidField(req.id, "id");
      if (!avatarId && (req.organizationId === "" || req.handle === "")) throw invalidArgument("id, or organization_id and handle, are required", "id");
      const filters = avatarId ? { id: avatarId } : { organizationId: uuidField(req.organizationId, "organization_id"), handle: req.handle };
      const opts = options(ctx, req.consistency);
      const what = avatarId ? named("avatar", "id", avatarId) : named("avatar", "handle", req.handle);
      const { revision, value } = await readAt(db(), opts, async (tx) => {
        const row = await findVisible(tx, "avatars", filters, opts.tenantId, what);
        return { row, owner: row ? await getRecord(tx, "memberships", { avatarId: String(row.id), owner: "true" }, null) : undefined };
      });
      if (!value.row) throw new AuthzError("NOT_FOUND", `${what} not found`);
      return { avatar: toMessage(value.row), revision, ...(value.owner ? { owner: toMessage(value.owner) } : {}) };
    },
    async listAvatars(req, ctx) {
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "avatars", {
        organizationId: uuidField(req.organizationId, "organization_id", true),
      });
      return { avatars: rows, revision, nextPageToken };
    },
  };
}

function grantReads(db: () => SqlClient): Omit<Handlers, keyof ReturnType<typeof entityReads> | keyof ReturnType<typeof accountReads>> {
  return {
    async listMemberships(req, ctx) {
      const avatarId = uuidField(req.avatarId, "avatar_id");
      const principalId = uuidField(req.principalId, "principal_id");
      if (!avatarId === !principalId) throw invalidArgument("exactly one of avatar_id and principal_id is required", "avatar_id");
      const d = db();
      const opts = options(ctx, req.consistency);
      const { revision, value } = await readAt(d, opts, async (tx) => ({
        page: await listPage(tx, "memberships", avatarId ? { avatarId } : { principalId }, req, opts.tenantId),
        owner: avatarId ? await getRecord(tx, "memberships", { avatarId, owner: "true" }, opts.tenantId) : undefined,
      }));
      return {
        memberships: value.page.rows.map(toMessage),
        ...(value.owner ? { currentOwner: toMessage(value.owner) } : {}),
        revision,
        nextPageToken: value.page.nextPageToken,
      };
    },
    async listOrganizationMembers(req, ctx) {
      const filters = { organizationId: uuidField(req.organizationId, "organization_id", true) };
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "members", filters);
      return { members: rows, revision, nextPageToken };
    },
    async listRoles(req, ctx) {
      const orgId = uuidField(req.organizationId, "organization_id");
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "roles", orgId ? { organizationId: orgId } : { global: "true" });
      return { roles: rows, revision, nextPageToken };
    },
    async listPermissionDefinitions(req, ctx) {
      const orgId = uuidField(req.organizationId, "organization_id");
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "permissions", orgId ? { organizationId: orgId } : { global: "true" });
      return { permissions: rows, revision, nextPageToken };
    },
    async listAssignments(req, ctx) {
      if (!req.subject === !req.scope) throw invalidArgument("exactly one of subject and scope is required", "subject");
      const filters = req.subject ? subjectFilter(req.subject) : scopeFilter(req.scope as ResourceRef);
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "assignments", filters);
      return { assignments: rows, revision, nextPageToken };
    },
    async listRateLimitPolicies(req, ctx) {
      const { revision, rows, nextPageToken } = await list(db(), ctx, req, "policies", {});
      return { policies: rows, revision, nextPageToken };
    },
    async listRateLimitAssignments(req, ctx) {
      const policy = policyFilter(req.policy);
      const organizationId = uuidField(req.organizationId, "organization_id");
      const userId = uuidField(req.userId, "user_id");
      if (organizationId && userId) throw invalidArgument("at most one of organization_id and user_id may be given", "user_id");
      const opts = options(ctx, req.consistency);
      const { revision, value } = await readAt(db(), opts, async (tx) => {
        // Policies are global vocabulary, readable by every caller: an unknown name is said so, as ManageRateLimits says it.
        if (policy !== undefined && !(await getRecord(tx, "policies", { name: policy }, null))) {
          throw new AuthzError("NOT_FOUND", `rate-limit policy "${policy}" does not exist`, { reason: "POLICY_NOT_FOUND", metadata: { field: "policy" } });
        }
        return listPage(tx, "rateLimitAssignments", { policy, organizationId, userId }, req, opts.tenantId);
      });
      // The id is a bigint, read as text: an int64 field takes a bigint.
      const assignments = value.rows.map((r) => ({ ...toMessage(r), id: BigInt(String(r.id)) }));
      return { assignments, revision, nextPageToken: value.nextPageToken };
    },
  };
}

export function directoryReadHandlers(db: () => SqlClient): Handlers {
  return { ...entityReads(db), ...accountReads(db), ...grantReads(db) } satisfies Handlers;
}
