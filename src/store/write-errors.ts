// Database refusals → domain errors, for every writer: never SQL text, never
// a row the caller did not name. Trigger rules whose messages are sentences
// written for callers pass their message through; everything else is said
// in our own words.

import { AuthzError, type DomainCode, type ReasonOf } from "../errors.js";
import type { SqlError } from "./sql.js";

/** Trigger rules (migrations) whose raise messages are plain sentences fit for callers. */
const TRIGGER_RULES = new Set([
  "roles_builtin",
  "roles_organization_fixed",
  "permissions_organization_fixed",
  "role_permissions_same_organization",
  "role_inheritance_same_organization",
  "role_inheritance_acyclic",
  "role_assignments_scope_in_role_organization",
  "user_organizations_primary_role_organization",
]);

/** Foreign keys → what is missing, in the caller's terms. */
const MISSING: Record<string, string> = {
  roles_organization_id_fkey: "the organization does not exist",
  permissions_organization_id_fkey: "the organization does not exist",
  role_assignments_user_id_fkey: "the subject user does not exist",
  role_assignments_account_id_fkey: "the subject account does not exist",
  role_assignments_principal_id_fkey: "the subject principal does not exist",
  role_assignments_staff_id_fkey: "the subject staff member does not exist",
  role_assignments_tenant_scope_id_fkey: "the scope tenant does not exist",
  role_assignments_organization_scope_id_fkey: "the scope organization does not exist",
  role_assignments_avatar_scope_id_fkey: "the scope avatar does not exist",
  role_assignments_role_id_fkey: "the role does not exist",
  role_permissions_role_id_fkey: "the role does not exist",
  role_permissions_permission_id_fkey: "the permission does not exist",
  role_inheritance_role_id_fkey: "the role does not exist",
  role_inheritance_parent_role_id_fkey: "the parent role does not exist",
};

/** A constraint's own error: a code with one of its reasons. */
type Special = { [C in DomainCode]: { code: C; message: string; reason: ReasonOf<C> } }[DomainCode];

/** Constraints with a stable reason of their own. */
const SPECIAL: Record<string, Special> = {
  role_inheritance_acyclic: { code: "FAILED_PRECONDITION", message: "", reason: "INHERITANCE_CYCLE" },
  ownership_transfers_idempotency_key: {
    code: "ALREADY_EXISTS",
    message: "idempotency_key was already used for another transfer of this avatar",
    reason: "IDEMPOTENCY_KEY_REUSED",
  },
  memberships_one_active_owner: { code: "ABORTED", message: "the avatar's ownership changed concurrently, retry", reason: "ABORTED" },
  ownership_transfers_one_pending: { code: "ABORTED", message: "the avatar's ownership changed concurrently, retry", reason: "ABORTED" },
  avatars_exactly_one_owner: {
    code: "FAILED_PRECONDITION",
    message: "the change would leave an active avatar without exactly one owner",
    reason: "OWNER_INVARIANT",
  },
  tenant_confinement: { code: "PERMISSION_DENIED", message: "the credential's tenant cannot change these rows", reason: "OTHER_TENANT" },
};

/**
 * Maps a database error to an AuthzError; `where` names the mutation
 * ("mutations[3].assign_role") or the write. Unknown failures stay SqlErrors
 * (INTERNAL for the caller, logged with the request id).
 */
export function fromSqlError(err: SqlError, where: string): AuthzError | SqlError {
  const c = err.constraint;
  const special = c ? SPECIAL[c] : undefined;
  // The entry pairs its code and reason (Special); the compiler cannot follow that pairing through a union.
  if (special && special.message !== "")
    return new AuthzError<DomainCode>(special.code, special.message, { reason: special.reason as ReasonOf<DomainCode>, cause: err });
  switch (err.code) {
    case "23503":
      return new AuthzError("NOT_FOUND", `${where}: ${(c && MISSING[c]) ?? "refers to a record that does not exist"}`, { cause: err });
    case "23505":
      // A primary key's violation: the id the caller chose is taken (the constraint's name says nothing more to a caller).
      if (c?.endsWith("_pkey")) return new AuthzError("ALREADY_EXISTS", `${where}: its id is already taken by another record`, { cause: err });
      return new AuthzError("ALREADY_EXISTS", `${where}: conflicts with an existing record${c ? ` (${c})` : ""}`, { cause: err });
    case "23514":
    case "23P01": {
      const text = c && TRIGGER_RULES.has(c) ? err.message : `violates the rule ${c ?? "of the data model"}`;
      return new AuthzError("FAILED_PRECONDITION", `${where}: ${text}`, {
        cause: err,
        ...(special?.code === "FAILED_PRECONDITION" ? { reason: special.reason } : {}),
      });
    }
    case "42501":
      return new AuthzError("PERMISSION_DENIED", "the credential's tenant cannot change these rows", { reason: "OTHER_TENANT", cause: err });
    case "40001":
    case "40P01":
      return new AuthzError("ABORTED", "concurrent write, retry", { cause: err });
    case "22P02":
    case "22007":
    case "22008":
    case "22021":
    case "22001":
    case "22003":
      return new AuthzError("INVALID_ARGUMENT", `${where}: a value has the wrong form or is out of range`, { cause: err });
    default:
      return err;
  }
}
