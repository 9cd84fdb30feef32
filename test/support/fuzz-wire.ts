// Raw-bytes clients for the fuzz test, one per protocol, each over a real
// socket: gRPC (@grpc/grpc-js with identity (de)serializers), Connect unary
// (binary and JSON over HTTP/1.1), gRPC-Web (binary over HTTP/1.1) and plain
// HTTP JSON (AuthZEN). Each answers with the status code's name and the
// call's wall time; a call not answered within the timeout is CLIENT_TIMEOUT.

import * as grpc from "@grpc/grpc-js";

export interface Outcome {
  /** gRPC status name ("OK", "INVALID_ARGUMENT", ...), HTTP_<status> when there is none, CLIENT_TIMEOUT, or TRANSPORT_<error>. */
  code: string;
  ms: number;
  /** The error message, for the report. */
  message: string;
}

const identity = (b: Buffer) => b;
const grpcName = (code: number) => (grpc.status[code] as string | undefined) ?? `GRPC_${code}`;

export interface GrpcRaw {
  call(path: string, body: Uint8Array, headers: Record<string, string>, timeoutMs: number): Promise<Outcome>;
  close(): void;
}

export function grpcRaw(port: number): GrpcRaw {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
  return {
    call(path, body, headers, timeoutMs) {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(headers)) md.set(k, v);
      const started = performance.now();
      return new Promise((resolve) => {
        client.makeUnaryRequest(path, identity, identity, Buffer.from(body), md, { deadline: Date.now() + timeoutMs }, (err) => {
          const ms = performance.now() - started;
          if (!err) return resolve({ code: "OK", ms, message: "" });
          // The client's own deadline: the server did not answer in time.
          const code = err.code === grpc.status.DEADLINE_EXCEEDED && ms >= timeoutMs - 50 ? "CLIENT_TIMEOUT" : grpcName(err.code);
          resolve({ code, ms, message: err.details ?? "" });
        });
      });
    },
    close: () => client.close(),
  };
}

const TRANSPORT = (err: unknown, ms: number): Outcome => {
  const e = err as { name?: string; cause?: { code?: string } };
  if (e.name === "TimeoutError" || e.name === "AbortError") return { code: "CLIENT_TIMEOUT", ms, message: "" };
  return { code: `TRANSPORT_${e.cause?.code ?? e.name ?? "ERROR"}`, ms, message: String(err) };
};

/** Connect unary: 200 is OK; an error's JSON body names its code. */
export async function connectCall(
  url: string,
  body: Uint8Array | string,
  contentType: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<Outcome> {
  const started = performance.now();
  try {
    const res = await fetch(url, { method: "POST", headers: { "content-type": contentType, ...headers }, body, signal: AbortSignal.timeout(timeoutMs) });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const ms = performance.now() - started;
    if (res.status === 200) return { code: "OK", ms, message: "" };
    try {
      const err = JSON.parse(new TextDecoder().decode(bytes)) as { code?: string; message?: string };
      if (typeof err.code === "string") return { code: err.code.toUpperCase(), ms, message: err.message ?? "" };
    } catch {
      // not a Connect error body
    }
    return { code: `HTTP_${res.status}`, ms, message: "" };
  } catch (err) {
    return TRANSPORT(err, performance.now() - started);
  }
}

/** A gRPC(-Web) length-prefixed message. */
export function envelope(flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

/** The grpc-status of a gRPC-Web answer: a header (trailers-only) or the trailer frame in the body. */
function grpcWebStatus(res: Response, body: Uint8Array): { status: number; message: string } | undefined {
  const h = res.headers.get("grpc-status");
  if (h !== null) return { status: Number(h), message: decodeURIComponent(res.headers.get("grpc-message") ?? "") };
  let at = 0;
  while (at + 5 <= body.length) {
    const flags = body[at] as number;
    const len = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    const data = body.subarray(at + 5, at + 5 + len);
    if (flags & 0x80) {
      const fields = Object.fromEntries(
        new TextDecoder()
          .decode(data)
          .split("\r\n")
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
      );
      return { status: Number(fields["grpc-status"]), message: decodeURIComponent(fields["grpc-message"] ?? "") };
    }
    at += 5 + len;
  }
  return undefined;
}

export async function grpcWebCall(url: string, frame: Uint8Array, headers: Record<string, string>, timeoutMs: number): Promise<Outcome> {
  const started = performance.now();
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", ...headers },
      body: frame,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = new Uint8Array(await res.arrayBuffer());
    const ms = performance.now() - started;
    const s = grpcWebStatus(res, body);
    if (!s) return { code: `HTTP_${res.status}`, ms, message: "" };
    return { code: grpcName(s.status), ms, message: s.message };
  } catch (err) {
    return TRANSPORT(err, performance.now() - started);
  }
}

const HTTP_CODE: Record<number, string> = {
  200: "OK",
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  429: "RESOURCE_EXHAUSTED",
  500: "INTERNAL",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

/** Plain HTTP (AuthZEN): the status mapped as authz maps codes to statuses; others as HTTP_<status>. */
export async function httpCall(url: string, method: string, body: string | undefined, headers: Record<string, string>, timeoutMs: number): Promise<Outcome> {
  const started = performance.now();
  try {
    const res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    const ms = performance.now() - started;
    let message = "";
    try {
      message = String((JSON.parse(text) as { error?: { message?: string } }).error?.message ?? "");
    } catch {
      // not JSON
    }
    return { code: HTTP_CODE[res.status] ?? `HTTP_${res.status}`, ms, message };
  } catch (err) {
    return TRANSPORT(err, performance.now() - started);
  }
}
