// Raw-bytes calls that also read the google.rpc.ErrorInfo of a failure, per
// protocol: gRPC (@grpc/grpc-js, on either port), Connect unary and gRPC-Web
// (over HTTP/1.1 with fetch).

import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";

export interface Answer {
  /** gRPC status name: "OK", "INVALID_ARGUMENT", ... */
  code: string;
  message: string;
  /** ErrorInfo reason, when the error carries one. */
  reason?: string;
  /** ErrorInfo metadata. */
  metadata?: Record<string, string>;
}

const name = (code: number) => grpc.status[code] as string;

function fromStatusBin(bin: Uint8Array | undefined): Pick<Answer, "reason" | "metadata"> {
  if (!bin) return {};
  const status = fromBinary(StatusSchema, bin);
  const any = status.details[0];
  if (!any) return {};
  const info = fromBinary(ErrorInfoSchema, any.value);
  return { reason: info.reason, metadata: { ...info.metadata } };
}

export function grpcCall(c: grpc.Client, path: string, body: Uint8Array, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<Answer> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return new Promise((resolve) => {
    c.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from(body),
      md,
      { deadline: Date.now() + timeoutMs },
      (err) => {
        if (!err) return resolve({ code: "OK", message: "" });
        const bin = err.metadata?.get("grpc-status-details-bin")[0] as Buffer | undefined;
        // grpc-js decodes grpc-message with decodeURI, which leaves %3A, %2B, %2C (connect-node encodes them) as they are.
        let message = err.details ?? "";
        try {
          message = decodeURIComponent(message);
        } catch {
          // not percent-encoded
        }
        resolve({ code: name(err.code), message, ...fromStatusBin(bin) });
      },
    );
  });
}

export async function connectUnary(url: string, body: Uint8Array | string, contentType: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": contentType, ...headers }, body, signal: AbortSignal.timeout(10_000) });
  if (res.status === 200) {
    await res.arrayBuffer();
    return { code: "OK", message: "" };
  }
  const e = (await res.json()) as { code: string; message?: string; details?: Array<{ type: string; value: string }> };
  const info = e.details?.find((d) => d.type === "google.rpc.ErrorInfo");
  const decoded = info ? fromBinary(ErrorInfoSchema, Buffer.from(info.value, "base64")) : undefined;
  return { code: e.code.toUpperCase(), message: e.message ?? "", reason: decoded?.reason, metadata: decoded ? { ...decoded.metadata } : undefined };
}

export function frame(flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

/** gRPC-Web: the status from the trailer frame (or the headers, for a trailers-only answer). */
export async function grpcWeb(url: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  let fields: Record<string, string> = Object.fromEntries(res.headers.entries());
  for (let at = 0; at + 5 <= bytes.length; ) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    if ((bytes[at] as number) & 0x80) {
      const text = new TextDecoder().decode(bytes.subarray(at + 5, at + 5 + len));
      fields = Object.fromEntries(
        text
          .split("\r\n")
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
      );
    }
    at += 5 + len;
  }
  const bin = fields["grpc-status-details-bin"];
  return {
    code: name(Number(fields["grpc-status"])),
    message: decodeURIComponent(fields["grpc-message"] ?? ""),
    ...fromStatusBin(bin ? Buffer.from(bin, "base64") : undefined),
  };
}
