// The api_keys table (migration 0005): the one place its SQL lives.

import type { SqlQuerier } from "./sql.js";

/** One stored key: its id, name, the SHA-256 of its secret, scopes and tenant binding. */
export interface StoredApiKey {
  id: string;
  name: string;
  secretSha256: string;
  scopes: string[];
  tenantId: string | null;
}

/** A key as `api-key list` shows it (revoked ones included). */
export interface ListedApiKey {
  id: string;
  name: string;
  scopes: string[];
  tenant_id: string | null;
  created_at: unknown;
  revoked_at: unknown;
}

/** The keys not revoked. */
export async function readActiveApiKeys(db: SqlQuerier): Promise<StoredApiKey[]> {
  const rows = await db.query<{ id: string; name: string; secret_sha256: string; scopes: string[]; tenant_id: string | null }>(
    "select id, name, secret_sha256, scopes, tenant_id::text as tenant_id from api_keys where revoked_at is null",
  );
  return rows.map((r) => ({ id: r.id, name: r.name, secretSha256: r.secret_sha256, scopes: r.scopes, tenantId: r.tenant_id }));
}

export async function insertApiKey(db: SqlQuerier, k: StoredApiKey): Promise<void> {
  await db.query("insert into api_keys (id, name, secret_sha256, scopes, tenant_id) values ($1, $2, $3, $4::text::text[], $5::text::uuid)", [
    k.id,
    k.name,
    k.secretSha256,
    `{${k.scopes.join(",")}}`,
    k.tenantId,
  ]);
}

/** Revokes a key; false when there is no active key with that id. Every replica drops it on the NOTIFY. */
export async function revokeApiKey(db: SqlQuerier, id: string): Promise<boolean> {
  const rows = await db.query("update api_keys set revoked_at = now() where id = $1 and revoked_at is null returning id", [id]);
  return rows.length > 0;
}

export function listApiKeys(db: SqlQuerier): Promise<ListedApiKey[]> {
  return db.query<ListedApiKey & Record<string, unknown>>(
    "select id, name, scopes, tenant_id::text as tenant_id, created_at, revoked_at from api_keys order by created_at, id",
  );
}
