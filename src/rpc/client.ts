// The command line's way to the service: one unary or server-streaming call
// over gRPC (HTTP/2) with the generated descriptors, requests and responses in
// the API's own JSON form (proto3 JSON, enum names such as
// DECISION_REASON_NO_GRANT, false and zero fields always present). Lives in
// rpc/ because it is a translation of the generated API, like the handlers.
import { type DescMethod, type DescMethodStreaming, type DescMethodUnary, type DescService, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/authz/v1/admin_service_pb.js";
import { PermissionService } from "../../gen/authz/v1/permission_service_pb.js";
import { RateLimitService } from "../../gen/authz/v1/rate_limit_service_pb.js";
import { WatchService } from "../../gen/authz/v1/watch_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";

/** Every service the command line calls; other commands add theirs here. */
const SERVICES: readonly DescService[] = [PermissionService, AdminService, RateLimitService, WatchService, Health];

export interface RemoteOptions {
  /** host:port (cleartext), or http://host:port, or https://host:port (TLS, system roots and NODE_EXTRA_CA_CERTS). */
  readonly server: string;
  /** Sent as "authorization: Bearer <key>"; an API key or a JWT. */
  readonly credential?: string | undefined;
  readonly timeoutMs: number;
}

/** A call the service (or the network) refused: the gRPC code by name and the ErrorInfo reason, when there is one. */
export class RemoteError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = "RemoteError";
  }
}

/** The request did not fit the RPC's message (an unknown field, a wrong type): the caller's mistake, before any call. */
export class RequestShapeError extends Error {}

export function baseUrl(server: string): string {
  if (/^https?:\/\//.test(server)) return server.replace(/\/+$/, "");
  return `http://${server}`;
}

function methodOf(service: string, method: string): DescMethod {
  const s = SERVICES.find((d) => d.typeName === service);
  const m = s?.methods.find((d) => d.name === method);
  if (!m) throw new Error(`the command line does not know ${service}/${method}`);
  return m;
}

/** Node's codes for a TLS failure: the certificate could not be verified, or the other end does not speak TLS. */
const TLS_FAILURE = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH)/;

function remoteError(err: unknown): RemoteError {
  const e = ConnectError.from(err);
  // A failure of the connection itself (Node's error as the cause, nothing from the server): the server could not
  // be talked to, whatever code the transport put on it (a TLS failure came out INTERNAL).
  const cause = (e.cause as { code?: unknown } | undefined)?.code;
  if (typeof cause === "string" && TLS_FAILURE.test(cause)) {
    return new RemoteError(
      "UNAVAILABLE",
      `TLS with the server failed (${cause}): ${e.rawMessage}; a certificate from a private CA needs NODE_EXTRA_CA_CERTS=<its CA file>`,
      undefined,
    );
  }
  const reason = e.findDetails(ErrorInfoSchema)[0]?.reason;
  return new RemoteError(Code[e.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase(), e.rawMessage, reason || undefined);
}

/** One connection to the server for a whole command (pagination and streams reuse it). */
export function connect(opts: RemoteOptions): RemoteClient {
  const transport = createGrpcTransport({ baseUrl: baseUrl(opts.server) });
  const headers: Record<string, string> = opts.credential ? { authorization: `Bearer ${opts.credential}` } : {};
  return new RemoteClient(transport, headers, opts.timeoutMs);
}

export class RemoteClient {
  constructor(
    private readonly transport: Transport,
    private readonly headers: Record<string, string>,
    private readonly timeoutMs: number,
  ) {}

  private input(m: DescMethod, request: JsonValue) {
    try {
      return fromJson(m.input, request);
    } catch (err) {
      throw new RequestShapeError(`${m.parent.name}/${m.name}: ${(err as Error).message}`);
    }
  }

  /** A unary call; the response in the API's JSON form. */
  async call(service: string, method: string, request: JsonValue): Promise<JsonValue> {
    const m = methodOf(service, method);
    if (m.methodKind !== "unary") throw new Error(`${service}/${method} is not unary`);
    const input = this.input(m, request);
    try {
      const res = await this.transport.unary(m as DescMethodUnary, undefined, this.timeoutMs, this.headers, input);
      return toJson(m.output, res.message, { alwaysEmitImplicit: true });
    } catch (err) {
      throw remoteError(err);
    }
  }

  /** A server-streaming call (no deadline: it runs until the server ends it or the signal aborts); each message in the API's JSON form. */
  async *stream(service: string, method: string, request: JsonValue, signal?: AbortSignal): AsyncGenerator<JsonValue> {
    const m = methodOf(service, method);
    if (m.methodKind !== "server_streaming") throw new Error(`${service}/${method} is not server-streaming`);
    const input = this.input(m, request);
    async function* one() {
      yield input;
    }
    try {
      const res = await this.transport.stream(m as DescMethodStreaming, signal, undefined, this.headers, one());
      for await (const msg of res.message) yield toJson(m.output, msg, { alwaysEmitImplicit: true });
    } catch (err) {
      throw remoteError(err);
    }
  }
}
