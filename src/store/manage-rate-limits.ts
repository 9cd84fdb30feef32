// ManageRateLimits: an atomic batch of policy and assignment changes, in
// domain types, run through the one write pipeline (src/store/write-pipeline.ts:
// lock, idempotency, confinement, expected_revision, one error mapping).
// The engine sees the result through the change log like every other write.

import {
  FAILURE_MODES,
  type FailureMode,
  RATE_LIMIT_ALGORITHMS,
  RATE_LIMIT_SCOPES,
  type RateLimitAlgorithm,
  type RateLimitScope,
} from "../engine/rate-limit-policies.js";
import { invalidArgument } from "../errors.js";
import type { SqlClient, SqlQuerier } from "./sql.js";
import type { WriteConfinement } from "./tenant-lookup.js";
import { INTERNAL_WRITER, refusal, runBatch, validateBatch, type WriteCaller } from "./write-pipeline.js";
import { MAX_TEXT_BYTES, optional, text, uuid } from "../validation.js";

export interface PolicyFields {
  scope?: RateLimitScope;
  limitCount?: number;
  windowSec?: number;
  description?: string;
  algorithm?: RateLimitAlgorithm;
  failureMode?: FailureMode;
  shadow?: boolean;
}

export type RateLimitMutation =
  | ({ kind: "upsertPolicy"; name: string } & PolicyFields)
  | { kind: "deletePolicy"; name: string }
  | { kind: "assign" | "unassign"; policy: string; subject: { type: string; id: string } };

export interface ManageRateLimitsInput {
  mutations: RateLimitMutation[];
  idempotencyKey?: string;
  expectedRevision?: string;
}

export interface ManageRateLimitsResult {
  revision: string;
  results: Array<{ policyId: number; changed: boolean }>;
}

export { MAX_MUTATIONS } from "./write-pipeline.js";
/** A policy's name: what ManageRateLimits, ConsumeRateLimit and Envoy's descriptors name it by (the importer holds names to it too). */
export const POLICY_NAME = /^[A-Za-z0-9._:-]{1,128}$/;
export const POLICY_NAME_RULE = 'must be 1 to 128 characters of letters, digits and "._:-"';
const MAX_LIMIT = 2_147_483_647;
const MAX_WINDOW_SEC = 31_536_000;

const FIELD: Record<RateLimitMutation["kind"], string> = {
  upsertPolicy: "upsert_policy",
  deletePolicy: "delete_policy",
  assign: "assign",
  unassign: "unassign",
};

/** Where a mutation's fields are, in messages: mutations[i].<its oneof case>. */
const pathOf = (m: RateLimitMutation, i: number) => `mutations[${i}].${FIELD[m.kind]}`;

function name(v: unknown, path: string): string {
  if (typeof v !== "string" || !POLICY_NAME.test(v)) throw invalidArgument(`${path} ${POLICY_NAME_RULE}`, path);
  return v;
}

function intIn(v: unknown, min: number, max: number, path: string): number | undefined {
  if (v === undefined || v === 0) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw invalidArgument(`${path} must be between ${min} and ${max}`, path);
  return v;
}

function oneOf<T extends string>(values: readonly T[], v: unknown, path: string): T | undefined {
  if (v === undefined || v === "") return undefined;
  if (!(values as readonly unknown[]).includes(v)) throw invalidArgument(`${path} must be one of ${values.join(", ")}`, path);
  return v as T;
}

function validateMutation(m: RateLimitMutation, i: number): RateLimitMutation {
  if (typeof m !== "object" || m === null || !Object.hasOwn(FIELD, m.kind)) {
    throw invalidArgument(`mutations[${i}] must set exactly one change (${Object.values(FIELD).join(", ")})`, `mutations[${i}]`);
  }
  const p = pathOf(m, i);
  switch (m.kind) {
    case "upsertPolicy": {
      const out: RateLimitMutation = { kind: m.kind, name: name(m.name, `${p}.name`) };
      const scope = oneOf(RATE_LIMIT_SCOPES, m.scope, `${p}.scope`);
      const limitCount = intIn(m.limitCount, 1, MAX_LIMIT, `${p}.limit_count`);
      const windowSec = intIn(m.windowSec, 1, MAX_WINDOW_SEC, `${p}.window_sec`);
      const algorithm = oneOf(RATE_LIMIT_ALGORITHMS, m.algorithm, `${p}.algorithm`);
      const failureMode = oneOf(FAILURE_MODES, m.failureMode, `${p}.failure_mode`);
      const description = text(m.description, `${p}.description`, MAX_TEXT_BYTES);
      if (m.shadow !== undefined && typeof m.shadow !== "boolean") throw invalidArgument(`${p}.shadow must be true or false`, `${p}.shadow`);
      return {
        ...out,
        ...(scope ? { scope } : {}),
        ...(limitCount ? { limitCount } : {}),
        ...(windowSec ? { windowSec } : {}),
        ...optional("description", description),
        ...(algorithm ? { algorithm } : {}),
        ...(failureMode ? { failureMode } : {}),
        ...(m.shadow !== undefined ? { shadow: m.shadow } : {}),
      };
    }
    case "deletePolicy":
      return { kind: m.kind, name: name(m.name, p) };
    case "assign":
    case "unassign": {
      const s = m.subject;
      if (typeof s !== "object" || s === null) throw invalidArgument(`${p}.subject is required`, `${p}.subject`);
      if (s.type !== "user" && s.type !== "organization") throw invalidArgument(`${p}.subject.type must be "user" or "organization"`, `${p}.subject.type`);
      return { kind: m.kind, policy: name(m.policy, `${p}.policy`), subject: { type: s.type, id: uuid(s.id, `${p}.subject.id`) } };
    }
  }
}

export function validateManageRateLimits(input: ManageRateLimitsInput): ManageRateLimitsInput {
  return validateBatch(input, validateMutation);
}

type PolicyRow = {
  id: number;
  name: string;
  scope: RateLimitScope;
  limit_count: number;
  window_sec: number;
  description: string | null;
  algorithm: RateLimitAlgorithm;
  failure_mode: FailureMode;
  shadow: boolean;
};

const POLICY_COLUMNS = "id, name, scope, limit_count, window_sec, description, algorithm, failure_mode, shadow";

async function policyByName(tx: SqlQuerier, n: string): Promise<PolicyRow | undefined> {
  const rows = await tx.query<PolicyRow>(`select ${POLICY_COLUMNS} from rate_limit_policies where name = $1::text`, [n]);
  const r = rows[0];
  return r && { ...r, id: Number(r.id), limit_count: Number(r.limit_count), window_sec: Number(r.window_sec), shadow: r.shadow === true };
}

/** Which holders a policy of this scope may be assigned to. */
function fits(scope: RateLimitScope, holder: "user" | "organization"): boolean {
  return scope === "global" || scope === holder;
}

async function apply(tx: SqlQuerier, m: RateLimitMutation, i: number): Promise<{ policyId: number; changed: boolean }> {
  const p = pathOf(m, i);
  switch (m.kind) {
    case "upsertPolicy": {
      const cur = await policyByName(tx, m.name);
      return cur ? updatePolicy(tx, m, cur, p) : insertPolicy(tx, m, p);
    }
    case "deletePolicy": {
      const rows = await tx.query<{ id: number }>("delete from rate_limit_policies where name = $1::text returning id", [m.name]);
      return { policyId: rows[0] ? Number(rows[0].id) : 0, changed: rows.length > 0 };
    }
    case "assign":
    case "unassign":
      return changeAssignment(tx, m, p);
  }
}

type UpsertPolicy = Extract<RateLimitMutation, { kind: "upsertPolicy" }>;
type AssignmentChange = Extract<RateLimitMutation, { kind: "assign" | "unassign" }>;

/** A new policy: scope, limit and window are required, the rest default. */
async function insertPolicy(tx: SqlQuerier, m: UpsertPolicy, p: string): Promise<{ policyId: number; changed: boolean }> {
  const missing = (["scope", "limitCount", "windowSec"] as const).filter((f) => m[f] === undefined);
  if (missing.length > 0) {
    const snake = { scope: "scope", limitCount: "limit_count", windowSec: "window_sec" } as const;
    throw refusal("INVALID_ARGUMENT", `${p}: a new policy needs ${missing.map((f) => `${p}.${snake[f]}`).join(", ")}`);
  }
  const rows = await tx.query<{ id: number }>(
    `insert into rate_limit_policies (name, scope, limit_count, window_sec, description, algorithm, failure_mode, shadow)
     values ($1::text, $2::text, $3::text::integer, $4::text::integer, $5::text, $6::text, $7::text, $8::text::boolean)
     on conflict (name) do nothing
     returning id`,
    [
      m.name,
      m.scope,
      String(m.limitCount),
      String(m.windowSec),
      m.description ?? null,
      m.algorithm ?? "fixed_window",
      m.failureMode ?? "open",
      String(m.shadow ?? false),
    ],
  );
  // Not there when looked up, there now: a concurrent write created this policy. A retry updates it.
  if (rows.length === 0) throw refusal("ABORTED", `${p}: rate-limit policy "${m.name}" was created by a concurrent write; retry`, "ABORTED");
  return { policyId: Number(rows[0]?.id), changed: true };
}

/** An existing policy: the fields the mutation sets change, the others stay; changed only when a value differs. */
async function updatePolicy(tx: SqlQuerier, m: UpsertPolicy, cur: PolicyRow, p: string): Promise<{ policyId: number; changed: boolean }> {
  const next = {
    scope: m.scope ?? cur.scope,
    limit_count: m.limitCount ?? cur.limit_count,
    window_sec: m.windowSec ?? cur.window_sec,
    description: m.description ?? cur.description,
    algorithm: m.algorithm ?? cur.algorithm,
    failure_mode: m.failureMode ?? cur.failure_mode,
    shadow: m.shadow ?? cur.shadow,
  };
  if (next.scope !== cur.scope) await checkScopeFitsHolders(tx, cur, next.scope, p);
  const rows = await tx.query(
    `update rate_limit_policies
        set scope = $2::text, limit_count = $3::text::integer, window_sec = $4::text::integer, description = $5::text,
            algorithm = $6::text, failure_mode = $7::text, shadow = $8::text::boolean
      where id = $1::text::integer
        and (scope, limit_count, window_sec, description, algorithm, failure_mode, shadow)
            is distinct from ($2::text, $3::text::integer, $4::text::integer, $5::text, $6::text, $7::text, $8::text::boolean)
      returning id`,
    [String(cur.id), next.scope, String(next.limit_count), String(next.window_sec), next.description, next.algorithm, next.failure_mode, String(next.shadow)],
  );
  return { policyId: cur.id, changed: rows.length > 0 };
}

/** A policy's new scope must fit every holder it is assigned to (a key policy has none). */
async function checkScopeFitsHolders(tx: SqlQuerier, cur: PolicyRow, scope: RateLimitScope, p: string): Promise<void> {
  const held = await tx.query<{ holder: string; n: string }>(
    `select case when user_id is not null then 'user' else 'organization' end as holder, count(*)::text as n
       from rate_limit_assignments where policy_id = $1::text::integer group by 1`,
    [String(cur.id)],
  );
  const misfit = held.find((h) => !fits(scope, h.holder as "user" | "organization"));
  if (misfit || (scope === "key" && held.length > 0)) {
    throw refusal(
      "FAILED_PRECONDITION",
      `${p}.scope: policy "${cur.name}" is assigned to ${held.map((h) => `${h.n} ${h.holder}(s)`).join(" and ")}; scope ${scope} does not fit them (unassign first)`,
      "POLICY_SCOPE_MISMATCH",
    );
  }
}

async function changeAssignment(tx: SqlQuerier, m: AssignmentChange, p: string): Promise<{ policyId: number; changed: boolean }> {
  const policy = await policyByName(tx, m.policy);
  if (!policy) throw refusal("NOT_FOUND", `${p}.policy: rate-limit policy "${m.policy}" not found`, "POLICY_NOT_FOUND");
  const holder = m.subject.type as "user" | "organization";
  const column = holder === "user" ? "user_id" : "org_id";
  if (m.kind === "unassign") {
    const rows = await tx.query(`delete from rate_limit_assignments where policy_id = $1::text::integer and ${column} = $2::text::uuid returning id`, [
      String(policy.id),
      m.subject.id,
    ]);
    return { policyId: policy.id, changed: rows.length > 0 };
  }
  if (!fits(policy.scope, holder)) {
    throw refusal(
      "FAILED_PRECONDITION",
      `${p}: policy "${policy.name}" has scope ${policy.scope} and cannot be assigned to ${holder === "user" ? "a user" : "an organization"}` +
        (policy.scope === "key" ? " (key policies are used by name)" : ""),
      "POLICY_SCOPE_MISMATCH",
    );
  }
  const exists = await tx.query(`select 1 from ${holder === "user" ? "users" : "organizations"} where id = $1::text::uuid`, [m.subject.id]);
  if (exists.length === 0) throw refusal("NOT_FOUND", `${p}.subject: ${holder} ${m.subject.id} not found`);
  const rows = await tx.query(
    `insert into rate_limit_assignments (policy_id, ${column}) values ($1::text::integer, $2::text::uuid)
       on conflict on constraint rate_limit_assignments_unique do nothing returning id`,
    [String(policy.id), m.subject.id],
  );
  return { policyId: policy.id, changed: rows.length > 0 };
}

/**
 * Confinement: policies are global rows, so a tenant-bound caller may not
 * create, change or delete them; it may assign them only to organizations of
 * its tenant (a user belongs to no tenant), and never one of scope global.
 */
async function confineMutation(c: WriteConfinement, m: RateLimitMutation, i: number): Promise<void> {
  const p = pathOf(m, i);
  if (m.kind === "upsertPolicy" || m.kind === "deletePolicy") return c.global(`${p}: rate-limit policy "${m.name}" (policies are global)`);
  await c.policy(m.policy, `${p}.policy: rate-limit policy "${m.policy}" of scope global (one counter shared by every tenant)`);
  if (m.subject.type === "organization") return c.organization(m.subject.id, `${p}.subject: organization ${m.subject.id}`);
  return c.global(`${p}.subject: user ${m.subject.id} (users belong to no tenant)`);
}

/** Applies the batch atomically; returns the revision it committed at and one result per mutation. */
export async function manageRateLimits(db: SqlClient, raw: ManageRateLimitsInput, caller: WriteCaller = INTERNAL_WRITER): Promise<ManageRateLimitsResult> {
  return runBatch(db, caller, validateManageRateLimits(raw), { rpc: "ManageRateLimits", field: (m) => FIELD[m.kind], confine: confineMutation, apply });
}
