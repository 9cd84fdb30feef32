// Wrappers of the Directory API (authz.v1.DirectoryService) and of
// LookupSubjects, in proto3 JSON. Their pages are offered only when the
// server binds these RPCs (has(path)).

import { call } from "./api.js";
import { freshness, type Ref } from "./rpcs.js";

const DIR = "/authz.v1.DirectoryService";

export const DIRECTORY_PATHS = {
  manageDirectory: `${DIR}/ManageDirectory`,
  listTenants: `${DIR}/ListTenants`,
  listOrganizations: `${DIR}/ListOrganizations`,
  listOrganizationMembers: `${DIR}/ListOrganizationMembers`,
  getUser: `${DIR}/GetUser`,
  listAvatars: `${DIR}/ListAvatars`,
  getAvatar: `${DIR}/GetAvatar`,
  listMemberships: `${DIR}/ListMemberships`,
  lookupSubjects: "/authz.v1.PermissionService/LookupSubjects",
} as const;

export interface Page {
  revision: string;
  nextPageToken?: string;
}

const paging = (pageSize: number, pageToken?: string, revision?: string) => ({ pageSize, ...(pageToken ? { pageToken } : {}), ...freshness(revision) });

export interface Tenant {
  id: string;
  name?: string;
  slug?: string;
}

export function listTenants(pageSize: number, pageToken?: string): Promise<Page & { tenants?: Tenant[] }> {
  return call(DIRECTORY_PATHS.listTenants, paging(pageSize, pageToken));
}

export interface Organization {
  id: string;
  tenantId?: string;
  name?: string;
  slug?: string;
  roleStructure?: string;
}

export function listOrganizations(tenantId: string, pageSize: number, pageToken?: string): Promise<Page & { organizations?: Organization[] }> {
  return call(DIRECTORY_PATHS.listOrganizations, { tenantId, ...paging(pageSize, pageToken) });
}

export interface Member {
  userId: string;
  orgId?: string;
  userRole?: string;
  inheritedUserRolesPlusCurrentRole?: string[];
  userPermissions?: string[];
  additionalRoles?: string[];
}

export function listMembers(organizationId: string, pageSize: number, pageToken?: string): Promise<Page & { members?: Member[] }> {
  return call(DIRECTORY_PATHS.listOrganizationMembers, { organizationId, ...paging(pageSize, pageToken) });
}

export interface User {
  id: string;
  email?: string;
  username?: string;
  firstName?: string;
  lastName?: string;
  locked?: boolean;
  enabled?: boolean;
  lastActiveAt?: string;
}

export function getUser(by: { id: string } | { email: string }, revision?: string): Promise<{ user: User; revision: string }> {
  return call(DIRECTORY_PATHS.getUser, { ...by, ...freshness(revision) });
}

export interface Avatar {
  id: string;
  organizationId?: string;
  handle?: string;
  active?: boolean;
}

export function listAvatars(organizationId: string, pageSize: number, pageToken?: string): Promise<Page & { avatars?: Avatar[] }> {
  return call(DIRECTORY_PATHS.listAvatars, { organizationId, ...paging(pageSize, pageToken) });
}

export interface Membership {
  id: string;
  principalId: string;
  avatarId: string;
  owner?: boolean;
  active?: boolean;
  acceptedAt?: string;
  validUntil?: string;
}

export function getAvatar(id: string, revision?: string): Promise<{ avatar: Avatar; owner?: Membership; revision: string }> {
  return call(DIRECTORY_PATHS.getAvatar, { id, ...freshness(revision) });
}

export function listMemberships(
  avatarId: string,
  pageSize: number,
  pageToken?: string,
  revision?: string,
): Promise<Page & { memberships?: Membership[]; currentOwner?: Membership }> {
  return call(DIRECTORY_PATHS.listMemberships, { avatarId, ...paging(pageSize, pageToken, revision) });
}

export type DirectoryMutation =
  | { setUserStatus: { userId: string; locked?: boolean; enabled?: boolean } }
  | { inviteMembership: { avatarId: string; principalId: string } }
  | { acceptMembership: { id: string } }
  | { revokeMembership: { id: string } };

export function manageDirectory(mutations: DirectoryMutation[]): Promise<{ revision: string }> {
  return call(DIRECTORY_PATHS.manageDirectory, { mutations });
}

export interface LookedUpSubject {
  subject: Ref;
  grant?: { kind: string; id: string; roleId?: string };
}

export function lookupSubjects(req: {
  permission: string;
  resource: Ref;
  subjectType?: string;
  pageSize: number;
  pageToken?: string;
}): Promise<Page & { subjects?: LookedUpSubject[] }> {
  return call(DIRECTORY_PATHS.lookupSubjects, { ...req, withGrants: true });
}

export interface RateLimitPolicy {
  id: number;
  name: string;
  scope?: string;
  limitCount?: number;
  windowSec?: number;
  description?: string;
  algorithm?: string;
  failureMode?: string;
  shadow?: boolean;
}

export const LIST_RATE_LIMIT_POLICIES = `${DIR}/ListRateLimitPolicies`;

export function listRateLimitPolicies(pageSize: number, pageToken?: string): Promise<Page & { policies?: RateLimitPolicy[] }> {
  return call(LIST_RATE_LIMIT_POLICIES, paging(pageSize, pageToken));
}
