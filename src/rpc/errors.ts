import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { AuthzError } from "../errors.js";
import type { Logger } from "../logger.js";

export const ERROR_DOMAIN = "authz";

/** The caller-facing form of any failure: code, message, ErrorInfo reason and metadata. */
export interface PublicError {
  code: Code;
  message: string;
  reason: string;
  metadata: Record<string, string>;
}

const CODE_BY_NAME: Record<string, Code> = Object.fromEntries(
  Object.entries(Code)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [k.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase(), v as Code]),
);

/**
 * Maps any thrown value to what the caller sees. Domain errors keep their
 * message; ConnectErrors pass through; everything else is INTERNAL with no
 * detail, and the cause is logged with the request id.
 */
export function toPublicError(err: unknown, log: Logger, requestId: string, path: string): PublicError {
  if (err instanceof AuthzError) {
    return { code: CODE_BY_NAME[err.code] ?? Code.Internal, message: err.message, reason: err.reason, metadata: { ...err.metadata } };
  }
  if (err instanceof ConnectError) {
    return { code: err.code, message: err.rawMessage, reason: Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase(), metadata: {} };
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
  return toBinary(
    StatusSchema,
    create(StatusSchema, { code: e.code, message: e.message, details: [anyPack(ErrorInfoSchema, errorInfo(e))] }),
  );
}

export function codeName(code: Code | 0): string {
  return code === 0 ? "OK" : Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
