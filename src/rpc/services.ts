import { AdminService } from "../../gen/authz/v1/admin_service_pb.js";
import { PermissionService } from "../../gen/authz/v1/permission_service_pb.js";
import { RateLimitService } from "../../gen/authz/v1/rate_limit_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { bind, type ServiceBinding, type ServiceHandlers } from "./handler-types.js";
import type { LiveEngine } from "../store/live-engine.js";
import type { SqlClient } from "../store/sql.js";
import { type HealthState, healthHandlers } from "./health.js";
import { manageRolesHandler } from "./admin-handlers.js";
import { ownershipHandlers } from "./ownership-handlers.js";
import { type DecisionEvent, permissionHandlers } from "./permission-handlers.js";

/** Service names the health service reports on, besides the server as a whole (""). */
export const SERVED_SERVICES = [PermissionService.typeName, AdminService.typeName, RateLimitService.typeName];

export interface ServiceDeps {
  /** Per decision: metrics and the decision log. */
  onDecision?: (e: DecisionEvent) => void;
  /** Cap on freshness waits, whatever the caller's deadline. */
  maxWaitMs?: number;
  /** The live engine; throws UNAVAILABLE until the store is loaded. */
  live: () => LiveEngine;
  /** The database; throws UNAVAILABLE until it is reachable. */
  db: () => SqlClient;
  /** Rate-limit handlers (their store lives as long as the app). */
  rateLimit: ServiceHandlers<typeof RateLimitService>;
  /** Default lifetime of a requested ownership transfer. */
  transferTtlMs: number;
}

/** Every service with its one implementation, served on both listeners. */
export function createBindings(health: HealthState, deps: ServiceDeps): ServiceBinding[] {
  return [
    bind(Health, healthHandlers(health)),
    bind(PermissionService, permissionHandlers(deps.live, {
        ...(deps.onDecision ? { onDecision: deps.onDecision } : {}),
        ...(deps.maxWaitMs ? { maxWaitMs: deps.maxWaitMs } : {}),
      })),
    bind(AdminService, {
      manageRoles: manageRolesHandler(deps.db),
      ...ownershipHandlers(deps.db, { defaultRequestTtlMs: deps.transferTtlMs }),
    } satisfies ServiceHandlers<typeof AdminService>),
    bind(RateLimitService, deps.rateLimit),
  ];
}
