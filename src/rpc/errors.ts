import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { AuthzError, isReason, REASONS, type Reason } from "../errors.js";
import type { Logger } from "../logger.js";

export const ERROR_DOMAIN = "authz";

/** The caller-facing form of any failure: code, message, ErrorInfo reason and metadata. */
export interface PublicError {
  code: Code;
  message: string;
  reason: Reason;
  metadata: Record<string, string>;
}

const CODE_BY_NAME: Record<string, Code> = Object.fromEntries(
  Object.entries(Code)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [k.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase(), v as Code]),
);

/** Longest message a caller gets: a message that quotes input must never carry all of it (a grpc-message trailer of 64 KB breaks clients). */
export const MAX_MESSAGE_CHARS = 1024;
const MAX_METADATA_CHARS = 256;

const bounded = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max)}…` : s);

function boundedMetadata(m: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) out[bounded(k, 64)] = bounded(v, MAX_METADATA_CHARS);
  return out;
}

/**
 * Maps any thrown value to what the caller sees. Domain errors keep their
 * message; ConnectErrors pass through; everything else is INTERNAL with no
 * detail, and the cause is logged with the request id. Messages and
 * metadata are cut to a bounded length whatever they quote.
 */
export function toPublicError(err: unknown, log: Logger, requestId: string, path: string): PublicError {
  if (err instanceof AuthzError) {
    const code = CODE_BY_NAME[err.code] ?? Code.Internal;
    return { code, message: bounded(err.message, MAX_MESSAGE_CHARS), reason: err.reason, metadata: boundedMetadata(err.metadata) };
  }
  if (err instanceof ConnectError) {
    // A failure of the protocol layer itself (a deadline, a cancel, a size limit): its code's generic reason.
    const name = err.code === Code.Canceled ? "CANCELLED" : codeName(err.code);
    const reason: Reason = isReason(name) && REASONS[name].code === name ? name : "INTERNAL";
    return { code: err.code, message: bounded(err.rawMessage, MAX_MESSAGE_CHARS), reason, metadata: {} };
  }
  log.error({ err, requestId, path }, "internal error");
  return { code: Code.Internal, message: `internal error (request id ${requestId})`, reason: "INTERNAL", metadata: { request_id: requestId } };
}

function errorInfo(e: PublicError) {
  return create(ErrorInfoSchema, { reason: e.reason, domain: ERROR_DOMAIN, metadata: e.metadata });
}

export function toConnectError(e: PublicError): ConnectError {
  return new ConnectError(e.message, e.code, undefined, [{ desc: ErrorInfoSchema, value: errorInfo(e) }]);
}

/** The google.rpc.Status bytes for the grpc-status-details-bin trailer. */
export function statusDetailsBin(e: PublicError): Uint8Array {
  return toBinary(StatusSchema, create(StatusSchema, { code: e.code, message: e.message, details: [anyPack(ErrorInfoSchema, errorInfo(e))] }));
}

export function codeName(code: Code | 0): string {
  return code === 0 ? "OK" : Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
