import { AdminService } from "../../gen/authz/v1/admin_service_pb.js";
import { PermissionService } from "../../gen/authz/v1/permission_service_pb.js";
import { RateLimitService } from "../../gen/authz/v1/rate_limit_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { unimplemented } from "../errors.js";
import { bind, type ServiceBinding, type ServiceHandlers } from "./handler-types.js";
import type { Metrics } from "../metrics.js";
import type { LiveEngine } from "../store/live-engine.js";
import type { SqlClient } from "../store/sql.js";
import { type HealthState, healthHandlers } from "./health.js";
import { manageRolesHandler } from "./admin-handlers.js";
import { permissionHandlers } from "./permission-handlers.js";

/** Service names the health service reports on, besides the server as a whole (""). */
export const SERVED_SERVICES = [PermissionService.typeName, AdminService.typeName, RateLimitService.typeName];

const rateLimitHandlers: ServiceHandlers<typeof RateLimitService> = {
  consumeRateLimit() {
    throw unimplemented("ConsumeRateLimit", "arrives with issue 5");
  },
};

export interface ServiceDeps {
  metrics?: Metrics;
  /** The live engine; throws UNAVAILABLE until the store is loaded. */
  live: () => LiveEngine;
  /** The database; throws UNAVAILABLE until it is reachable. */
  db: () => SqlClient;
}

/** Every service with its one implementation, served on both listeners. */
export function createBindings(health: HealthState, deps: ServiceDeps): ServiceBinding[] {
  return [
    bind(Health, healthHandlers(health)),
    bind(PermissionService, permissionHandlers(deps.live, { onDecision: (m, allowed) => deps.metrics?.decision(m, allowed) })),
    bind(AdminService, {
      manageRoles: manageRolesHandler(deps.db),
      transferOwnership() {
        throw unimplemented("TransferOwnership", "arrives with issue 4");
      },
    } satisfies ServiceHandlers<typeof AdminService>),
    bind(RateLimitService, rateLimitHandlers),
  ];
}
