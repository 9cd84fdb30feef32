import { toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { encodedOnce } from "./handler-types.js";
import { HealthState, healthHandlers, ServingStatus } from "./health.js";

const call = (h: ReturnType<typeof healthHandlers>, service: string) =>
  (h.check as (req: { service: string }, ctx: unknown) => { status: ServingStatus })({ service, $typeName: HealthCheckRequestSchema.typeName } as never, {});

describe("health check answers", () => {
  it("shares one encoded answer per status and follows a change of status", () => {
    const state = new HealthState(["authz.v1.PermissionService"]);
    const h = healthHandlers(state);
    const a = call(h, "");
    expect(a.status).toBe(ServingStatus.NOT_SERVING);
    let encodes = 0;
    const bytes = (m: { status: ServingStatus }) =>
      encodedOnce(m, () => {
        encodes++;
        return Buffer.from(toBinary(HealthCheckResponseSchema, { $typeName: HealthCheckResponseSchema.typeName, status: m.status }));
      });
    expect(bytes(a)).toEqual(bytes(call(h, "authz.v1.PermissionService")));
    expect(encodes).toBe(1);
    state.setAll(ServingStatus.SERVING);
    const b = call(h, "");
    expect(b.status).toBe(ServingStatus.SERVING);
    expect(bytes(b)).not.toEqual(bytes(a));
    expect(encodes).toBe(2);
    expect(call(h, "")).toBe(b);
  });
});
