// The engine's own vocabulary. rpc/ translates the generated API messages to
// and from these; the engine never sees protobuf.

export const SUBJECT_TYPES = ["user", "account", "principal", "staff"] as const;
export type SubjectType = (typeof SUBJECT_TYPES)[number];
export const RESOURCE_TYPES = ["tenant", "organization", "avatar"] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];
export type ScopeType = "global" | ResourceType;

export interface SubjectRef {
  readonly type: SubjectType;
  readonly id: string;
}

export interface ResourceRef {
  readonly type: ResourceType;
  readonly id: string;
}

/** Why a decision came out as it did, in the order the rules are checked. */
export const REASONS = [
  "GRANTED",
  "NO_GRANT",
  "SUBJECT_NOT_FOUND",
  "RESOURCE_NOT_FOUND",
  "PERMISSION_NOT_FOUND",
  "SUBJECT_LOCKED",
  "SUBJECT_DISABLED",
  "ACCOUNT_INACTIVE",
  "PRINCIPAL_INACTIVE",
  "NOT_ACCEPTED",
  "PRINCIPAL_EXPIRED",
  "RESOURCE_INACTIVE",
] as const;
export type Reason = (typeof REASONS)[number];

export type StepKind = "ASSIGNMENT" | "MEMBERSHIP" | "ROLE" | "INHERITED_ROLE" | "PERMISSION";

export interface Step {
  readonly kind: StepKind;
  /** UUID of the assignment, membership, role or permission. */
  readonly id: string;
  /** Role or permission key. */
  readonly key?: string;
  /** For assignments and memberships: where the grant was made (undefined = global). */
  readonly scope?: ResourceRef;
}

export interface Decision {
  readonly allowed: boolean;
  readonly reason: Reason;
  /** With explain: the path of an allow. */
  readonly steps?: readonly Step[];
}

/** What a subject holds on one scope, in the shape of seed 000's UserOrganizationInfo. */
export interface ScopeEntry {
  /** undefined = a global grant. */
  readonly scope: ResourceRef | undefined;
  readonly orgId: string | undefined;
  readonly orgName: string;
  readonly urlSafeOrgName: string;
  readonly orgRoleStructure: string;
  readonly userRole: string;
  readonly inheritedUserRolesPlusCurrentRole: readonly string[];
  readonly userPermissions: readonly string[];
  readonly additionalRoles: readonly string[];
}

export interface Listing {
  /** GRANTED when the subject can act; otherwise why it holds nothing (entries are then empty). */
  readonly subjectStatus: Reason;
  readonly entries: readonly ScopeEntry[];
}

/** Built-in roles held through avatar memberships (migration 0002). */
export const AVATAR_MEMBER_ROLE_KEY = "avatar_member";
export const AVATAR_OWNER_ROLE_KEY = "avatar_owner";
