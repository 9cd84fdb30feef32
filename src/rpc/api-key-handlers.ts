// The API-key RPCs of AdminService at the edge: the request checked and
// turned into a key (scopes within the caller's, the tenant defaulting to the
// caller's), the store's rows back as ApiKey messages.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { AdminService, ApiKeySchema } from "../../gen/authz/v1/admin_service_pb.js";
import { apiKeyName, mintApiKey } from "../auth/api-keys.js";
import { ANONYMOUS, holdsScope, type Scope, SCOPES } from "../auth/caller.js";
import { AuthzError, invalidArgument } from "../errors.js";
import { type ApiKeyRow, createApiKey, listApiKeysPage, revokeApiKeyAs } from "../store/api-key-store.js";
import type { SqlClient } from "../store/sql.js";
import { optionalUuid } from "../validation.js";
import type { CallContext, ServiceHandlers } from "./handler-types.js";
import { writeCaller } from "./tenancy.js";

export type ApiKeyHandlers = Pick<ServiceHandlers<typeof AdminService>, "createApiKey" | "listApiKeys" | "revokeApiKey">;

const KEY_ID = /^[0-9a-f]{16}$/;

function keyMessage(k: ApiKeyRow): MessageInitShape<typeof ApiKeySchema> {
  return {
    id: k.id,
    name: k.name,
    scopes: k.scopes,
    tenantId: k.tenantId ?? "",
    createdAt: timestampFromDate(k.createdAt),
    ...(k.revokedAt ? { revokedAt: timestampFromDate(k.revokedAt) } : {}),
  };
}

/** The new key's scopes: known, without repeats, and each held by the caller (no key may grant more than its creator has). */
function scopesFor(raw: readonly string[], ctx: CallContext): Scope[] {
  const held = (ctx.caller ?? ANONYMOUS).scopes;
  const scopes = [...new Set(raw)];
  if (scopes.length === 0) throw invalidArgument(`scopes must list some of ${SCOPES.join(", ")}`, "scopes");
  for (const [i, s] of scopes.entries()) {
    if (!(SCOPES as readonly string[]).includes(s)) throw invalidArgument(`scopes[${i}] must be one of ${SCOPES.join(", ")}`, `scopes[${i}]`);
    if (!holdsScope(held, s as Scope)) {
      throw new AuthzError("PERMISSION_DENIED", `a new key may carry only scopes this credential holds; it lacks "${s}"`, {
        reason: "SCOPE_NOT_HELD",
        metadata: { scope: s },
      });
    }
  }
  return scopes as Scope[];
}

function keyId(v: string, field: string): string {
  if (!KEY_ID.test(v)) throw invalidArgument(`${field} must be an API key id (16 hex digits)`, field);
  return v;
}

export function apiKeyHandlers(db: () => SqlClient): ApiKeyHandlers {
  return {
    async createApiKey(req, ctx) {
      const name = apiKeyName(req.name);
      const scopes = scopesFor(req.scopes, ctx);
      const caller = writeCaller(ctx);
      const tenantId = optionalUuid(req.tenantId, "tenant_id") ?? caller.tenantId;
      const { key, record } = mintApiKey(name, scopes, tenantId);
      const created = await createApiKey(db(), caller, record);
      return { apiKey: keyMessage(created.key), key };
    },
    async listApiKeys(req, ctx) {
      if (req.pageSize < 0 || req.pageSize > 1000) throw invalidArgument("page_size must be between 0 and 1000", "page_size");
      const after = req.pageToken === "" ? "" : keyId(req.pageToken, "page_token");
      const page = await listApiKeysPage(db(), writeCaller(ctx), after, req.pageSize || 100);
      return { apiKeys: page.keys.map(keyMessage), nextPageToken: page.next };
    },
    async revokeApiKey(req, ctx) {
      const revoked = await revokeApiKeyAs(db(), writeCaller(ctx), keyId(req.id, "id"));
      return { revoked };
    },
  };
}
