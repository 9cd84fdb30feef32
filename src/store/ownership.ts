// Avatar ownership transfers (seed 003 OWNERSHIP_TRANSFER), in domain types:
// TransferOwnership (immediate, or a pending request), Accept/Decline/Cancel
// of a pending request, the history listing and the expiry sweep.
//
// Every write runs through the one write pipeline (write-pipeline.ts: the
// writers' lock, idempotency, confinement), then locks the avatar row: all
// authz writers take locks in the same order, so they serialize without
// deadlocks, and every rule below is checked against data no other writer
// can change before this transaction commits. The database enforces the
// invariant too (migration 0003: avatars_exactly_one_owner).
// rpc/ownership-handlers.ts translates the generated messages; docs/ownership.md
// describes the behaviour for callers.

import { AuthzError, invalidArgument, type ReasonOf } from "../errors.js";
import { idempotencyKey, optional, pageSize, UUID, uuid } from "../validation.js";
import type { SqlClient, SqlQuerier } from "./sql.js";
import type { WriteConfinement } from "./tenant-lookup.js";
import { CommittedRefusal, idempotencyScope, INTERNAL_WRITER, runWrite, type WriteCaller } from "./write-pipeline.js";

export const TRANSFER_STATUSES = ["pending", "completed", "declined", "cancelled", "expired"] as const;
export type TransferStatus = (typeof TRANSFER_STATUSES)[number];
export type TransferMode = "immediate" | "request";

/** One recorded transfer. Times have millisecond precision. */
export interface OwnershipTransfer {
  id: string;
  avatarId: string;
  fromMembershipId: string;
  toMembershipId: string;
  status: TransferStatus;
  /** When the transfer reached its final state; null while pending. */
  occurredAt: Date | null;
  createdAt: Date;
  /** For a request: when it expires (null for an immediate transfer). */
  expiresAt: Date | null;
}

export interface TransferResult {
  transfer: OwnershipTransfer;
  /** The revision the write committed at. */
  revision: string;
}

export interface TransferOwnershipInput {
  avatarId: string;
  fromMembershipId: string;
  toMembershipId: string;
  /** Default "immediate". */
  mode?: TransferMode;
  idempotencyKey?: string;
  /** Request mode only: how long the request stays open; the caller's default applies when absent. */
  requestTtlMs?: number;
}

export interface TransferOwnershipOptions {
  /** TTL of a request when the caller gives none (config AUTHZ_TRANSFER_TTL_SECONDS × 1000). */
  defaultRequestTtlMs: number;
}

export interface TransferActionInput {
  transferId: string;
  idempotencyKey?: string;
}

export interface ListTransfersInput {
  avatarId: string;
  /** 0 or absent: 50; above 500: 500. */
  pageSize?: number;
  /** "" or absent: the first page. */
  pageToken?: string;
}

export interface ListTransfersResult {
  transfers: OwnershipTransfer[];
  /** "" on the last page. */
  nextPageToken: string;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_REQUEST_TTL_MS = 365 * 24 * 3600 * 1000;
export const MIN_REQUEST_TTL_MS = 1000;

/** A timestamp column as UTC ISO-8601 text with microseconds: exact, and parsed the same by every driver. */
const iso = (expr: string): string => `to_char((${expr}) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/** Checks and normalizes a TransferOwnership input; throws INVALID_ARGUMENT naming the field. */
export function validateTransferOwnership(input: TransferOwnershipInput): TransferOwnershipInput & { mode: TransferMode } {
  const avatarId = uuid(input.avatarId, "avatar_id");
  const fromMembershipId = uuid(input.fromMembershipId, "from_membership_id");
  const toMembershipId = uuid(input.toMembershipId, "to_membership_id");
  const mode = input.mode ?? "immediate";
  if (mode !== "immediate" && mode !== "request") throw invalidArgument("mode must be TRANSFER_MODE_IMMEDIATE or TRANSFER_MODE_REQUEST", "mode");
  if (fromMembershipId === toMembershipId) {
    const message = "to_membership_id equals from_membership_id: ownership cannot be transferred to the membership that holds it";
    throw new AuthzError("INVALID_ARGUMENT", message, {
      reason: "SELF_TRANSFER",
      metadata: { field: "to_membership_id" },
    });
  }
  let requestTtlMs: number | undefined;
  if (input.requestTtlMs !== undefined) {
    if (mode !== "request") throw invalidArgument("request_ttl applies only to TRANSFER_MODE_REQUEST", "request_ttl");
    const ttl = input.requestTtlMs;
    if (!Number.isFinite(ttl) || ttl < MIN_REQUEST_TTL_MS || ttl > MAX_REQUEST_TTL_MS) {
      throw invalidArgument("request_ttl must be between 1 second and 365 days", "request_ttl");
    }
    requestTtlMs = Math.round(ttl);
  }
  return {
    avatarId,
    fromMembershipId,
    toMembershipId,
    mode,
    ...optional("idempotencyKey", idempotencyKey(input.idempotencyKey)),
    ...optional("requestTtlMs", requestTtlMs),
  };
}

function validateAction(input: TransferActionInput): TransferActionInput {
  return { transferId: uuid(input.transferId, "transfer_id"), ...optional("idempotencyKey", idempotencyKey(input.idempotencyKey)) };
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

type TransferRow = {
  id: string;
  avatar_id: string;
  from_membership_id: string;
  to_membership_id: string;
  status: TransferStatus;
  occurred_at: string | null;
  created_at: string;
  expires_at: string | null;
  /** True when pending and its expires_at is not after the transaction's now. */
  lapsed?: boolean;
};

const TRANSFER_COLUMNS = `id::text as id, avatar_id::text as avatar_id, from_membership_id::text as from_membership_id,
  to_membership_id::text as to_membership_id, status, ${iso("occurred_at")} as occurred_at,
  ${iso("created_at")} as created_at, ${iso("expires_at")} as expires_at`;

/** ISO text with microseconds → Date (milliseconds; sub-millisecond digits dropped). */
function date(text: string): Date {
  return new Date(text.replace(/(\.\d{3})\d*Z$/, "$1Z"));
}

function toTransfer(r: TransferRow): OwnershipTransfer {
  return {
    id: r.id,
    avatarId: r.avatar_id,
    fromMembershipId: r.from_membership_id,
    toMembershipId: r.to_membership_id,
    status: r.status,
    occurredAt: r.occurred_at === null ? null : date(r.occurred_at),
    createdAt: date(r.created_at),
    expiresAt: r.expires_at === null ? null : date(r.expires_at),
  };
}

/** A transfer from its stored JSON (authz_idempotency), dates revived. */
function reviveTransfer(stored: unknown): OwnershipTransfer {
  const t = stored as Record<string, unknown>;
  const d = (x: unknown): Date | null => (typeof x === "string" ? new Date(x) : null);
  return {
    id: String(t.id),
    avatarId: String(t.avatarId),
    fromMembershipId: String(t.fromMembershipId),
    toMembershipId: String(t.toMembershipId),
    status: t.status as TransferStatus,
    occurredAt: d(t.occurredAt),
    createdAt: d(t.createdAt) as Date,
    expiresAt: d(t.expiresAt),
  };
}

// ---------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------

const refuse = (message: string, reason: ReasonOf<"FAILED_PRECONDITION">, metadata: Record<string, string> = {}): AuthzError =>
  new AuthzError("FAILED_PRECONDITION", message, { reason, metadata });

/** Locks the avatar row (after the writers' lock); NOT_FOUND / FAILED_PRECONDITION unless it exists and is active. */
async function lockActiveAvatar(tx: SqlQuerier, avatarId: string): Promise<void> {
  const rows = await tx.query<{ active: boolean }>("select active from avatars where id = $1::text::uuid for update", [avatarId]);
  const row = rows[0];
  if (!row) throw new AuthzError("NOT_FOUND", `avatar ${avatarId} not found`, { reason: "AVATAR_NOT_FOUND", metadata: { avatar_id: avatarId } });
  if (!row.active) {
    throw refuse(`avatar ${avatarId} is inactive: its ownership cannot change`, "AVATAR_INACTIVE", { avatar_id: avatarId });
  }
}

/** The avatar's active owner membership (exactly one for an active avatar, by the invariant). */
async function currentOwner(tx: SqlQuerier, avatarId: string): Promise<string | undefined> {
  const rows = await tx.query<{ id: string }>("select id::text as id from memberships where avatar_id = $1::text::uuid and owner and active", [avatarId]);
  return rows[0]?.id;
}

type MembershipState = {
  id: string;
  avatar_id: string;
  active: boolean;
  accepted: boolean;
  unexpired: boolean;
  /** Why the membership's principal cannot act (the engine's reasons), or null. */
  cannot_act: string | null;
  principal_id: string;
};

/**
 * The target membership's state, its rows share-locked until commit (membership, principal, account, and
 * the principal's user): a concurrent write that would change what the rules read (deactivating the
 * principal, locking the user) waits for the transfer, so the transfer is decided on what holds at commit.
 */
async function membership(tx: SqlQuerier, id: string, now: string): Promise<MembershipState | undefined> {
  await tx.query(
    `select 1 from users where id = (select p.user_id from memberships m join principals p on p.id = m.principal_id where m.id = $1::text::uuid) for share`,
    [id],
  );
  const rows = await tx.query<MembershipState>(
    `select m.id::text as id, m.avatar_id::text as avatar_id, m.active,
            (m.accepted_at is not null and m.accepted_at <= $2::text::timestamptz) as accepted,
            (m.valid_until is null or m.valid_until > $2::text::timestamptz) as unexpired,
            case
              when not p.active then 'PRINCIPAL_INACTIVE'
              when p.accepted_at is null or p.accepted_at > $2::text::timestamptz then 'NOT_ACCEPTED'
              when p.valid_until is not null and p.valid_until <= $2::text::timestamptz then 'PRINCIPAL_EXPIRED'
              when not a.active then 'ACCOUNT_INACTIVE'
              when p.subject_type = 'user' and u.locked then 'SUBJECT_LOCKED'
              when p.subject_type = 'user' and not u.enabled then 'SUBJECT_DISABLED'
            end as cannot_act,
            p.id::text as principal_id
       from memberships m
       join principals p on p.id = m.principal_id
       join accounts a on a.id = p.account_id
       left join users u on u.id = p.user_id
      where m.id = $1::text::uuid
        for share of m, p, a`,
    [id, now],
  );
  return rows[0];
}

/** The from membership must be the avatar's current owner. */
async function checkFrom(tx: SqlQuerier, avatarId: string, fromId: string, reason: "STALE_OWNER" | "OWNER_CHANGED"): Promise<void> {
  const owner = await currentOwner(tx, avatarId);
  if (owner === fromId) return;
  if (reason === "STALE_OWNER") {
    const rows = await tx.query<{ avatar_id: string }>("select avatar_id::text as avatar_id from memberships where id = $1::text::uuid", [fromId]);
    const m = rows[0];
    if (!m) {
      throw new AuthzError("NOT_FOUND", `from_membership_id: membership ${fromId} not found`, {
        reason: "MEMBERSHIP_NOT_FOUND",
        metadata: { field: "from_membership_id" },
      });
    }
    if (m.avatar_id !== avatarId) {
      throw refuse(`from_membership_id: membership ${fromId} belongs to another avatar`, "CROSS_AVATAR", { field: "from_membership_id" });
    }
  }
  const meta: Record<string, string> = { field: "from_membership_id", ...(owner ? { current_owner_membership_id: owner } : {}) };
  throw refuse(
    reason === "STALE_OWNER"
      ? `from_membership_id: membership ${fromId} is not the current owner of avatar ${avatarId}; nothing was written`
      : `the transfer's from_membership_id ${fromId} is no longer the owner of avatar ${avatarId}; nothing was written`,
    reason,
    meta,
  );
}

/** The target: another active, accepted, unexpired membership of the same avatar whose principal can act. */
async function checkTarget(tx: SqlQuerier, avatarId: string, toId: string, now: string): Promise<void> {
  const f = "to_membership_id";
  const m = await membership(tx, toId, now);
  if (!m) throw new AuthzError("NOT_FOUND", `${f}: membership ${toId} not found`, { reason: "MEMBERSHIP_NOT_FOUND", metadata: { field: f } });
  if (m.avatar_id !== avatarId) {
    throw refuse(`${f}: membership ${toId} belongs to avatar ${m.avatar_id}, not ${avatarId}`, "CROSS_AVATAR", { field: f });
  }
  if (!m.active) throw refuse(`${f}: membership ${toId} is inactive`, "TARGET_INACTIVE", { field: f });
  if (!m.accepted) throw refuse(`${f}: membership ${toId} has not been accepted`, "TARGET_NOT_ACCEPTED", { field: f });
  if (!m.unexpired) throw refuse(`${f}: membership ${toId} has expired`, "TARGET_EXPIRED", { field: f });
  if (m.cannot_act !== null) {
    throw refuse(`${f}: the principal ${m.principal_id} of membership ${toId} cannot act (${m.cannot_act})`, "PRINCIPAL_CANNOT_ACT", {
      field: f,
      principal_id: m.principal_id,
      principal_reason: m.cannot_act,
    });
  }
}

/** Clears the old owner first (the unique partial index allows one active owner at any moment), then sets the new one. */
async function moveOwnership(tx: SqlQuerier, fromId: string, toId: string): Promise<void> {
  await tx.query("update memberships set owner = false where id = $1::text::uuid", [fromId]);
  await tx.query("update memberships set owner = true where id = $1::text::uuid", [toId]);
}

/**
 * Ends the avatar's pending transfer, if any: expired when its time is up
 * (occurred_at = expires_at), else `otherwise` (occurred_at = now). Returns
 * the pending transfer that is still open when otherwise is null.
 */
async function closePending(tx: SqlQuerier, avatarId: string, now: string, otherwise: "cancelled" | null): Promise<TransferRow | undefined> {
  const rows = await tx.query<TransferRow>(
    `select ${TRANSFER_COLUMNS}, expires_at is not null and expires_at <= $2::text::timestamptz as lapsed
       from ownership_transfers where avatar_id = $1::text::uuid and status = 'pending'`,
    [avatarId, now],
  );
  const p = rows[0];
  if (!p) return undefined;
  if (p.lapsed) {
    await tx.query("update ownership_transfers set status = 'expired', occurred_at = expires_at where id = $1::text::uuid", [p.id]);
    return undefined;
  }
  if (otherwise === null) return p;
  await tx.query("update ownership_transfers set status = $2::text, occurred_at = $3::text::timestamptz where id = $1::text::uuid", [p.id, otherwise, now]);
  return undefined;
}

// ---------------------------------------------------------------------------
// The writes, through the pipeline
// ---------------------------------------------------------------------------

interface TransferWrite {
  rpc: string;
  request: unknown;
  idempotencyKey: string | undefined;
  confine(c: WriteConfinement): Promise<void>;
  body(tx: SqlQuerier, now: string): Promise<OwnershipTransfer | CommittedRefusal>;
  /** An avatar to lock (for update) before the transaction reads its clock. */
  lockFirst?: string;
}

/**
 * Runs one transfer write: the pipeline's idempotency and confinement, then
 * body with the transaction's "now". With lockFirst, the avatar row is locked
 * before the clock is read, so the transfers of one avatar are created in
 * the order they commit (keyset pagination of its history relies on it).
 */
async function writeTransfer(db: SqlClient, caller: WriteCaller, w: TransferWrite): Promise<TransferResult> {
  const { revision, value } = await runWrite(db, caller, {
    rpc: w.rpc,
    request: w.request,
    idempotencyKey: w.idempotencyKey,
    confine: (c) => w.confine(c),
    async apply({ tx, now }) {
      if (w.lockFirst !== undefined) await tx.query("select 1 from avatars where id = $1::text::uuid for update", [w.lockFirst]);
      return w.body(tx, await now());
    },
    revive: reviveTransfer,
  });
  return { transfer: value, revision };
}

/** The value kept in ownership_transfers.idempotency_key: the caller's key within its own scope. */
const storedKey = (caller: WriteCaller, rpc: string, key: string | undefined): string | null =>
  key === undefined ? null : `${idempotencyScope(rpc, caller).split(":")[1]}:${key}`;

async function insertTransfer(
  tx: SqlQuerier,
  v: { avatarId: string; fromId: string; toId: string; status: "completed" | "pending"; now: string; expiresAt: string | null; key: string | null },
): Promise<OwnershipTransfer> {
  const rows = await tx.query<TransferRow>(
    `insert into ownership_transfers
       (avatar_id, from_membership_id, to_membership_id, status, occurred_at, created_at, expires_at, idempotency_key)
     values ($1::text::uuid, $2::text::uuid, $3::text::uuid, $4::text,
             case when $4::text = 'pending' then null else $5::text::timestamptz end, $5::text::timestamptz,
             $6::text::timestamptz, $7::text)
     returning ${TRANSFER_COLUMNS}`,
    [v.avatarId, v.fromId, v.toId, v.status, v.now, v.expiresAt, v.key],
  );
  return toTransfer(rows[0] as TransferRow);
}

// ---------------------------------------------------------------------------
// TransferOwnership
// ---------------------------------------------------------------------------

/**
 * Moves the avatar's ownership from its current owner membership to another
 * of its memberships (immediate mode, status completed, cancelling a pending
 * request of the avatar), or records a pending request the target accepts
 * later (request mode). One transaction; nothing is written on a refusal.
 */
export async function transferOwnership(
  db: SqlClient,
  raw: TransferOwnershipInput,
  options: TransferOwnershipOptions,
  caller: WriteCaller = INTERNAL_WRITER,
): Promise<TransferResult> {
  const input = validateTransferOwnership(raw);
  const ttlMs = input.requestTtlMs ?? options.defaultRequestTtlMs;
  const rpc = "TransferOwnership";
  return writeTransfer(db, caller, {
    rpc,
    request: [input.avatarId, input.fromMembershipId, input.toMembershipId, input.mode, input.requestTtlMs ?? null],
    idempotencyKey: input.idempotencyKey,
    async confine(c) {
      await c.own("avatars", input.avatarId, `avatar_id: avatar ${input.avatarId}`);
      await c.own("memberships", input.fromMembershipId, `from_membership_id: membership ${input.fromMembershipId}`);
      await c.own("memberships", input.toMembershipId, `to_membership_id: membership ${input.toMembershipId}`);
    },
    body: (tx, now) => transferBody(tx, input, ttlMs, now, storedKey(caller, rpc, input.idempotencyKey)),
    lockFirst: input.avatarId,
  });
}

async function transferBody(
  tx: SqlQuerier,
  input: ReturnType<typeof validateTransferOwnership>,
  ttlMs: number,
  now: string,
  key: string | null,
): Promise<OwnershipTransfer> {
  await lockActiveAvatar(tx, input.avatarId);
  await checkFrom(tx, input.avatarId, input.fromMembershipId, "STALE_OWNER");
  await checkTarget(tx, input.avatarId, input.toMembershipId, now);
  const common = { avatarId: input.avatarId, fromId: input.fromMembershipId, toId: input.toMembershipId, now, key };
  if (input.mode === "immediate") {
    await closePending(tx, input.avatarId, now, "cancelled");
    await moveOwnership(tx, input.fromMembershipId, input.toMembershipId);
    return insertTransfer(tx, { ...common, status: "completed", expiresAt: null });
  }
  const open = await closePending(tx, input.avatarId, now, null);
  if (open) {
    throw refuse(`avatar ${input.avatarId} already has a pending transfer ${open.id}; accept, decline or cancel it first`, "TRANSFER_PENDING", {
      transfer_id: open.id,
    });
  }
  const [exp] = await tx.query<{ t: string }>(`select ${iso("$1::text::timestamptz + $2::text::bigint * interval '1 millisecond'")} as t`, [
    now,
    String(ttlMs),
  ]);
  return insertTransfer(tx, { ...common, status: "pending", expiresAt: (exp as { t: string }).t });
}

// ---------------------------------------------------------------------------
// Accept, decline, cancel
// ---------------------------------------------------------------------------

type Action = "accept" | "decline" | "cancel";
const SCOPE: Record<Action, string> = { accept: "AcceptOwnershipTransfer", decline: "DeclineOwnershipTransfer", cancel: "CancelOwnershipTransfer" };

async function act(db: SqlClient, action: Action, raw: TransferActionInput, caller: WriteCaller): Promise<TransferResult> {
  const input = validateAction(raw);
  return writeTransfer(db, caller, {
    rpc: SCOPE[action],
    request: [input.transferId],
    idempotencyKey: input.idempotencyKey,
    confine: (c) => c.own("ownership_transfers", input.transferId, `transfer_id: transfer ${input.transferId}`),
    body: (tx, now) => actBody(tx, action, input.transferId, now),
  });
}

async function actBody(tx: SqlQuerier, action: Action, transferId: string, now: string): Promise<OwnershipTransfer | CommittedRefusal> {
  // Lock order as every transfer writer: the avatar, then the transfer row. The transfer is read again under
  // its row lock, so a concurrent accept, decline, cancel, immediate transfer or membership revocation that
  // committed meanwhile is seen (its status, or its absence), never overwritten.
  const [owner] = await tx.query<{ avatar_id: string }>("select avatar_id::text as avatar_id from ownership_transfers where id = $1::text::uuid", [transferId]);
  if (owner) await tx.query("select 1 from avatars where id = $1::text::uuid for update", [owner.avatar_id]);
  const rows = owner
    ? await tx.query<TransferRow>(
        `select ${TRANSFER_COLUMNS}, expires_at is not null and expires_at <= $2::text::timestamptz as lapsed
           from ownership_transfers where id = $1::text::uuid for update`,
        [transferId, now],
      )
    : [];
  const t = rows[0];
  if (!t) {
    throw new AuthzError("NOT_FOUND", `transfer ${transferId} not found`, {
      reason: "TRANSFER_NOT_FOUND",
      metadata: { field: "transfer_id" },
    });
  }
  const meta = { transfer_id: t.id, status: t.status };
  if (t.status === "expired") throw refuse(`transfer ${t.id} expired at ${t.expires_at ?? "?"}`, "TRANSFER_EXPIRED", meta);
  if (t.status !== "pending") throw refuse(`transfer ${t.id} is ${t.status}, not pending`, "TRANSFER_NOT_PENDING", meta);
  if (t.lapsed) {
    // Its time is up: record that (committed), then refuse.
    await tx.query("update ownership_transfers set status = 'expired', occurred_at = expires_at where id = $1::text::uuid", [t.id]);
    return new CommittedRefusal(refuse(`transfer ${t.id} expired at ${t.expires_at ?? "?"}`, "TRANSFER_EXPIRED", { ...meta, status: "expired" }));
  }
  let status: TransferStatus;
  if (action === "accept") {
    await lockActiveAvatar(tx, t.avatar_id);
    await checkFrom(tx, t.avatar_id, t.from_membership_id, "OWNER_CHANGED");
    await checkTarget(tx, t.avatar_id, t.to_membership_id, now);
    await moveOwnership(tx, t.from_membership_id, t.to_membership_id);
    status = "completed";
  } else {
    status = action === "decline" ? "declined" : "cancelled";
  }
  const updated = await tx.query<TransferRow>(
    `update ownership_transfers set status = $2::text, occurred_at = $3::text::timestamptz
      where id = $1::text::uuid returning ${TRANSFER_COLUMNS}`,
    [t.id, status, now],
  );
  return toTransfer(updated[0] as TransferRow);
}

/** The target accepts a pending transfer: ownership moves (status completed). */
export const acceptOwnershipTransfer = (db: SqlClient, input: TransferActionInput, caller: WriteCaller = INTERNAL_WRITER): Promise<TransferResult> =>
  act(db, "accept", input, caller);
/** The target declines a pending transfer (status declined); ownership stays. */
export const declineOwnershipTransfer = (db: SqlClient, input: TransferActionInput, caller: WriteCaller = INTERNAL_WRITER): Promise<TransferResult> =>
  act(db, "decline", input, caller);
/** The owner cancels a pending transfer (status cancelled); ownership stays. */
export const cancelOwnershipTransfer = (db: SqlClient, input: TransferActionInput, caller: WriteCaller = INTERNAL_WRITER): Promise<TransferResult> =>
  act(db, "cancel", input, caller);

// ---------------------------------------------------------------------------
// Expiry sweep
// ---------------------------------------------------------------------------

/**
 * Marks pending transfers whose expires_at is at or before `now` (default: the
 * database clock) as expired, with occurred_at = expires_at. Returns how many.
 * Takes the writers' lock only when there is something to expire, so a timer
 * on every replica costs one indexed read per tick.
 */
export async function expirePendingTransfers(db: SqlClient, now?: Date): Promise<number> {
  const at = now === undefined ? null : now.toISOString();
  const due = `status = 'pending' and expires_at <= coalesce($1::text::timestamptz, clock_timestamp())`;
  const any = await db.query(`select 1 from ownership_transfers where ${due} limit 1`, [at]);
  if (any.length === 0) return 0;
  const { value } = await runWrite(db, INTERNAL_WRITER, {
    rpc: "ExpireTransfers",
    request: null,
    async apply({ tx }) {
      const rows = await tx.query(`update ownership_transfers set status = 'expired', occurred_at = expires_at where ${due} returning id`, [at]);
      return rows.length;
    },
  });
  return value;
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

interface PageToken {
  /** avatar id */
  a: string;
  /** created_at of the last transfer returned, UTC ISO with microseconds */
  c: string;
  /** id of the last transfer returned */
  i: string;
}

const ISO_US = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function encodeToken(t: PageToken): string {
  return Buffer.from(JSON.stringify(t), "utf8").toString("base64url");
}

function decodeToken(token: string, avatarId: string): PageToken {
  const bad = () => invalidArgument("page_token must be a next_page_token returned by ListOwnershipTransfers for the same avatar_id", "page_token");
  let t: unknown;
  try {
    t = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  if (typeof t !== "object" || t === null) throw bad();
  const { a, c, i } = t as Record<string, unknown>;
  if (a !== avatarId || typeof c !== "string" || !ISO_US.test(c) || typeof i !== "string" || !UUID.test(i)) throw bad();
  return { a, c, i };
}

/**
 * An avatar's transfers, newest first by (created_at, id), one page at a
 * time. Keyset pagination: a page continues strictly after the last row of
 * the previous one, and a new transfer is created later than every existing
 * one (its time is taken under the writers' lock), so pages neither skip nor
 * repeat rows while transfers are recorded.
 */
export async function listOwnershipTransfers(db: SqlClient, input: ListTransfersInput): Promise<ListTransfersResult> {
  const avatarId = uuid(input.avatarId, "avatar_id");
  const limit = pageSize(input.pageSize ?? 0, DEFAULT_PAGE_SIZE);
  const after = input.pageToken ? decodeToken(input.pageToken, avatarId) : undefined;

  const exists = await db.query("select 1 from avatars where id = $1::text::uuid", [avatarId]);
  if (exists.length === 0) {
    throw new AuthzError("NOT_FOUND", `avatar ${avatarId} not found`, { reason: "AVATAR_NOT_FOUND", metadata: { avatar_id: avatarId } });
  }
  const lapsed = "status = 'pending' and expires_at <= clock_timestamp()";
  const params: string[] = [avatarId, String(limit + 1)];
  if (after) params.push(after.c, after.i);
  const rows = await db.query<TransferRow>(
    `select id::text as id, avatar_id::text as avatar_id, from_membership_id::text as from_membership_id,
            to_membership_id::text as to_membership_id,
            case when ${lapsed} then 'expired' else status end as status,
            ${iso(`case when ${lapsed} then expires_at else occurred_at end`)} as occurred_at,
            ${iso("created_at")} as created_at, ${iso("expires_at")} as expires_at
       from ownership_transfers
      where avatar_id = $1::text::uuid${after ? " and (created_at, id) < ($3::text::timestamptz, $4::text::uuid)" : ""}
      order by created_at desc, id desc
      limit $2::text::int`,
    params,
  );
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    transfers: page.map(toTransfer),
    nextPageToken: rows.length > limit && last ? encodeToken({ a: avatarId, c: last.created_at, i: last.id }) : "",
  };
}
