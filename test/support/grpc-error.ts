// A gRPC error as a caller in another language reads it: the status code,
// the message, and the google.rpc.ErrorInfo (domain authz, a stable reason)
// carried in grpc-status-details-bin.
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";

export interface GrpcFailure {
  /** The status code's name, e.g. "INVALID_ARGUMENT". */
  code: string;
  reason: string;
  domain: string;
  metadata: Record<string, string>;
  message: string;
}

export function grpcFailure(err: unknown): GrpcFailure {
  const e = err as grpc.ServiceError;
  if (typeof e?.code !== "number") throw new Error(`not a gRPC error: ${String(err)}`);
  const bin = e.metadata?.get("grpc-status-details-bin")[0];
  let info: { reason: string; domain: string; metadata: Record<string, string> } | undefined;
  if (bin instanceof Buffer) {
    const status = fromBinary(StatusSchema, bin);
    info = status.details[0] ? anyUnpack(status.details[0], ErrorInfoSchema) : undefined;
  }
  return {
    code: grpc.status[e.code] ?? String(e.code),
    reason: info?.reason ?? "",
    domain: info?.domain ?? "",
    metadata: { ...(info?.metadata ?? {}) },
    message: e.details,
  };
}

/** The failure of a call that must fail (an answer fails the test). */
export async function rejection(p: Promise<unknown>): Promise<GrpcFailure> {
  const outcome = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (outcome.ok) throw new Error(`expected a gRPC error, got an answer: ${JSON.stringify(outcome.v).slice(0, 300)}`);
  return grpcFailure(outcome.e);
}
