/**
 * What a credential may do: Check/CheckBulk/ListPermissions, rate limits,
 * writes (admin), or the directory (DirectoryService; admin covers it too).
 */
export const SCOPES = ["check", "ratelimit", "admin", "directory"] as const;
export type Scope = (typeof SCOPES)[number];

/** The authenticated caller of one RPC. */
export interface Caller {
  /** Stable identifier for logs and the decision log: "key:<id>", "jwt:<sub>", "mtls:<cn>", "anonymous". Never a secret. */
  readonly id: string;
  readonly kind: "api_key" | "jwt" | "mtls" | "anonymous";
  readonly scopes: ReadonlySet<Scope>;
  /** When set, every read and write of this caller is confined to this tenant's data. */
  readonly tenantId: string | null;
  /** When the credential stops being valid (a JWT's exp), in ms since the epoch; open streams end then. */
  readonly expiresAtMs?: number;
}

export const ANONYMOUS: Caller = Object.freeze({
  id: "anonymous",
  kind: "anonymous",
  scopes: new Set<Scope>(SCOPES),
  tenantId: null,
});

/**
 * The scope an RPC path needs; null = public (health). Unknown paths need
 * admin, so a new RPC is never open by accident.
 */
export function scopeFor(path: string): Scope | null {
  if (path.startsWith("/grpc.health.v1.Health/")) return null;
  if (path === "/.well-known/authzen-configuration") return null;
  if (path.startsWith("/access/v1/")) return "check";
  if (path.startsWith("/authz.v1.PermissionService/")) return "check";
  // Watch reads what changed (ids only, tenant-confined): a reader's scope.
  if (path === "/authz.v1.WatchService/Watch") return "check";
  if (path === "/authz.v1.RateLimitService/ConsumeRateLimit" || path === "/authz.v1.RateLimitService/GetRateLimitCounters") return "ratelimit";
  if (path === "/envoy.service.auth.v3.Authorization/Check") return "check";
  if (path === "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit") return "ratelimit";
  if (path.startsWith("/authz.v1.DirectoryService/")) return "directory";
  return "admin";
}

/** Whether a credential's scopes satisfy the scope a path needs: "admin" also covers "directory". */
export function holdsScope(scopes: ReadonlySet<Scope>, needed: Scope): boolean {
  return scopes.has(needed) || (needed === "directory" && scopes.has("admin"));
}

export function parseScopes(raw: readonly string[] | string): Set<Scope> {
  const list = typeof raw === "string" ? raw.split(/[\s,]+/) : raw;
  return new Set(list.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)));
}
