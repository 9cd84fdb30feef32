// Request bodies on the HTTP listener are read and checked here before
// connect-node decodes them. connect-node decodes a request before any code
// of ours runs and answers a body it cannot decode with INTERNAL ("parse
// binary: ..."), and it decodes a request of millions of tiny elements for
// seconds. So the body is unframed (Connect unary, or one gRPC / gRPC-Web /
// Connect-streaming envelope), decompressed, and scanned by its schema
// (wire-scan.ts) or, for JSON, parsed and counted. connect-node then gets
// an identity-encoded body it can decode; a bad one is replaced by an empty
// message and its fault travels to the guard, which answers it after
// authentication with INVALID_ARGUMENT, in the caller's protocol.

import { type DescMessage, fromJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { AuthzError } from "../errors.js";
import { undecodable } from "./input-bounds.js";
import { scanWire, WIRE_LIMITS, type WireFault } from "./wire-scan.js";

/** How a content type frames its one request message. */
export interface Framing {
  readonly envelope: boolean;
  readonly json: boolean;
  /** The header naming the request's compression. */
  readonly encodingHeader: string;
}

const FRAMINGS: Record<string, Framing> = {
  "application/proto": { envelope: false, json: false, encodingHeader: "content-encoding" },
  "application/json": { envelope: false, json: true, encodingHeader: "content-encoding" },
  "application/connect+proto": { envelope: true, json: false, encodingHeader: "connect-content-encoding" },
  "application/connect+json": { envelope: true, json: true, encodingHeader: "connect-content-encoding" },
  "application/grpc": { envelope: true, json: false, encodingHeader: "grpc-encoding" },
  "application/grpc+proto": { envelope: true, json: false, encodingHeader: "grpc-encoding" },
  "application/grpc+json": { envelope: true, json: true, encodingHeader: "grpc-encoding" },
  "application/grpc-web": { envelope: true, json: false, encodingHeader: "grpc-encoding" },
  "application/grpc-web+proto": { envelope: true, json: false, encodingHeader: "grpc-encoding" },
  "application/grpc-web+json": { envelope: true, json: true, encodingHeader: "grpc-encoding" },
};

/** The framing of a POST body with this content type; undefined for types connect-node answers itself (415). */
export function framingOf(contentType: string | undefined): Framing | undefined {
  return FRAMINGS[(contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? ""];
}

const COMPRESSIONS = new Map([compressionGzip, compressionBrotli].map((c) => [c.name, c]));

export interface Checked {
  /** The body connect-node decodes: identity-encoded, one message. */
  body: Uint8Array;
  /** The request's fault, answered by the guard; the body is then an empty message. */
  fault?: AuthzError;
  /** Set when the body was decompressed here: the header connect-node must no longer see. */
  dropHeader?: string;
}

/** Undefined: leave the request as it came (an encoding connect-node refuses itself, UNIMPLEMENTED). */
type Step = Checked | undefined;

const EMPTY = new Uint8Array(0);
const EMPTY_JSON = new TextEncoder().encode("{}");

function envelope(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

/** The body's one message: its flags and bytes, or what is wrong with the framing. */
function unframe(body: Uint8Array): { flags: number; data: Uint8Array } | string {
  if (body.length === 0) return "the request holds no message";
  if (body.length < 5) return "the request's message frame is truncated";
  const len = new DataView(body.buffer, body.byteOffset + 1, 4).getUint32(0);
  if (5 + len > body.length) return "the request's message frame is truncated";
  if (5 + len < body.length) return "the request holds more than one message";
  return { flags: body[0] as number, data: body.subarray(5) };
}

/**
 * The JSON body's fault: not JSON, more elements or nesting than the wire limits allow, or not a
 * message of type `desc` in proto3 JSON. Unknown fields and unknown enum names are faults: connect-node
 * would drop them, so that a misspelt `expectedRevison` skipped its check and a misspelt enum name
 * became the enum's default.
 */
function jsonFault(desc: DescMessage, data: Uint8Array): WireFault | undefined {
  let value: unknown;
  const text = new TextDecoder().decode(data);
  try {
    value = JSON.parse(text);
  } catch {
    return { reason: "MALFORMED_MESSAGE", message: "the body is not valid JSON" };
  }
  let elements = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== "object" || v === null) continue;
    if (depth > WIRE_LIMITS.depth) return { reason: "TOO_DEEP", message: `the JSON is nested deeper than ${WIRE_LIMITS.depth} levels` };
    const children = Array.isArray(v) ? v : Object.values(v);
    elements += children.length;
    if (elements > WIRE_LIMITS.elements)
      return { reason: "TOO_MANY_ELEMENTS", message: `the request holds more than ${WIRE_LIMITS.elements} fields and list items` };
    for (const c of children) stack.push([c, depth + 1]);
  }
  try {
    // fromJsonString, as connect-node decodes: it also refuses a duplicate key, which JSON.parse collapses
    // (passed here, it failed later in connect-node as INVALID_ARGUMENT without a reason).
    fromJsonString(desc, text, { ignoreUnknownFields: false });
  } catch (err) {
    return { reason: "MALFORMED_MESSAGE", message: err instanceof Error ? err.message : "not a message of this type" };
  }
  return undefined;
}

/** The empty stand-in message of framing `f`, uncompressed (see checkBody's refuse). */
function standIn(f: Framing, fault: AuthzError): Checked {
  const empty = f.json ? EMPTY_JSON : EMPTY;
  return f.envelope ? { body: envelope(empty), fault } : { body: empty, fault, dropHeader: f.encodingHeader };
}

/** A body over readMaxBytes, left unread: the stand-in and RESOURCE_EXHAUSTED (MESSAGE_TOO_LARGE), answered by the guard. */
export function tooLarge(f: Framing, readMaxBytes: number): Checked {
  return standIn(f, new AuthzError("RESOURCE_EXHAUSTED", `the message is larger than ${readMaxBytes} bytes`, { reason: "MESSAGE_TOO_LARGE" }));
}

/**
 * Checks one request body (already bounded by readMaxBytes) of a method
 * whose input is `desc`, framed as `f`; `encoding` is the value of its
 * compression header.
 */
export async function checkBody(desc: DescMessage, f: Framing, body: Uint8Array, encoding: string | undefined, readMaxBytes: number): Promise<Step> {
  // The stand-in empty message is not compressed: a unary body's compression header goes with the real body
  // (left in place, connect-node tried to decompress the stand-in and answered a decompression error instead).
  const refuse = (fault: AuthzError): Checked => standIn(f, fault);
  const bad = (message: string) => refuse(undecodable(desc.typeName, { reason: "MALFORMED_MESSAGE", message }));
  let data = body;
  let compressed = encoding !== undefined && encoding !== "identity";
  if (f.envelope) {
    const m = unframe(body);
    if (typeof m === "string") return bad(m);
    if ((m.flags & ~1) !== 0) return bad("the request's message frame has unknown flags");
    if ((m.flags & 1) === 1 && !compressed) return bad("the message is marked compressed, but the request names no compression");
    compressed = (m.flags & 1) === 1;
    data = m.data;
  }
  let decompressed = false;
  if (compressed) {
    const c = COMPRESSIONS.get(encoding as string);
    if (!c) return undefined;
    try {
      data = await c.decompress(data, readMaxBytes);
      decompressed = true;
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.ResourceExhausted) {
        return refuse(new AuthzError("RESOURCE_EXHAUSTED", `the message is larger than ${readMaxBytes} bytes decompressed`, { reason: "MESSAGE_TOO_LARGE" }));
      }
      return bad(`the message cannot be decompressed as ${c.name}`);
    }
  }
  const fault = f.json ? jsonFault(desc, data) : scanWire(desc, data);
  if (fault) return refuse(undecodable(desc.typeName, fault));
  const out: Checked = { body: f.envelope ? envelope(data) : data };
  // A decompressed unary body must not be decompressed again; an envelope's cleared flag says it already.
  if (decompressed && !f.envelope) out.dropHeader = f.encodingHeader;
  return out;
}
