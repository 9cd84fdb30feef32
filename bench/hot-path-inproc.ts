// The hot path without the transport: CPU per call of decode + handler + encode,
// in this process, for
//
//   plain   a plain @grpc/grpc-js handler answering Health/Check (protobuf-es serializers)
//   health  authz's Health/Check through its own gRPC listener code (guard, call log at info,
//           metrics), as createGrpcServer registers it with grpc-js
//   check   authz's Check (allowed, API key) the same way, on a snapshot of the small dataset
//
// The methods are the ones createGrpcServer hands to grpc-js, called with a call object
// holding the decoded request and its metadata; what grpc-js and node:http2 do around
// them is measured by the socket part (bench/hot-path.ts). The parts are the shipped
// ones (src/rpc, src/auth, src/metrics.ts, src/engine), assembled as src/app/parts.ts
// assembles them, less the database: the engine snapshot is built from generated rows.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { pino } from "pino";

import { CheckRequestSchema, PermissionService } from "../gen/authz/v1/permission_service_pb.js";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import { ApiKeyRing, mintApiKey } from "../src/auth/api-keys.js";
import { createAuthenticator } from "../src/auth/authenticator.js";
import { buildSnapshot } from "../src/engine/snapshot.js";
import { createLogger } from "../src/logger.js";
import { Metrics } from "../src/metrics.js";
import { createCallLog } from "../src/rpc/call-log.js";
import { createGrpcServer } from "../src/rpc/grpc-server.js";
import { createAdmission, guard } from "../src/rpc/guard.js";
import { bind } from "../src/rpc/handler-types.js";
import { HealthState, healthHandlers } from "../src/rpc/health.js";
import { lookupHandlers } from "../src/rpc/lookup-handlers.js";
import { permissionHandlers } from "../src/rpc/permission-handlers.js";
import type { LiveEngine } from "../src/store/live-engine.js";
import { datasetShape, datasetTables, makeChecks } from "./dataset.js";
import { median } from "./server-stacks.js";

export const INPROC_TARGETS = ["plain", "health", "check"] as const;
export type InprocTarget = (typeof INPROC_TARGETS)[number];
export const INPROC_TARGET_LABELS: Record<InprocTarget, string> = {
  plain: "plain @grpc/grpc-js handler, Health/Check",
  health: "authz Health/Check (guard, call log, metrics)",
  check: "authz Check (allowed, API key)",
};

export interface InprocHotRow {
  round: number;
  target: InprocTarget;
  calls: number;
  cpuUsPerCall: number;
}

interface Method {
  func: (call: unknown, callback: grpc.sendUnaryData<unknown>) => void;
  serialize: (m: unknown) => Buffer;
  deserialize: (b: Buffer) => unknown;
}

/** CPU per call of deserialize + the method + serialize, `n` times. */
function timeMethod(m: Method, bytes: Buffer, metadata: grpc.Metadata, n: number): number {
  const call = { request: undefined as unknown, metadata, getDeadline: () => Infinity, getAuthContext: () => ({}), on() {}, cancelled: false };
  let out = 0;
  const callback: grpc.sendUnaryData<unknown> = (err, res) => {
    if (err) throw new Error(`in-process call failed: ${err.details ?? err.code}`);
    out += m.serialize(res).byteLength;
  };
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    call.request = m.deserialize(bytes);
    m.func(call, callback);
  }
  const t = process.cpuUsage(t0);
  if (out === 0) throw new Error("in-process call wrote nothing");
  return (t.user + t.system) / n;
}

/** The authz methods as createGrpcServer registers them, over the shipped parts. */
async function authzMethods(smallScale: number) {
  const grpcJs = await import("@grpc/grpc-js");
  const logger = createLogger("info", pino.destination("/dev/null"));
  const metrics = new Metrics();
  const health = new HealthState([PermissionService.typeName]);
  health.setAll(HealthCheckResponse_ServingStatus.SERVING);
  const { key, record } = mintApiKey("inproc", ["check"], null);
  const ring = new ApiKeyRing();
  ring.replace([record]);
  ring.markComplete();
  const shape = datasetShape(smallScale);
  const snapshot = buildSnapshot(1n, datasetTables(shape));
  const live = { current: () => snapshot } as unknown as LiveEngine;
  const bindings = guard(
    [
      bind(Health, healthHandlers(health)),
      bind(PermissionService, {
        ...permissionHandlers(() => live, { onDecision: (e) => metrics.decision(e.method, e.decision.allowed) }),
        ...lookupHandlers(() => live),
      }),
    ],
    createAuthenticator({ required: true, keys: ring }),
    createAdmission(2048),
  );
  const server = createGrpcServer(bindings, { logger, callLog: createCallLog(logger.child({ module: "rpc" }), metrics), maxMessageBytes: 4 << 20 });
  const handlers = (server as unknown as { handlers: Map<string, Method> }).handlers;
  const q = makeChecks(shape, 1000, 5).find((c) => c.expected && c.permission === "doc.read");
  if (!q) throw new Error("no allowed check in the small dataset");
  const md = new grpcJs.Metadata();
  md.set("x-api-key", key);
  return {
    health: handlers.get("/grpc.health.v1.Health/Check") as Method,
    check: handlers.get("/authz.v1.PermissionService/Check") as Method,
    checkBytes: Buffer.from(toBinary(CheckRequestSchema, create(CheckRequestSchema, { subject: q.subject, permission: q.permission, resource: q.resource }))),
    keyMetadata: md,
    empty: new grpcJs.Metadata(),
  };
}

export async function runHotPathInProcess(o: { smallScale: number; calls: number; rounds: number }): Promise<InprocHotRow[]> {
  const a = await authzMethods(o.smallScale);
  const serving = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
  const plain: Method = {
    func: (_call, callback) => callback(null, create(HealthCheckResponseSchema, { status: serving.status })),
    serialize: (m) => Buffer.from(toBinary(HealthCheckResponseSchema, m as typeof serving)),
    deserialize: (b) => fromBinary(HealthCheckRequestSchema, b),
  };
  const healthBytes = Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {})));
  const runs: Record<InprocTarget, () => number> = {
    plain: () => timeMethod(plain, healthBytes, a.empty, o.calls),
    health: () => timeMethod(a.health, healthBytes, a.empty, o.calls),
    check: () => timeMethod(a.check, a.checkBytes, a.keyMetadata, o.calls),
  };
  for (const t of INPROC_TARGETS) runs[t](); // warm-up: every path compiled before it is timed
  const rows: InprocHotRow[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    for (const target of INPROC_TARGETS) rows.push({ round, target, calls: o.calls, cpuUsPerCall: runs[target]() });
  }
  return rows;
}

export function inprocMedians(rows: InprocHotRow[]): Array<{ target: InprocTarget; cpuUsPerCall: number }> {
  return INPROC_TARGETS.map((target) => ({ target, cpuUsPerCall: median(rows.filter((r) => r.target === target).map((r) => r.cpuUsPerCall)) }));
}
