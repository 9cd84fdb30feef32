// Typed wrappers over the public RPCs the console uses, in their proto3 JSON
// shape (lowerCamelCase fields, enums as names, int64 as strings). Pages call
// these, never fetch; a service that lands later (the Directory API,
// LookupSubjects) adds its wrappers here and its page checks has(path).

import { call } from "./api.js";

export interface Ref {
  type: string;
  id: string;
}

/** Consistency for a read: at least as fresh as `revision` (a write's answer) when given. */
export const freshness = (revision?: string) => (revision ? { consistency: { atLeastAsFresh: revision } } : {});

export interface ExplanationStep {
  kind: string;
  id?: string;
  key?: string;
  scope?: Ref;
}

export interface CheckAnswer {
  allowed?: boolean;
  revision: string;
  reason: string;
  explanation?: { steps?: ExplanationStep[]; message?: string };
}

export const PATHS = {
  check: "/authz.v1.PermissionService/Check",
  listPermissions: "/authz.v1.PermissionService/ListPermissions",
  lookupSubjects: "/authz.v1.PermissionService/LookupSubjects",
  manageRoles: "/authz.v1.AdminService/ManageRoles",
  transferOwnership: "/authz.v1.AdminService/TransferOwnership",
  listOwnershipTransfers: "/authz.v1.AdminService/ListOwnershipTransfers",
  getRateLimitCounters: "/authz.v1.RateLimitService/GetRateLimitCounters",
  listRoles: "/authz.v1.DirectoryService/ListRoles",
  listRateLimitPolicies: "/authz.v1.DirectoryService/ListRateLimitPolicies",
} as const;

export function check(subject: Ref, permission: string, resource: Ref, revision?: string): Promise<CheckAnswer> {
  return call(PATHS.check, { subject, permission, resource, explain: true, ...freshness(revision) });
}

export interface ScopePermissions {
  orgId: string;
  orgName?: string;
  urlSafeOrgName?: string;
  orgRoleStructure?: string;
  scope?: Ref;
  userRole?: string;
  inheritedUserRolesPlusCurrentRole?: string[];
  userPermissions?: string[];
  additionalRoles?: string[];
}

export interface PermissionsPage {
  scopes?: ScopePermissions[];
  revision: string;
  nextPageToken?: string;
  subjectStatus: string;
}

export function listPermissions(subject: Ref, opts: { resource?: Ref; pageSize: number; pageToken?: string; revision?: string }): Promise<PermissionsPage> {
  return call(PATHS.listPermissions, {
    subject,
    ...(opts.resource ? { resource: opts.resource } : {}),
    pageSize: opts.pageSize,
    ...(opts.pageToken ? { pageToken: opts.pageToken } : {}),
    ...freshness(opts.revision),
  });
}

export interface RoleKey {
  organizationId: string;
  key: string;
}

export type RoleMutation =
  | { assignRole: { subject: Ref; role: { key: RoleKey }; scope?: Ref; validUntil?: string } }
  | { unassignRole: { assignmentId: string } | { subject: Ref; role: { key: RoleKey }; scope?: Ref } };

export interface WriteAnswer {
  revision: string;
  results?: Array<{ id?: string; changed?: boolean }>;
}

export function manageRoles(mutations: RoleMutation[]): Promise<WriteAnswer> {
  return call(PATHS.manageRoles, { mutations });
}

export interface Transfer {
  id: string;
  avatarId: string;
  fromMembershipId: string;
  toMembershipId: string;
  status: string;
  occurredAt?: string;
  createdAt?: string;
  expiresAt?: string;
}

export function transferOwnership(req: {
  avatarId: string;
  fromMembershipId: string;
  toMembershipId: string;
  mode: string;
}): Promise<{ transfer: Transfer; revision: string }> {
  return call(PATHS.transferOwnership, req);
}

export function listOwnershipTransfers(avatarId: string, pageSize: number, pageToken?: string): Promise<{ transfers?: Transfer[]; nextPageToken?: string }> {
  return call(PATHS.listOwnershipTransfers, { avatarId, pageSize, ...(pageToken ? { pageToken } : {}) });
}

export interface Counter {
  policy: string;
  policyId?: number;
  subject?: Ref;
  windowStart?: string;
  count?: string;
  lastUpdated?: string;
  previousCount?: string;
  limit?: string;
  remaining?: string;
  resetAfter?: string;
  algorithm?: string;
}

export function getRateLimitCounters(req: { policy?: string; subject: Ref; organizationId?: string }): Promise<{ counters?: Counter[]; revision: string }> {
  return call(PATHS.getRateLimitCounters, req);
}

/** DirectoryService.ListRoles (branch directory): one page of an organization's roles with their direct parents. */
export interface Role {
  id: string;
  organizationId?: string;
  key: string;
  name?: string;
  permissionKeys?: string[];
  parentRoleIds?: string[];
}

export function listRoles(organizationId: string, pageSize: number, pageToken?: string): Promise<{ roles?: Role[]; revision: string; nextPageToken?: string }> {
  return call(PATHS.listRoles, { organizationId, pageSize, ...(pageToken ? { pageToken } : {}) });
}
