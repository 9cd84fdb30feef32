import { AdminService } from "../../gen/authz/v1/admin_service_pb.js";
import { PermissionService } from "../../gen/authz/v1/permission_service_pb.js";
import { RateLimitService } from "../../gen/authz/v1/rate_limit_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { unimplemented } from "../errors.js";
import { bind, type ServiceBinding, type ServiceHandlers } from "./handler-types.js";
import { type HealthState, healthHandlers } from "./health.js";

/** Service names the health service reports on, besides the server as a whole (""). */
export const SERVED_SERVICES = [PermissionService.typeName, AdminService.typeName, RateLimitService.typeName];

const permissionHandlers: ServiceHandlers<typeof PermissionService> = {
  check() {
    throw unimplemented("Check", "arrives with the decision engine, issue 3");
  },
  checkBulk() {
    throw unimplemented("CheckBulk", "arrives with the decision engine, issue 3");
  },
  listPermissions() {
    throw unimplemented("ListPermissions", "arrives with the decision engine, issue 3");
  },
};

const adminHandlers: ServiceHandlers<typeof AdminService> = {
  manageRoles() {
    throw unimplemented("ManageRoles", "arrives with the decision engine, issue 3");
  },
  transferOwnership() {
    throw unimplemented("TransferOwnership", "arrives with issue 4");
  },
};

const rateLimitHandlers: ServiceHandlers<typeof RateLimitService> = {
  consumeRateLimit() {
    throw unimplemented("ConsumeRateLimit", "arrives with issue 5");
  },
};

/** Every service with its one implementation, served on both listeners. */
export function createBindings(health: HealthState): ServiceBinding[] {
  return [
    bind(Health, healthHandlers(health)),
    bind(PermissionService, permissionHandlers),
    bind(AdminService, adminHandlers),
    bind(RateLimitService, rateLimitHandlers),
  ];
}
