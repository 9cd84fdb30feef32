// Plausible values per field for the fuzz test's generator, from the demo
// data, so that a good share of the random requests reach past validation
// into the engine, the database and Redis.

import { DEMO } from "./demo-decisions.js";
import type { Pools } from "./fuzz-messages.js";

const { user: U, org: O, avatar: A, tenant: T, staff: S, principal: P } = DEMO;
const MISSING = "0000ffff-0000-4000-8000-00000000beef";

const UUIDS = [U.alice, U.bob, U.carol, O.eng, O.sales, A.acmeBot, A.engNews, T.acme, S.tess, P.bobEng, MISSING, "not-a-uuid"];
const TYPES = ["user", "organization", "avatar", "tenant", "account", "principal", "staff", "key", "robot"];
const PERMISSIONS = ["members.read", "members.invite", "billing.manage", "org.delete", "avatar.post", "support.read", "no.such.permission"];
const ROLE_KEYS = ["owner", "admin", "member", "billing", "fuzz-role"];
const POLICIES = ["api-per-user", "login-attempts", "api-per-org", "export-per-user", "no-such-policy"];
const REFS = [`user:${U.alice}`, `user:${U.carol}`, `staff:${S.tess}`, `organization:${O.eng}`, "alice", "user:not-a-uuid"];

const HEADER_VALUES: Record<string, readonly string[]> = {
  "x-authz-subject": REFS,
  "x-authz-resource": [`organization:${O.eng}`, `avatar:${A.acmeBot}`, "org:42"],
  // Revision tokens never ahead of the database: that wait is another change's subject (src/store/live-engine.ts).
  "x-authz-at-least-as-fresh": ["", "1", "zed"],
  "x-login-email": ["a@example.com", ""],
};

const EXTENSIONS: Record<string, readonly string[]> = {
  authz_route: ["members-read", "eng-members", "no-such-route"],
  authz_permission: PERMISSIONS,
  authz_resource: ["organization:{org}", `organization:${O.eng}`, "{header:x-authz-resource}", "{nope}"],
  authz_path: ["/orgs/{org}/members", "/x/**", "orgs"],
  authz_public: ["true", "false"],
  authz_rate_limit_policy: POLICIES,
  authz_rate_limit_subject: ["{subject}", "key:login:{header:x-login-email}"],
  authz_rate_limit_cost: ["1", "9999999", "x"],
};

const BY_FIELD: Record<string, readonly string[]> = {
  type: TYPES,
  id: UUIDS,
  organization_id: UUIDS,
  avatar_id: UUIDS,
  transfer_id: UUIDS,
  from_membership_id: UUIDS,
  to_membership_id: UUIDS,
  assignment_id: UUIDS,
  sub: [U.alice, U.bob, `user:${U.alice}`],
  permission: PERMISSIONS,
  key: [...PERMISSIONS, ...ROLE_KEYS, "policy", "user", "organization", "remote_address"],
  value: [...POLICIES, U.bob, O.sales, "authz"],
  name: [...ROLE_KEYS, ...POLICIES, "Fuzz Role"],
  policy: POLICIES,
  delete_policy: POLICIES,
  scope: ["user", "organization", "key", "global"],
  description: ["a role", ""],
  // Never ahead of the database (see above).
  at_least_as_fresh: ["", "0", "1", "2", "abc"],
  expected_revision: ["", "0", "1", "abc"],
  idempotency_key: ["fuzz-1", "fuzz-2", MISSING],
  page_token: ["", "abc", "eyJ4IjoxfQ"],
  correlation_id: ["c1", ""],
  service: ["", "authz.v1.PermissionService", "no.such.Service"],
  domain: ["authz", "edge"],
  method: ["GET", "POST", "DELETE", "get"],
  path: [`/orgs/${O.eng}/members`, `/orgs/${O.eng}/members?x=1`, "/login", "/healthz", "/things/x", "/nowhere", `/avatars/${A.acmeBot}/posts/1`],
  principal: ["spiffe://cluster.local/ns/ops/sa/support-console", ""],
  "headers.key": [...Object.keys(HEADER_VALUES), ":path", "content-type"],
  "context_extensions.key": Object.keys(EXTENSIONS),
  "filter_metadata.key": ["envoy.filters.http.jwt_authn", "other"],
  json_key: ["jwt_payload", "sub", "a"],
};

export const FUZZ_POOLS: Pools = (field, key) => {
  if (key !== undefined && field === "headers") return HEADER_VALUES[key] ?? ["v"];
  if (key !== undefined && field === "context_extensions") return EXTENSIONS[key] ?? ["v"];
  return BY_FIELD[field];
};

/** A JSON-ish AuthZEN subject/resource/action. */
export const AUTHZEN_POOLS = { uuids: UUIDS, types: TYPES, permissions: PERMISSIONS };

/** The mapping file the fuzzed server uses for Envoy (as test/envoy.test.ts's, smaller). */
export const FUZZ_MESH = {
  subject: [
    { from: "header", header: "x-authz-subject", set_by_sidecar: true },
    { from: "jwt", claim: "sub", type: "user" },
    { from: "peer", principals: { "spiffe://cluster.local/ns/ops/sa/support-console": `staff:${S.tess}` } },
  ],
  routes: [
    { name: "members-read", method: ["GET", "HEAD"], path: "/orgs/{org}/members", permission: "members.read", resource: "organization:{org}" },
    {
      name: "members-invite",
      method: "POST",
      path: "/orgs/{org}/members",
      permission: "members.invite",
      resource: "organization:{org}",
      rate_limit: { policy: "api-per-user", cost: 1 },
    },
    { name: "things", path: "/things/**", permission: "members.read", resource: "{header:x-authz-resource}" },
    { name: "login", method: "POST", path: "/login", public: true, rate_limit: { policy: "login-attempts", subject: "key:login:{header:x-login-email}" } },
    { name: "healthz", path: "/healthz", public: true },
    { name: "eng-members", permission: "members.read", resource: `organization:${O.eng}` },
  ],
};
