// The api_keys table (migration 0005): the one place its SQL lives.

import { AuthzError } from "../errors.js";
import { confine } from "../tenancy.js";
import { type SqlClient, SqlError, type SqlQuerier } from "./sql.js";
import { runWrite, type WriteCaller } from "./write-pipeline.js";
import { fromSqlError } from "./write-errors.js";

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

// ---------------------------------------------------------------------------
// The API-key RPCs (CreateApiKey, ListApiKeys, RevokeApiKey): writes through
// the write pipeline, tenant-confined like every other write.

/** A key as the RPCs return it. */
export interface ApiKeyRow {
  id: string;
  name: string;
  scopes: string[];
  tenantId: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

type RawRow = { id: string; name: string; scopes: string[]; tenant_id: string | null; created_at: unknown; revoked_at: unknown };
const COLUMNS = "id, name, scopes, tenant_id::text as tenant_id, created_at, revoked_at";
const asDate = (v: unknown): Date => (v instanceof Date ? v : new Date(String(v)));
const toRow = (r: RawRow): ApiKeyRow => ({
  id: r.id,
  name: r.name,
  scopes: r.scopes,
  tenantId: r.tenant_id,
  createdAt: asDate(r.created_at),
  revokedAt: r.revoked_at === null ? null : asDate(r.revoked_at),
});

/** Stores a minted key (the caller checked its scopes); a bound caller may create keys of its own tenant only. */
export async function createApiKey(db: SqlClient, caller: WriteCaller, k: StoredApiKey): Promise<{ revision: string; key: ApiKeyRow }> {
  const { revision, value } = await runWrite(db, caller, {
    rpc: "CreateApiKey",
    request: { id: k.id, name: k.name, scopes: k.scopes, tenantId: k.tenantId },
    async confine() {
      confine(caller, k.tenantId, `tenant_id ${k.tenantId ?? "(none: an unbound key)"}`);
    },
    async apply({ tx }) {
      try {
        const rows = await tx.query<RawRow>(
          `insert into api_keys (id, name, secret_sha256, scopes, tenant_id) values ($1, $2, $3, $4::text::text[], $5::text::uuid) returning ${COLUMNS}`,
          [k.id, k.name, k.secretSha256, `{${k.scopes.join(",")}}`, k.tenantId],
        );
        return toRow(rows[0] as RawRow);
      } catch (err) {
        throw err instanceof SqlError ? fromSqlError(err, "tenant_id") : err;
      }
    },
  });
  return { revision, key: value };
}

/** Revokes a key: true when this call revoked it, false when it already was; NOT_FOUND when there is none. */
export async function revokeApiKeyAs(db: SqlClient, caller: WriteCaller, id: string): Promise<boolean> {
  const { value } = await runWrite(db, caller, {
    rpc: "RevokeApiKey",
    request: { id },
    confine: (c) => c.apiKey(id, `api key ${id}`),
    async apply({ tx }) {
      const [row] = await tx.query<{ revoked: boolean }>("select revoked_at is not null as revoked from api_keys where id = $1 for update", [id]);
      if (!row) throw new AuthzError("NOT_FOUND", `no API key with id ${id}`, { reason: "API_KEY_NOT_FOUND" });
      if (row.revoked) return false;
      await tx.query("update api_keys set revoked_at = now() where id = $1", [id]);
      return true;
    },
  });
  return value;
}

/** One page of keys ordered by id, after `after`; a bound caller sees its tenant's keys only. */
export async function listApiKeysPage(
  db: SqlQuerier,
  caller: Pick<WriteCaller, "tenantId">,
  after: string,
  pageSize: number,
): Promise<{ keys: ApiKeyRow[]; next: string }> {
  const rows = await db.query<RawRow>(
    `select ${COLUMNS} from api_keys where id > $1 and ($2::text is null or tenant_id = $2::text::uuid) order by id limit $3`,
    [after, caller.tenantId, pageSize + 1],
  );
  const keys = rows.slice(0, pageSize).map(toRow);
  return { keys, next: rows.length > pageSize ? (keys[keys.length - 1]?.id ?? "") : "" };
}
