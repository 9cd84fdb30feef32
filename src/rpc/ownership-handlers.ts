// The ownership RPCs of AdminService at the edge: generated messages in,
// domain types to store/ownership.ts, and the domain result back as a
// response message. The store validates values (and names the field).

import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Duration, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type AdminService, type OwnershipTransferSchema, TransferMode, TransferStatus } from "../../gen/authz/v1/admin_service_pb.js";
import { invalidArgument } from "../errors.js";
import {
  acceptOwnershipTransfer,
  cancelOwnershipTransfer,
  declineOwnershipTransfer,
  listOwnershipTransfers,
  type OwnershipTransfer,
  type TransferActionInput,
  type TransferMode as DomainMode,
  type TransferResult,
  type TransferStatus as DomainStatus,
  transferOwnership,
} from "../store/ownership.js";
import type { SqlClient } from "../store/sql.js";
import { rowTenant } from "../store/tenant-lookup.js";
import { confineRow } from "../tenancy.js";
import type { ServiceHandlers } from "./handler-types.js";
import { writeCaller } from "./tenancy.js";
import { UUID } from "../validation.js";

/** The AdminService methods implemented here; spread them into the AdminService binding. */
export type OwnershipHandlers = Pick<
  ServiceHandlers<typeof AdminService>,
  "transferOwnership" | "acceptOwnershipTransfer" | "declineOwnershipTransfer" | "cancelOwnershipTransfer" | "listOwnershipTransfers"
>;

export interface OwnershipHandlerOptions {
  /** TTL of a TRANSFER_MODE_REQUEST transfer when the request gives no request_ttl (AUTHZ_TRANSFER_TTL_SECONDS × 1000). */
  defaultRequestTtlMs: number;
}

const STATUS: Record<DomainStatus, TransferStatus> = {
  pending: TransferStatus.PENDING,
  completed: TransferStatus.COMPLETED,
  declined: TransferStatus.DECLINED,
  cancelled: TransferStatus.CANCELLED,
  expired: TransferStatus.EXPIRED,
};

function modeFrom(m: TransferMode): DomainMode {
  switch (m) {
    case TransferMode.UNSPECIFIED:
    case TransferMode.IMMEDIATE:
      return "immediate";
    case TransferMode.REQUEST:
      return "request";
    default:
      throw invalidArgument("mode must be TRANSFER_MODE_IMMEDIATE or TRANSFER_MODE_REQUEST", "mode");
  }
}

/** A Duration in milliseconds; its sign rules are checked here, its range by the store. */
function durationMs(d: Duration): number {
  const ms = Number(d.seconds) * 1000 + d.nanos / 1e6;
  if (!Number.isFinite(ms) || (d.seconds > 0n && d.nanos < 0) || (d.seconds < 0n && d.nanos > 0)) {
    throw invalidArgument("request_ttl must be a valid duration", "request_ttl");
  }
  return ms;
}

export function transferMessage(t: OwnershipTransfer): MessageInitShape<typeof OwnershipTransferSchema> {
  return {
    id: t.id,
    avatarId: t.avatarId,
    fromMembershipId: t.fromMembershipId,
    toMembershipId: t.toMembershipId,
    status: STATUS[t.status],
    createdAt: timestampFromDate(t.createdAt),
    ...(t.occurredAt ? { occurredAt: timestampFromDate(t.occurredAt) } : {}),
    ...(t.expiresAt ? { expiresAt: timestampFromDate(t.expiresAt) } : {}),
  };
}

const resultMessage = (r: TransferResult) => ({ transfer: transferMessage(r.transfer), revision: r.revision });

const actionInput = (req: { transferId: string; idempotencyKey: string }): TransferActionInput => ({
  transferId: req.transferId,
  ...(req.idempotencyKey !== "" ? { idempotencyKey: req.idempotencyKey } : {}),
});

/** The five ownership RPCs; db is read per call so the handlers can be built before the pool. */
export function ownershipHandlers(db: () => SqlClient, options: OwnershipHandlerOptions): OwnershipHandlers {
  return {
    async transferOwnership(req, ctx) {
      const result = await transferOwnership(
        db(),
        {
          avatarId: req.avatarId,
          fromMembershipId: req.fromMembershipId,
          toMembershipId: req.toMembershipId,
          mode: modeFrom(req.mode),
          ...(req.idempotencyKey !== "" ? { idempotencyKey: req.idempotencyKey } : {}),
          ...(req.requestTtl ? { requestTtlMs: durationMs(req.requestTtl) } : {}),
        },
        { defaultRequestTtlMs: options.defaultRequestTtlMs },
        writeCaller(ctx),
      );
      return resultMessage(result);
    },
    async acceptOwnershipTransfer(req, ctx) {
      return resultMessage(await acceptOwnershipTransfer(db(), actionInput(req), writeCaller(ctx)));
    },
    async declineOwnershipTransfer(req, ctx) {
      return resultMessage(await declineOwnershipTransfer(db(), actionInput(req), writeCaller(ctx)));
    },
    async cancelOwnershipTransfer(req, ctx) {
      return resultMessage(await cancelOwnershipTransfer(db(), actionInput(req), writeCaller(ctx)));
    },
    async listOwnershipTransfers(req, ctx) {
      if (ctx.caller?.tenantId && UUID.test(req.avatarId)) {
        confineRow(ctx.caller, await rowTenant(db(), "avatars", req.avatarId.toLowerCase()), `avatar ${req.avatarId}`, "denied");
      }
      const page = await listOwnershipTransfers(db(), {
        avatarId: req.avatarId,
        pageSize: req.pageSize,
        ...(req.pageToken !== "" ? { pageToken: req.pageToken } : {}),
      });
      return { transfers: page.transfers.map(transferMessage), nextPageToken: page.nextPageToken };
    },
  };
}
