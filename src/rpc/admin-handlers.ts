// AdminService at the edge: generated messages in, domain types to the store,
// and the domain result back as a response message. Presence checks (an
// empty oneof, a missing sub-message) happen here; the store validates values.

import { batchInput } from "./batch-request.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ManageRolesRequest, ManageRolesResponseSchema, PermissionRef, RoleMutation, RoleRef } from "../../gen/authz/v1/admin_service_pb.js";
import type { ResourceRef, SubjectRef } from "../../gen/authz/v1/common_pb.js";
import { invalidArgument } from "../errors.js";
import { type Mutation, type RoleRefInput, type ScopeInput, type SubjectInput, manageRoles } from "../store/manage-roles.js";
import type { SqlClient } from "../store/sql.js";
import type { CallContext } from "./handler-types.js";
import { timestampToDate } from "./input-bounds.js";
import { writeCaller } from "./tenancy.js";

const MUTATION_CASES =
  "upsert_role, delete_role, upsert_permission, delete_permission, grant_permission, revoke_permission, add_inheritance, remove_inheritance, assign_role, unassign_role";

function required<T>(v: T | undefined, path: string): T {
  if (v === undefined) throw invalidArgument(`${path} is required`, path);
  return v;
}

function refFrom(r: RoleRef | PermissionRef | undefined, path: string): RoleRefInput {
  const ref = required(r, path).ref;
  switch (ref.case) {
    case "id":
      return { id: ref.value };
    case "key":
      return { organizationId: ref.value.organizationId === "" ? null : ref.value.organizationId, key: ref.value.key };
    default:
      throw invalidArgument(`${path} must give an id or a key`, path);
  }
}

function subjectFrom(s: SubjectRef | undefined, path: string): SubjectInput {
  const v = required(s, path);
  return { type: v.type, id: v.id };
}

/** An absent scope is a global assignment. */
const scopeFrom = (s: ResourceRef | undefined): ScopeInput | null => (s === undefined ? null : { type: s.type, id: s.id });

function mutationFrom(m: RoleMutation, i: number): Mutation {
  const p = `mutations[${i}]`;
  const mu = m.mutation;
  switch (mu.case) {
    case "upsertRole": {
      const k = required(mu.value.key, `${p}.upsert_role.key`);
      return {
        kind: "upsertRole",
        organizationId: k.organizationId === "" ? null : k.organizationId,
        key: k.key,
        ...(mu.value.name !== "" ? { name: mu.value.name } : {}),
        ...descriptionOf(mu.value, `${p}.upsert_role`),
        ...(mu.value.id !== "" ? { id: mu.value.id } : {}),
      };
    }
    case "upsertPermission": {
      const k = required(mu.value.key, `${p}.upsert_permission.key`);
      return {
        kind: "upsertPermission",
        organizationId: k.organizationId === "" ? null : k.organizationId,
        key: k.key,
        ...descriptionOf(mu.value, `${p}.upsert_permission`),
        ...(mu.value.id !== "" ? { id: mu.value.id } : {}),
      };
    }
    case "deleteRole":
      return { kind: "deleteRole", role: refFrom(mu.value, `${p}.delete_role`) };
    case "deletePermission":
      return { kind: "deletePermission", permission: refFrom(mu.value, `${p}.delete_permission`) };
    case "grantPermission":
    case "revokePermission": {
      const f = mu.case === "grantPermission" ? "grant_permission" : "revoke_permission";
      return {
        kind: mu.case,
        role: refFrom(mu.value.role, `${p}.${f}.role`),
        permission: refFrom(mu.value.permission, `${p}.${f}.permission`),
      };
    }
    case "addInheritance":
    case "removeInheritance": {
      const f = mu.case === "addInheritance" ? "add_inheritance" : "remove_inheritance";
      return { kind: mu.case, role: refFrom(mu.value.role, `${p}.${f}.role`), parent: refFrom(mu.value.parent, `${p}.${f}.parent`) };
    }
    case "assignRole":
      return {
        kind: "assignRole",
        subject: subjectFrom(mu.value.subject, `${p}.assign_role.subject`),
        role: refFrom(mu.value.role, `${p}.assign_role.role`),
        scope: scopeFrom(mu.value.scope),
        validUntil: mu.value.validUntil ? timestampToDate(mu.value.validUntil) : null,
        ...(mu.value.replace ? { replace: true } : {}),
        ...(mu.value.active !== undefined ? { active: mu.value.active } : {}),
      };
    case "unassignRole":
      if (mu.value.assignmentId !== "") return { kind: "unassignRole", assignmentId: mu.value.assignmentId };
      return {
        kind: "unassignRole",
        subject: subjectFrom(mu.value.subject, `${p}.unassign_role.subject`),
        role: refFrom(mu.value.role, `${p}.unassign_role.role`),
        scope: scopeFrom(mu.value.scope),
      };
    default:
      throw invalidArgument(`${p} must set exactly one change (${MUTATION_CASES})`, p);
  }
}

/** ManageRoles: db is read per call so the handler can be built before the pool. */
/** A description to write: the text given, "" to clear it (clear_description), or none to keep it. */
function descriptionOf(v: { description: string; clearDescription: boolean }, at: string): { description?: string } {
  if (v.clearDescription && v.description !== "") throw invalidArgument(`${at}: give a description or clear_description, not both`, `${at}.clear_description`);
  if (v.clearDescription) return { description: "" };
  return v.description !== "" ? { description: v.description } : {};
}

export function manageRolesHandler(
  db: () => SqlClient,
): (req: ManageRolesRequest, ctx: CallContext) => Promise<MessageInitShape<typeof ManageRolesResponseSchema>> {
  return async (req, ctx) => {
    const result = await manageRoles(db(), batchInput(req, mutationFrom), writeCaller(ctx));
    return { revision: result.revision, results: result.results.map((r) => ({ id: r.id, changed: r.changed })) };
  };
}
