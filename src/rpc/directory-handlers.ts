// DirectoryService at the edge: ManageDirectory's generated messages to the
// domain mutations of store/directory-mutations.ts (presence checks here,
// values validated by the store), and the reads: request filters to
// store/directory-reads.ts, rows back to messages.

import { batchInput } from "./batch-request.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { RoleRef } from "../../gen/authz/v1/admin_service_pb.js";
import type {
  DirectoryMutation as DirectoryMutationMsg,
  DirectoryService,
  ManageDirectoryRequest,
  ManageDirectoryResponseSchema,
} from "../../gen/authz/v1/directory_service_pb.js";
import { invalidArgument } from "../errors.js";
import type { DirectoryMutation } from "../store/directory-mutations.js";
import { manageDirectory } from "../store/directory-writer.js";
import type { RoleRefInput } from "../store/manage-roles.js";
import type { SqlClient } from "../store/sql.js";
import { directoryReadHandlers } from "./directory-read-handlers.js";
import { timestampToDate } from "./input-bounds.js";
import type { CallContext, ServiceHandlers } from "./handler-types.js";
import { writeCaller } from "./tenancy.js";

const date = (t: Timestamp | undefined): Date | undefined => (t ? timestampToDate(t) : undefined);
const dateOrNull = (t: Timestamp | undefined): Date | null => (t ? timestampToDate(t) : null);
/** "" from a proto3 optional string means "clear it" (null). */
const clear = (v: string | undefined): string | null | undefined => (v === undefined ? undefined : v === "" ? null : v);
const id = (v: string): string | undefined => (v === "" ? undefined : v);
/** A timestamp field with its clear_ flag: null clears it, undefined keeps it; both given is INVALID_ARGUMENT. */
function dateOrCleared(t: Timestamp | undefined, clearIt: boolean, path: string): Date | null | undefined {
  if (clearIt && t) throw invalidArgument(`${path}: give the time or clear it, not both`, path);
  return clearIt ? null : date(t);
}

function roleRef(r: RoleRef | undefined, path: string): RoleRefInput {
  if (r === undefined) throw invalidArgument(`${path} is required`, path);
  if (r.ref.case === "id") return { id: r.ref.value };
  if (r.ref.case === "key") return { organizationId: r.ref.value.organizationId === "" ? null : r.ref.value.organizationId, key: r.ref.value.key };
  throw invalidArgument(`${path} must give an id or a key`, path);
}

/** Absent fields stay absent (not undefined). */
const strip = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

/** A mutation with its absent fields left out; the store validates its values. */
const clean = (o: { kind: DirectoryMutation["kind"] } & Record<string, unknown>): DirectoryMutation => strip(o) as unknown as DirectoryMutation;

function entityFrom(mu: DirectoryMutationMsg["mutation"], p: string): DirectoryMutation | undefined {
  switch (mu.case) {
    case "upsertTenant":
      return clean({ kind: "upsertTenant", id: id(mu.value.id), name: mu.value.name, slug: mu.value.slug });
    case "upsertOrganization": {
      const v = mu.value;
      return clean({
        kind: "upsertOrganization",
        id: id(v.id),
        tenantId: clear(v.tenantId),
        name: v.name,
        slug: clear(v.slug),
        metadata: v.metadata,
        roleStructure: v.roleStructure,
      });
    }
    case "upsertUser": {
      const v = mu.value;
      const fields = strip({
        email: clear(v.email),
        emailConfirmed: v.emailConfirmed,
        username: clear(v.username),
        firstName: clear(v.firstName),
        lastName: clear(v.lastName),
        pictureUrl: clear(v.pictureUrl),
        properties: v.properties,
        hasPassword: v.hasPassword,
        updatePasswordRequired: v.updatePasswordRequired,
        mfaEnabled: v.mfaEnabled,
        canCreateOrgs: v.canCreateOrgs,
        legacyUserId: clear(v.legacyUserId),
        logicalKey: clear(v.logicalKey),
        createdAt: date(v.createdAt),
        lastActiveAt: dateOrCleared(v.lastActiveAt, v.clearLastActiveAt, `${p}.upsert_user.last_active_at`),
        locked: v.locked,
        enabled: v.enabled,
      });
      return clean({ kind: "upsertUser", id: id(v.id), fields });
    }
    case "upsertStaff":
      return clean({ kind: "upsertStaff", id: id(mu.value.id), logicalKey: mu.value.logicalKey });
    case "upsertAccount":
      return clean({
        kind: "upsertAccount",
        id: id(mu.value.id),
        organizationId: id(mu.value.organizationId),
        email: clear(mu.value.email),
        active: mu.value.active,
      });
    case "upsertPrincipal": {
      const v = mu.value;
      if (v.subject && v.subject.type !== "user" && v.subject.type !== "staff")
        throw invalidArgument(`${p}.upsert_principal.subject.type must be user or staff`, `${p}.upsert_principal.subject.type`);
      return clean({
        kind: "upsertPrincipal",
        id: id(v.id),
        accountId: id(v.accountId),
        subject: v.subject ? { type: v.subject.type as "user" | "staff", id: v.subject.id } : undefined,
        identityId: clear(v.identityId),
        region: clear(v.region),
        personalityKey: clear(v.personalityKey),
        validUntil: dateOrCleared(v.validUntil, v.clearValidUntil, `${p}.upsert_principal.valid_until`),
        active: v.active,
        acceptedAt: dateOrCleared(v.acceptedAt, v.clearAcceptedAt, `${p}.upsert_principal.accepted_at`),
      });
    }
    default:
      return undefined;
  }
}

function recordFrom(mu: DirectoryMutationMsg["mutation"]): DirectoryMutation | undefined {
  switch (mu.case) {
    case "deleteTenant":
    case "deleteOrganization":
      return { kind: mu.case, id: mu.value.id, cascade: mu.value.cascade };
    case "deleteUser":
    case "deleteStaff":
    case "deleteAccount":
    case "deletePrincipal":
    case "deleteAvatar":
    case "declineMembership":
    case "revokeMembership":
      return { kind: mu.case, id: mu.value.id };
    case "setAccountActive":
    case "setPrincipalActive":
    case "setAvatarActive":
    case "setMembershipActive":
      return { kind: mu.case, id: mu.value.id, active: mu.value.active };
    case "acceptPrincipal":
    case "acceptMembership":
      return clean({ kind: mu.case, id: mu.value.id, acceptedAt: date(mu.value.acceptedAt) });
    case "setMembershipValidUntil":
      return { kind: mu.case, id: mu.value.id, validUntil: dateOrNull(mu.value.validUntil) };
    case "setUserStatus":
      return clean({ kind: "setUserStatus", userId: mu.value.userId, locked: mu.value.locked, enabled: mu.value.enabled });
    default:
      return undefined;
  }
}

function avatarOrPlaceFrom(mu: DirectoryMutationMsg["mutation"], p: string): DirectoryMutation | undefined {
  switch (mu.case) {
    case "createAvatar": {
      const v = mu.value;
      return clean({
        kind: "createAvatar",
        id: id(v.id),
        organizationId: v.organizationId,
        handle: v.handle,
        ownerPrincipalId: v.ownerPrincipalId,
        ownerMembershipId: id(v.ownerMembershipId),
      });
    }
    case "updateAvatar":
      return { kind: "updateAvatar", id: mu.value.id, handle: mu.value.handle };
    case "inviteMembership":
      return clean({
        kind: "inviteMembership",
        id: id(mu.value.id),
        avatarId: mu.value.avatarId,
        principalId: mu.value.principalId,
        validUntil: dateOrNull(mu.value.validUntil),
      });
    case "addUserToOrganization":
    case "setPrimaryRole": {
      const f = mu.case === "setPrimaryRole" ? "set_primary_role" : "add_user_to_organization";
      const v = mu.value;
      return {
        kind: mu.case,
        userId: v.userId,
        organizationId: v.organizationId,
        primaryRole: roleRef(v.primaryRole, `${p}.${f}.primary_role`),
        replace: v.replace,
      };
    }
    case "removeUserFromOrganization":
      return { kind: mu.case, userId: mu.value.userId, organizationId: mu.value.organizationId };
    default:
      return undefined;
  }
}

function mutationFrom(m: DirectoryMutationMsg, i: number): DirectoryMutation {
  const p = `mutations[${i}]`;
  const out = recordFrom(m.mutation) ?? entityFrom(m.mutation, p) ?? avatarOrPlaceFrom(m.mutation, p);
  if (!out) throw invalidArgument(`${p} must set exactly one change`, p);
  return out;
}

function manageDirectoryHandler(
  db: () => SqlClient,
): (req: ManageDirectoryRequest, ctx: CallContext) => Promise<MessageInitShape<typeof ManageDirectoryResponseSchema>> {
  return async (req, ctx) => {
    const result = await manageDirectory(db(), batchInput(req, mutationFrom), writeCaller(ctx));
    return { revision: result.revision, results: result.results.map((r) => ({ id: r.id, changed: r.changed })) };
  };
}

/** Every DirectoryService RPC; db is read per call so the handlers can be built before the pool. */
export function directoryHandlers(db: () => SqlClient): ServiceHandlers<typeof DirectoryService> {
  return { manageDirectory: manageDirectoryHandler(db), ...directoryReadHandlers(db) };
}
