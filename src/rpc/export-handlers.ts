// AdminService/ExportDirectory at the edge: the export (src/store/export.ts)
// streamed as pages of JSON records, at most a page in flight ahead of the
// caller (the read transaction waits for the stream, and ends when the
// caller goes away); then, when asked, the live rate-limit counters of the
// exported policy assignments, read from the counter store.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ExportDirectoryRequest, ExportDirectoryResponseSchema } from "../../gen/authz/v1/admin_service_pb.js";
import { ANONYMOUS } from "../auth/caller.js";
import { type AppliedPolicy, type CounterOwner, GLOBAL_OWNER, toRatePolicy } from "../engine/rate-limit-policies.js";
import { counterStoreUnavailable, readCounters } from "../ratelimit/limiter.js";
import { MAX_COUNTERS_PER_CALL, type RateLimitStore } from "../ratelimit/store.js";
import { type ExportPage, exportDirectory } from "../store/export.js";
import type { SqlClient } from "../store/sql.js";
import { otherTenant } from "../tenancy.js";
import { uuid } from "../validation.js";
import type { CallContext } from "./handler-types.js";

type Out = MessageInitShape<typeof ExportDirectoryResponseSchema>;

/** Most bytes of records_json in one message (a page is split above it). */
const MAX_JSON_BYTES = 1 << 20;

/** The tenant to export: a bound caller's own (naming another is PERMISSION_DENIED), else the one asked for, else all. */
function tenantOf(req: ExportDirectoryRequest, ctx: CallContext): string | null {
  const bound = (ctx.caller ?? ANONYMOUS).tenantId;
  const asked = req.tenantId === "" ? null : uuid(req.tenantId, "tenant_id");
  if (bound && asked !== null && asked !== bound) throw otherTenant(bound, `tenant ${asked}`);
  return bound ?? asked;
}

/** One page as messages of at most MAX_JSON_BYTES of JSON each. */
function messages(p: ExportPage, revision: string): Out[] {
  const out: Out[] = [];
  let parts: string[] = [];
  let bytes = 0;
  const flush = () => {
    if (parts.length > 0) out.push({ section: p.section, recordsJson: `[${parts.join(",")}]`, revision });
    parts = [];
    bytes = 0;
  };
  for (const r of p.records) {
    const json = JSON.stringify(r);
    if (bytes + json.length > MAX_JSON_BYTES) flush();
    parts.push(json);
    bytes += json.length + 1;
  }
  flush();
  return out;
}

/**
 * The counters of the exported assignments (per user and organization) and of global policies.
 * A user's counters are kept per tenant: a tenant's export reads the user's counter of that tenant,
 * a whole export the user's counter outside any tenant.
 */
export function countersOf(pages: ExportPage[], tenantId: string | null = null): AppliedPolicy[] {
  const policies = new Map<number, ReturnType<typeof toRatePolicy>>();
  for (const r of pages.filter((p) => p.section === "RateLimitPolicy").flatMap((p) => p.records)) {
    const row = r as { policy_id: number; name: string; scope: string; limit_count: number; window_sec: number; algorithm: string; failure_mode: string };
    policies.set(
      row.policy_id,
      toRatePolicy({
        id: row.policy_id,
        name: row.name,
        scope: row.scope,
        limitCount: row.limit_count,
        windowSec: row.window_sec,
        algorithm: row.algorithm,
        failureMode: row.failure_mode,
        shadow: (r as { shadow: boolean }).shadow,
        description: null,
      }),
    );
  }
  const applied: AppliedPolicy[] = [];
  for (const p of policies.values()) if (p.scope === "global") applied.push({ policy: p, owner: GLOBAL_OWNER });
  for (const r of pages.filter((p) => p.section === "RateLimitAssignment").flatMap((p) => p.records)) {
    const a = r as { policy_id: number; user_id: string | null; org_id: string | null };
    const policy = policies.get(a.policy_id);
    const owner: CounterOwner = a.user_id
      ? { type: "user", id: a.user_id, ...(tenantId ? { tenantId } : {}) }
      : { type: "organization", id: a.org_id as string };
    if (policy) applied.push({ policy, owner });
  }
  return applied;
}

const iso = (us: number) => new Date(Math.floor(us / 1000)).toISOString();

/** RateLimitCounter records (seed 000 shape) of the live counters that hold something. */
export async function counterPage(store: RateLimitStore, applied: AppliedPolicy[]): Promise<ExportPage> {
  const records: Array<Record<string, unknown>> = [];
  for (let i = 0; i < applied.length; i += MAX_COUNTERS_PER_CALL) {
    for (const c of await readCounters(store, applied.slice(i, i + MAX_COUNTERS_PER_CALL))) {
      if (c.windowStartUs === 0) continue;
      const owner = c.owner.type === "user" ? { user_id: c.owner.id } : c.owner.type === "organization" ? { org_id: c.owner.id } : {};
      records.push({ policy_id: c.policy.id, ...owner, window_start: iso(c.windowStartUs), count: c.count, last_updated: iso(c.lastUpdatedUs) });
    }
  }
  return { section: "RateLimitCounter", records };
}

/**
 * Runs the export in the background, handing pages over one at a time: the
 * export waits while a page is unread, and stops (rolling back its read)
 * when the stream is abandoned.
 */
export function pageChannel(run: (onPage: (p: ExportPage, revision: string) => Promise<void>) => Promise<unknown>) {
  let pending: { page: ExportPage; revision: string } | undefined;
  let taken: (() => void) | undefined;
  let arrived: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  let abandoned = false;
  const done = run(async (page, revision) => {
    if (abandoned) throw new Error("the export stream was abandoned");
    pending = { page, revision };
    arrived?.();
    await new Promise<void>((resolve) => {
      taken = resolve;
    });
  }).then(
    () => undefined,
    (err: unknown) => {
      failure = err;
    },
  );
  void done.finally(() => {
    finished = true;
    arrived?.();
  });
  return {
    async next(): Promise<{ page: ExportPage; revision: string } | undefined> {
      while (!pending && !finished) await new Promise<void>((resolve) => (arrived = resolve));
      const got = pending;
      pending = undefined;
      taken?.();
      if (got) return got;
      if (failure !== undefined) throw failure;
      return undefined;
    },
    abandon() {
      abandoned = true;
      taken?.();
    },
  };
}

/** How long an export with counters waits for a store that is reconnecting before it refuses. */
const COUNTER_STORE_WAIT_MS = 1000;

/**
 * Refuses an export with counters before its first page when the counter
 * store is known to be unreachable (disconnected, or its breaker open), so
 * that the caller gets an error, not a directory cut off before the counters
 * (the CLI writes pages as they come). A store lost during the export still
 * fails the stream at the end.
 */
async function counterStoreReachable(store: RateLimitStore): Promise<void> {
  const state = store.state();
  if (state === "breaker_open" || (state === "down" && !(await store.ready(COUNTER_STORE_WAIT_MS)))) throw counterStoreUnavailable();
}

/** ExportDirectory: db is read per call so the handler can be built before the pool. */
export function exportDirectoryHandler(db: () => SqlClient, store: RateLimitStore): (req: ExportDirectoryRequest, ctx: CallContext) => AsyncIterable<Out> {
  return async function* exportStream(req, ctx) {
    const tenantId = tenantOf(req, ctx);
    if (req.includeCounters) await counterStoreReachable(store);
    const keep: ExportPage[] = [];
    const channel = pageChannel((onPage) => exportDirectory(db(), { tenantId }, onPage));
    let revision = "0";
    try {
      for (let got = await channel.next(); got; got = await channel.next()) {
        revision = got.revision;
        if (req.includeCounters && (got.page.section === "RateLimitPolicy" || got.page.section === "RateLimitAssignment")) keep.push(got.page);
        yield* messages(got.page, got.revision);
      }
    } finally {
      channel.abandon();
    }
    if (req.includeCounters) yield* messages(await counterPage(store, countersOf(keep, tenantId)), revision);
  };
}
