// node-casbin on the engine benchmark's dataset (bench/dataset.ts): the same
// generated rows loaded into an RBAC-with-domains model (domain =
// organization, role hierarchy through g), the same random Check workload,
// checks/s, latency, load time and memory, and the decisions compared with
// the engine's on a sample.
//
// Two ways to write the dataset as casbin policy, both read from the same rows:
//
//   per-org    faithful: every organization's roles and grants are its own
//              policy lines (`p, viewer, <org id>, doc.read`), as they are its
//              own rows in authz; 11 p lines per organization.
//   template   casbin's idiom when every domain shares one role design: one
//              `p, viewer, org, doc.read` line per (role key, permission key),
//              role links still per organization. Legal here only because every
//              generated organization has the same grants; the loader checks
//              that and refuses otherwise. Best case for casbin.
//
// What casbin cannot express is applied by the loader, as an application would
// have to: assignments of locked or disabled users, inactive assignments and
// assignments past valid_until are left out (casbin has no user status and no
// expiry); tenants and user_organizations (primary roles) are not needed by
// these checks and not loaded.
//
// Runs in a child process per (variant, scale) from bench/run.ts; see
// casbinPhase().

import { type Adapter, type Enforcer, type Model, newEnforcer, newModelFromString } from "casbin";

import {
  type CheckQuery,
  type DatasetShape,
  GLOBAL_PERMS,
  ORG_PERM_KEYS,
  assignmentAt,
  datasetShape,
  datasetTables,
  globalPermKey,
  makeChecks,
  rowCounts,
  userEnabled,
  userLocked,
} from "./dataset.js";

export const CASBIN_VARIANTS = ["template", "per-org"] as const;
export type CasbinVariant = (typeof CASBIN_VARIANTS)[number];

/** Domain of the global roles and permissions (no organization has this id). */
const GLOBAL = "global";
/** p.dom of the template variant's organization grants. */
const ORG = "org";

/**
 * RBAC with domains: g = user-or-role, role, domain; role hierarchy through g
 * lines between roles of one domain. The cheap string tests come first so
 * casbin's evaluator skips g() for policy lines of other permissions.
 */
export function casbinModelText(variant: CasbinVariant): string {
  const orgTest = variant === "per-org" ? "p.dom == r.dom" : `p.dom == "${ORG}"`;
  return `[request_definition]
r = sub, dom, act

[policy_definition]
p = sub, dom, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.act == p.act && (${orgTest} && g(r.sub, p.sub, r.dom) || p.dom == "${GLOBAL}" && g(r.sub, p.sub, "${GLOBAL}"))
`;
}

type Row = Record<string, unknown>;

export interface CasbinLoadCounts {
  p: number;
  g: number;
  /** role_assignments rows left out, by reason. */
  droppedUserStatus: number;
  droppedInactive: number;
  droppedExpired: number;
}

/** An Adapter that reads the dataset's rows (the same lazy rows buildEngine gets) and pushes policy lines. */
class DatasetAdapter implements Adapter {
  counts: CasbinLoadCounts = { p: 0, g: 0, droppedUserStatus: 0, droppedInactive: 0, droppedExpired: 0 };
  constructor(
    private readonly shape: DatasetShape,
    private readonly variant: CasbinVariant,
    private readonly now: number,
    private readonly keepUnsupported = false,
  ) {}

  async loadPolicy(model: Model): Promise<void> {
    const p = model.model.get("p")?.get("p")?.policy;
    const g = model.model.get("g")?.get("g")?.policy;
    if (!p || !g) throw new Error("casbin model without p or g");
    const t = datasetTables(this.shape);
    // Lookups the rows need (dropped before memory is measured).
    const roles = new Map<string, { key: string; dom: string }>();
    for (const r of t.roles as Iterable<Row>) roles.set(r["id"] as string, { key: r["key"] as string, dom: (r["organization_id"] as string | null) ?? GLOBAL });
    const perms = new Map<string, string>();
    for (const r of t.permissions as Iterable<Row>) perms.set(r["id"] as string, r["key"] as string);
    const deniedUsers = new Set<string>();
    for (const u of t.users as Iterable<Row>) if (u["locked"] === true || u["enabled"] === false) deniedUsers.add(u["id"] as string);

    if (this.variant === "per-org") {
      for (const rp of t.role_permissions as Iterable<Row>) {
        const role = roles.get(rp["role_id"] as string);
        const perm = perms.get(rp["permission_id"] as string);
        if (!role || !perm) throw new Error("role_permissions row names an unknown role or permission");
        p.push([role.key, role.dom, perm]);
      }
    } else {
      // One line per (role key, domain kind, permission key); every organization must hold the same set.
      const lines = new Map<string, string[]>();
      const perOrg = new Map<string, number>();
      for (const rp of t.role_permissions as Iterable<Row>) {
        const role = roles.get(rp["role_id"] as string);
        const perm = perms.get(rp["permission_id"] as string);
        if (!role || !perm) throw new Error("role_permissions row names an unknown role or permission");
        const dom = role.dom === GLOBAL ? GLOBAL : ORG;
        lines.set(`${role.key}\u0000${dom}\u0000${perm}`, [role.key, dom, perm]);
        if (dom === ORG) perOrg.set(role.dom, (perOrg.get(role.dom) ?? 0) + 1);
      }
      const templateSize = [...lines.values()].filter((l) => l[1] === ORG).length;
      for (const [org, n] of perOrg) {
        if (n !== templateSize)
          throw new Error(`template variant: organization ${org} has ${n} grants, the template ${templateSize}: organizations differ, use per-org`);
      }
      for (const l of lines.values()) p.push(l);
    }
    for (const e of t.role_inheritance as Iterable<Row>) {
      const child = roles.get(e["role_id"] as string);
      const parent = roles.get(e["parent_role_id"] as string);
      if (!child || !parent || child.dom !== parent.dom) throw new Error("role_inheritance row across domains or unknown");
      g.push([child.key, parent.key, child.dom]);
    }
    for (const a of t.role_assignments as Iterable<Row>) {
      const subject = a["subject_id"] as string;
      if (this.keepUnsupported) {
        // no filtering: what casbin would decide if the loader ignored user status, active and valid_until
      } else if (deniedUsers.has(subject)) {
        this.counts.droppedUserStatus++;
        continue;
      } else if (a["active"] !== true) {
        this.counts.droppedInactive++;
        continue;
      } else if (a["valid_until"] !== null && Date.parse(a["valid_until"] as string) <= this.now) {
        this.counts.droppedExpired++;
        continue;
      }
      const role = roles.get(a["role_id"] as string);
      if (!role) throw new Error("role_assignments row names an unknown role");
      const dom = a["scope_type"] === "global" ? GLOBAL : (a["scope_id"] as string);
      if (dom !== role.dom) throw new Error("assignment scope differs from its role's organization");
      g.push([subject, role.key, dom]);
    }
    this.counts.p = p.length;
    this.counts.g = g.length;
  }
  async savePolicy(): Promise<boolean> {
    return false;
  }
  async addPolicy(): Promise<void> {}
  async removePolicy(): Promise<void> {}
  async removeFilteredPolicy(): Promise<void> {}
}

export interface CasbinPhaseArg {
  scale: number;
  variant: CasbinVariant;
  /** Stop the throughput loop after this many checks ... */
  maxChecks: number;
  /** ... or after this long, whichever comes first (the per-org variant is linear in the number of p lines). */
  maxMs: number;
  /** The engine's decisions on makeChecks(shape, n, 7)[0..sampleN), one bit each, base64. */
  engineDecisions: string;
  sampleN: number;
  /** Load every assignment, ignoring user status, active and valid_until (to show what the loader's filters account for). */
  keepUnsupported?: boolean;
}

export interface CasbinPhaseResult {
  scale: number;
  variant: CasbinVariant;
  assignments: number;
  load: CasbinLoadCounts;
  loadMs: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  maxRss: number;
  checks: number;
  checksMs: number;
  checksPerSec: number;
  p50Us: number;
  p99Us: number;
  allowedShare: number;
  /** Queries whose decision was compared with the engine's, and how many agreed. */
  compared: number;
  agreed: number;
  /** With keepUnsupported: the disagreements the dataset's formulas predict from the three filters, by cause, and any they do not. */
  unfiltered?: { disagreements: number; userStatus: number; inactive: number; expired: number; unexplained: number };
  /** First few disagreements, for the report. */
  disagreements: Array<{ subject: string; permission: string; resource: string; engine: boolean; casbin: boolean; expected: boolean }>;
}

const gc = (): void => {
  const f = (globalThis as { gc?: () => void }).gc;
  if (f) {
    f();
    f();
  }
};

export function decisionBits(decisions: readonly boolean[]): string {
  const b = Buffer.alloc(Math.ceil(decisions.length / 8));
  decisions.forEach((d, i) => {
    if (d) b[i >> 3] = (b[i >> 3] as number) | (1 << (i & 7));
  });
  return b.toString("base64");
}

function bitAt(bits: Buffer, i: number): boolean {
  return (((bits[i >> 3] as number) >> (i & 7)) & 1) === 1;
}

/** The same query array the engine's in-process phase cycles through. */
export const CHECK_QUERIES = 1 << 18;
export const CHECK_SEED = 7;

export async function casbinPhase(arg: CasbinPhaseArg): Promise<CasbinPhaseResult> {
  const shape = datasetShape(arg.scale);
  const now = Date.now();
  const log = (l: string) => process.stderr.write(`  casbin ${arg.variant} @${arg.scale}: ${l}\n`);
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  const adapter = new DatasetAdapter(shape, arg.variant, now, arg.keepUnsupported ?? false);
  let enforcer: Enforcer | undefined = await newEnforcer(newModelFromString(casbinModelText(arg.variant)), adapter);
  const loadMs = performance.now() - t0;
  gc();
  const after = process.memoryUsage();
  const maxRss = process.resourceUsage().maxRSS * 1024;
  log(`loaded ${adapter.counts.p} p and ${adapter.counts.g} g lines in ${(loadMs / 1000).toFixed(1)} s, heap ${(after.heapUsed / 2 ** 20).toFixed(0)} MiB`);

  // The queries are made after the memory reading, as in the engine's phase.
  const Q: CheckQuery[] = makeChecks(shape, CHECK_QUERIES, CHECK_SEED);
  // Throughput and latency from one loop over the query array: each enforceSync timed alone.
  const e = enforcer;
  const lat = new Float64Array(arg.maxChecks);
  const decisions: boolean[] = [];
  let allowed = 0;
  const warmEnd = performance.now() + arg.maxMs / 10;
  for (let i = 0; i < 2000 && i < arg.maxChecks / 10 && performance.now() < warmEnd; i++) {
    const q = Q[i] as CheckQuery;
    e.enforceSync(q.subject.id, q.resource.id, q.permission); // warm-up
  }
  const start = performance.now();
  const deadline = start + arg.maxMs;
  let n = 0;
  while (n < arg.maxChecks) {
    const q = Q[n % Q.length] as CheckQuery;
    const s = performance.now();
    const d = e.enforceSync(q.subject.id, q.resource.id, q.permission);
    const end = performance.now();
    lat[n] = (end - s) * 1000;
    if (d) allowed++;
    if (n < arg.sampleN) decisions.push(d);
    n++;
    if (end > deadline) break;
  }
  const checksMs = performance.now() - start;
  const sorted = lat.subarray(0, n).sort();
  const pct = (p: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] ?? NaN;
  // Agreement with the engine on the sample (topped up outside the timed loop if the loop ran short, up to 2 s more).
  const bits = Buffer.from(arg.engineDecisions, "base64");
  const topUpEnd = performance.now() + 2000;
  while (decisions.length < arg.sampleN && performance.now() < topUpEnd) {
    const q = Q[decisions.length] as CheckQuery;
    decisions.push(e.enforceSync(q.subject.id, q.resource.id, q.permission));
  }
  let agreed = 0;
  const disagreements: CasbinPhaseResult["disagreements"] = [];
  decisions.forEach((d, i) => {
    const engine = bitAt(bits, i);
    if (d === engine) agreed++;
    else if (disagreements.length < 5) {
      const q = Q[i] as CheckQuery;
      disagreements.push({ subject: q.subject.id, permission: q.permission, resource: q.resource.id, engine, casbin: d, expected: q.expected });
    }
  });
  let unfiltered: CasbinPhaseResult["unfiltered"];
  if (arg.keepUnsupported) {
    const u = { disagreements: decisions.length - agreed, userStatus: 0, inactive: 0, expired: 0, unexplained: 0 };
    decisions.forEach((d, i) => {
      const f = filterless(shape, Q[i] as CheckQuery);
      if (d !== f.allowed) u.unexplained++;
      else if (d !== bitAt(bits, i) && f.cause) u[f.cause]++;
    });
    unfiltered = u;
  }
  log(
    `${n} checks in ${(checksMs / 1000).toFixed(1)} s: ${(n / (checksMs / 1000)).toFixed(0)}/s, p50 ${pct(50).toFixed(1)} µs; agreement ${agreed}/${decisions.length}`,
  );
  enforcer = undefined;
  return {
    scale: arg.scale,
    variant: arg.variant,
    assignments: rowCounts(shape).role_assignments,
    load: adapter.counts,
    loadMs,
    before,
    after,
    maxRss,
    checks: n,
    checksMs,
    checksPerSec: n / (checksMs / 1000),
    p50Us: pct(50),
    p99Us: pct(99),
    allowedShare: allowed / Math.max(1, n),
    compared: decisions.length,
    agreed,
    ...(unfiltered ? { unfiltered } : {}),
    disagreements,
  };
}

const indexOfId = (id: string): number => parseInt(id.slice(-12), 16);

/**
 * The decision of a loader without the three filters, from the dataset's
 * formulas (the twin of expectedAllowed), and when that differs from the real
 * decision, why: the only granting assignments belong to a locked or disabled
 * user, or are inactive, or expired.
 */
export function filterless(s: DatasetShape, q: CheckQuery): { allowed: boolean; cause?: "userStatus" | "inactive" | "expired" } {
  const u = indexOfId(q.subject.id);
  const o = indexOfId(q.resource.id);
  const p = (ORG_PERM_KEYS as readonly string[]).indexOf(q.permission);
  let g = -1;
  for (let i = 0; i < GLOBAL_PERMS; i++) if (globalPermKey(i) === q.permission) g = i;
  let allowed = false;
  let cause: "userStatus" | "inactive" | "expired" | undefined;
  for (let j = 0; j < s.assignmentsPerUser; j++) {
    const a = assignmentAt(s, j * s.users + u);
    const grants = a.global ? g >= 0 && g < (a.globalRole === 0 ? 20 : 10) : a.org === o && (p >= 0 ? p < (5 - a.role) * 2 : g === 0);
    if (!grants) continue;
    allowed = true;
    const c = userLocked(u) || !userEnabled(u) ? "userStatus" : !a.active ? "inactive" : a.expired ? "expired" : undefined;
    if (c === undefined) return { allowed: true };
    cause ??= c;
  }
  return cause ? { allowed, cause } : { allowed };
}
