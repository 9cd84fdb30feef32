// Watch (issue 15): the committed changes, in revision order, from the change
// log. The stream reads the log by its key up to the newest revision the
// change feed has seen handed out (src/store/change-stream.ts) and waits for
// the feed to move on; the feed learns of revisions by notification and, when
// the listener is lost, by its polls, so a lost listener delays a change but
// never drops or reorders one. docs/watch.md describes the contract.

import { type WatchRequest, WatchOperation, type WatchResponseSchema, type WatchService } from "../../gen/authz/v1/watch_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AuthzError, invalidArgument, printablePrefix } from "../errors.js";
import type { ChangeFeed } from "../store/change-feed.js";
import { type LoggedChange, type LogPosition, readChanges, TRACKED_TABLES } from "../store/change-stream.js";
import type { LiveEngine } from "../store/live-engine.js";
import type { SqlClient } from "../store/sql.js";
import { watchedTenant } from "../tenancy.js";
import { REVISION, UUID } from "../validation.js";
import type { CallContext, ServiceHandlers } from "./handler-types.js";
import { confineRead } from "./tenancy.js";

export const DEFAULT_HEARTBEAT_MS = 5000;
const MIN_HEARTBEAT_MS = 100;
const MAX_HEARTBEAT_MS = 60_000;
/** Changes per message (and per read of the log). */
export const WATCH_BATCH = 1000;

export interface WatchDeps {
  db: () => SqlClient;
  feed: () => ChangeFeed;
  live: () => LiveEngine;
  /** Aborted when the server shuts down: open streams end with UNAVAILABLE, to be resumed elsewhere. */
  closing?: AbortSignal;
}

interface WatchQuery {
  from: bigint | undefined;
  tenant: string | null;
  organization: string | undefined;
  tables: ReadonlySet<string> | undefined;
  heartbeatMs: number;
}

const optionalUuid = (v: string, field: string): string | undefined => {
  if (v === "") return undefined;
  if (!UUID.test(v)) throw invalidArgument(`${field} must be empty or a UUID, got "${printablePrefix(v)}"`, field);
  return v.toLowerCase();
};

function watchQuery(req: WatchRequest, ctx: CallContext, live: LiveEngine): WatchQuery {
  if (req.fromRevision !== "" && !REVISION.test(req.fromRevision)) {
    throw invalidArgument(`from_revision must be empty or a revision returned by authz, got "${printablePrefix(req.fromRevision)}"`, "from_revision");
  }
  for (const t of req.tables) {
    if (!(TRACKED_TABLES as readonly string[]).includes(t)) {
      throw invalidArgument(`tables holds "${printablePrefix(t)}", which is not one of ${TRACKED_TABLES.join(", ")}`, "tables");
    }
  }
  const hb = req.heartbeatMs;
  if (hb !== 0 && (hb < MIN_HEARTBEAT_MS || hb > MAX_HEARTBEAT_MS)) {
    throw invalidArgument(`heartbeat_ms must be 0 or between ${MIN_HEARTBEAT_MS} and ${MAX_HEARTBEAT_MS}, got ${hb}`, "heartbeat_ms");
  }
  const organization = optionalUuid(req.organizationId, "organization_id");
  const tenant = watchedTenant(ctx.caller, optionalUuid(req.tenantId, "tenant_id"));
  if (organization) confineRead(ctx, live.current(), undefined, { type: "organization", id: organization });
  return {
    from: req.fromRevision === "" ? undefined : BigInt(req.fromRevision),
    tenant,
    organization,
    tables: req.tables.length > 0 ? new Set(req.tables) : undefined,
    heartbeatMs: hb || DEFAULT_HEARTBEAT_MS,
  };
}

/** Whether a watcher gets the change; a bulk import's RELOAD reaches every watcher (it may have changed anything). */
const matches = (q: WatchQuery, c: LoggedChange): boolean =>
  c.op === "RELOAD" ||
  ((q.tables === undefined || q.tables.has(c.table)) &&
    (q.tenant === null || c.tenantId === q.tenant) &&
    (q.organization === undefined || c.organizationId === q.organization));

const OPERATION = {
  INSERT: WatchOperation.INSERT,
  UPDATE: WatchOperation.UPDATE,
  DELETE: WatchOperation.DELETE,
  TRUNCATE: WatchOperation.TRUNCATE,
  RELOAD: WatchOperation.RELOAD,
} as const;

function changeMessage(c: LoggedChange) {
  return {
    revision: c.revision.toString(),
    table: c.table,
    operation: OPERATION[c.op],
    ids: c.ids,
    tenantId: c.tenantId ?? "",
    organizationId: c.organizationId ?? "",
  };
}

/** The revision to start after: the newest one when none is given; INVALID_ARGUMENT beyond the newest. */
async function startRevision(feed: ChangeFeed, from: bigint | undefined): Promise<bigint> {
  if (from === undefined) return feed.fetchLatest();
  if (from <= feed.revision) return from;
  const head = await feed.fetchLatest();
  if (from > head) {
    throw new AuthzError("INVALID_ARGUMENT", `from_revision ${from} is newer than this deployment's newest revision ${head}`, {
      reason: "UNKNOWN_REVISION",
      metadata: { field: "from_revision" },
    });
  }
  return from;
}

/** Resolves when the feed passes `revision`, after `ms`, or when the call ends. */
function advanceOrTimeout(feed: ChangeFeed, revision: bigint, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      off();
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const off = feed.onAdvance((r) => {
      if (r > revision) done();
    });
    signal.addEventListener("abort", done);
    if (feed.revision > revision || signal.aborted) done();
  });
}

type Message = MessageInitShape<typeof WatchResponseSchema>;

/** The stream: an opening heartbeat, then every matching change in log order, heartbeats while idle. */
async function* follow(q: WatchQuery, deps: WatchDeps, ctx: CallContext): AsyncGenerator<Message> {
  const feed = deps.feed();
  const ended = deps.closing ? AbortSignal.any([ctx.signal, deps.closing]) : ctx.signal;
  let pos: LogPosition = { revision: await startRevision(feed, q.from) };
  // Every matching change up to `complete` has been sent.
  let complete = pos.revision;
  yield { changes: [], revision: complete.toString() };
  let lastSent = Date.now();
  while (!ended.aborted) {
    const head = feed.revision;
    const rows = await readChanges(deps.db(), pos, head, WATCH_BATCH + 1);
    const more = rows.length > WATCH_BATCH;
    const batch = more ? rows.slice(0, WATCH_BATCH) : rows;
    const last = batch[batch.length - 1];
    if (more && last) {
      pos = { revision: last.revision, id: last.id };
      complete = (rows[WATCH_BATCH] as LoggedChange).revision - 1n;
    } else {
      // Everything up to head is read (pos never passes the feed's revision).
      pos = { revision: head };
      complete = head;
    }
    const changes = batch.filter((c) => matches(q, c));
    if (changes.length > 0 || Date.now() - lastSent >= q.heartbeatMs) {
      yield { changes: changes.map(changeMessage), revision: complete.toString() };
      lastSent = Date.now();
    }
    if (more) continue;
    await advanceOrTimeout(feed, pos.revision, Math.max(0, q.heartbeatMs - (Date.now() - lastSent)), ended);
  }
  if (!ctx.signal.aborted) {
    throw new AuthzError("UNAVAILABLE", `the server is shutting down; resume the watch from revision ${complete} on another replica`, {
      metadata: { revision: complete.toString() },
    });
  }
}

export function watchHandlers(deps: WatchDeps): ServiceHandlers<typeof WatchService> {
  return {
    async *watch(req, ctx) {
      const q = watchQuery(req, ctx, deps.live());
      yield* follow(q, deps, ctx);
    },
  };
}
