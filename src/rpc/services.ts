import { AdminService } from "../../gen/authz/v1/admin_service_pb.js";
import { DirectoryService } from "../../gen/authz/v1/directory_service_pb.js";
import { PermissionService } from "../../gen/authz/v1/permission_service_pb.js";
import { RateLimitService } from "../../gen/authz/v1/rate_limit_service_pb.js";
import { WatchService } from "../../gen/authz/v1/watch_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { bind, type ServiceBinding, type ServiceHandlers } from "./handler-types.js";
import type { ChangeFeed } from "../store/change-feed.js";
import type { LiveEngine } from "../store/live-engine.js";
import type { SqlClient } from "../store/sql.js";
import { type HealthState, healthHandlers } from "./health.js";
import { manageRolesHandler } from "./admin-handlers.js";
import { apiKeyHandlers } from "./api-key-handlers.js";
import { directoryHandlers } from "./directory-handlers.js";
import { ownershipHandlers } from "./ownership-handlers.js";
import { lookupHandlers } from "./lookup-handlers.js";
import { type DecisionEvent, permissionHandlers } from "./permission-handlers.js";
import { watchHandlers } from "./watch-handlers.js";
import {
  Authorization,
  ENVOY_SERVICE_NAMES,
  EnvoyRateLimitService,
  envoyAuthorizationHandlers,
  envoyRateLimitHandlers,
  invalidCheckRequest,
} from "./envoy-handlers.js";
import type { MeshConfig } from "../mesh/config.js";
import type { RateLimitStore } from "../ratelimit/store.js";
import type { Logger } from "../logger.js";

/** Service names the health service reports on, besides the server as a whole (""). */
export const SERVED_SERVICES = [
  PermissionService.typeName,
  WatchService.typeName,
  AdminService.typeName,
  DirectoryService.typeName,
  RateLimitService.typeName,
  ...ENVOY_SERVICE_NAMES,
];

export interface ServiceDeps {
  /** Per decision: metrics and the decision log. */
  onDecision?: (e: DecisionEvent) => void;
  /** Cap on freshness waits, whatever the caller's deadline. */
  maxWaitMs?: number;
  /** The live engine; throws UNAVAILABLE until the store is loaded. */
  live: () => LiveEngine;
  /** The database; throws UNAVAILABLE until it is reachable. */
  db: () => SqlClient;
  /** The change feed (Watch follows its revision). */
  feed: () => ChangeFeed;
  /** Aborted when the server begins to shut down: Watch streams end (UNAVAILABLE) so the drain need not wait for them. */
  closing?: AbortSignal;
  /** Rate-limit handlers (their store lives as long as the app). */
  rateLimit: ServiceHandlers<typeof RateLimitService>;
  /** Default lifetime of a requested ownership transfer. */
  transferTtlMs: number;
  /** The mesh mapping for the Envoy services. */
  mesh: MeshConfig;
  /** The rate-limit counter store (shared with RateLimitService). */
  rateLimitStore: RateLimitStore;
  /** Per Envoy rate-limit answer, with its source (metrics). */
  onRateLimitDecision?: (source: string) => void;
  logger?: Logger;
}

/** Every service with its one implementation, served on both listeners. */
export function createBindings(health: HealthState, deps: ServiceDeps): ServiceBinding[] {
  return [
    bind(Health, healthHandlers(health)),
    bind(PermissionService, {
      ...permissionHandlers(deps.live, {
        ...(deps.onDecision ? { onDecision: deps.onDecision } : {}),
        ...(deps.maxWaitMs ? { maxWaitMs: deps.maxWaitMs } : {}),
      }),
      ...lookupHandlers(deps.live, deps.maxWaitMs ? { maxWaitMs: deps.maxWaitMs } : {}),
    } satisfies ServiceHandlers<typeof PermissionService>),
    bind(WatchService, watchHandlers({ db: deps.db, feed: deps.feed, live: deps.live, ...(deps.closing ? { closing: deps.closing } : {}) })),
    bind(AdminService, {
      manageRoles: manageRolesHandler(deps.db),
      ...ownershipHandlers(deps.db, { defaultRequestTtlMs: deps.transferTtlMs }),
      ...apiKeyHandlers(deps.db),
    } satisfies ServiceHandlers<typeof AdminService>),
    bind(DirectoryService, directoryHandlers(deps.db)),
    bind(RateLimitService, deps.rateLimit),
    ...envoyBindings(deps),
  ];
}

function envoyBindings(deps: ServiceDeps): ServiceBinding[] {
  const envoy = {
    live: deps.live,
    store: deps.rateLimitStore,
    mesh: deps.mesh,
    ...(deps.onDecision ? { onDecision: deps.onDecision } : {}),
    ...(deps.onRateLimitDecision ? { onRateLimitDecision: deps.onRateLimitDecision } : {}),
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.maxWaitMs ? { maxWaitMs: deps.maxWaitMs } : {}),
  };
  return [
    bind(Authorization, envoyAuthorizationHandlers(envoy), { invalidInput: { check: invalidCheckRequest } }),
    bind(EnvoyRateLimitService, envoyRateLimitHandlers(envoy)),
  ];
}
