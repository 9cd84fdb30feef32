// A client that calls authz the way Envoy does: @grpc/grpc-js with the
// Envoy-shaped protos of test/support/envoy-protos (fuller than authz's
// trimmed copies), loaded at run time.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { projectPath } from "../../src/paths.js";

export function loadEnvoyProtos(): grpc.GrpcObject {
  const def = protoLoader.loadSync(["envoy/service/auth/v3/external_auth.proto", "envoy/service/ratelimit/v3/rls.proto"], {
    includeDirs: [projectPath("test/support/envoy-protos"), projectPath("proto")],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(def);
}

/** google.protobuf.Value in proto-loader's object form (protobufjs's bundled well-known types keep camelCase names, even with keepCase). */
type PbValue =
  | { nullValue: "NULL_VALUE" }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: { fields: Record<string, PbValue> } }
  | { listValue: { values: PbValue[] } };

function value(v: unknown): PbValue {
  if (v === null || v === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
  return { structValue: struct(v as Record<string, unknown>) };
}

/** A JSON object as google.protobuf.Struct, as proto-loader expects it. */
export function struct(o: Record<string, unknown>): { fields: Record<string, PbValue> } {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, value(v)])) };
}

/** A google.protobuf.Struct from proto-loader back to JSON. */
export function fromStruct(s: { fields?: Record<string, Record<string, unknown>> } | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) {
    const kind = v["kind"] as string | undefined;
    const x = kind ? v[kind] : undefined;
    out[k] =
      kind === "structValue"
        ? fromStruct(x as never)
        : kind === "listValue"
          ? ((x as { values: never[] }).values ?? []).map((e) => fromStruct({ fields: { e } }).e)
          : kind === "nullValue"
            ? null
            : x;
  }
  return out;
}

export interface HttpCheck {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  principal?: string;
  contextExtensions?: Record<string, string>;
  /** Verified JWT payload as jwt_authn puts it in metadata (payload_in_metadata: jwt_payload). */
  jwtPayload?: Record<string, unknown>;
}

/** A CheckRequest like Envoy's ext_authz filter sends, including fields authz does not declare. */
export function checkRequest(c: HttpCheck): Record<string, unknown> {
  return {
    attributes: {
      source: {
        address: { socket_address: { address: "10.0.0.7", port_value: 53112 } },
        service: "frontend",
        principal: c.principal ?? "",
      },
      destination: { address: { socket_address: { address: "10.0.0.9", port_value: 8080 } }, principal: "spiffe://cluster.local/ns/app/sa/api" },
      request: {
        time: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 },
        http: {
          id: "8d3f1b2c-request",
          method: c.method ?? "GET",
          headers: { ":authority": "api.example.com", ":method": c.method ?? "GET", ":path": c.path, "x-request-id": "8d3f1b2c-request", ...c.headers },
          path: c.path,
          host: "api.example.com",
          scheme: "https",
          size: "-1",
          protocol: "HTTP/2",
          body: "",
        },
      },
      context_extensions: c.contextExtensions ?? {},
      metadata_context: c.jwtPayload ? { filter_metadata: { "envoy.filters.http.jwt_authn": struct({ jwt_payload: c.jwtPayload }) } } : {},
      tls_session: { sni: "api.example.com" },
    },
  };
}

export interface HeaderOption {
  header: { key: string; value: string };
  append: { value: boolean } | null;
  append_action: string;
}

export interface CheckResponse {
  status: { code: number; message: string };
  http_response: "ok_response" | "denied_response" | "error_response";
  ok_response?: { headers: HeaderOption[]; headers_to_remove: string[]; response_headers_to_add: HeaderOption[] };
  denied_response?: { status: { code: string }; headers: HeaderOption[]; body: string };
  dynamic_metadata: { fields?: Record<string, Record<string, unknown>> } | null;
}

/** Header options as a name → value record. */
export const headerMap = (hs: HeaderOption[] | undefined): Record<string, string> => Object.fromEntries((hs ?? []).map((h) => [h.header.key, h.header.value]));

export interface DescriptorStatus {
  code: string;
  current_limit: { name: string; requests_per_unit: number; unit: string } | null;
  limit_remaining: number;
  duration_until_reset: { seconds: string; nanos: number } | null;
}

export interface RateLimitResponse {
  overall_code: string;
  statuses: DescriptorStatus[];
  response_headers_to_add: Array<{ key: string; value: string }>;
}

/** A RateLimitDescriptor: entries as [key, value] pairs, optional per-descriptor hits_addend. */
export const descriptor = (entries: Array<[string, string]>, hitsAddend?: number) => ({
  entries: entries.map(([key, value]) => ({ key, value })),
  ...(hitsAddend !== undefined ? { hits_addend: { value: String(hitsAddend) } } : {}),
});
