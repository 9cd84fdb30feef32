import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { AuthzError, invalidArgument } from "../errors.js";
import { readActiveApiKeys } from "../store/api-key-store.js";
import type { SqlQuerier } from "../store/sql.js";
import { plainName } from "../validation.js";
import { type Caller, parseScopes, type Scope, SCOPES } from "./caller.js";

// API keys look like azk_<16 hex id>_<43 base64url secret>. Only the SHA-256
// of the secret is stored (in the api_keys table or a mounted file); the
// presented secret is hashed and compared in constant time.

const KEY_FORMAT = /^azk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ApiKeyRecord {
  id: string;
  name: string;
  /** Hex SHA-256 of the secret part. */
  secretSha256: string;
  scopes: Scope[];
  tenantId: string | null;
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** A new key: the full key string (shown once) and the record to store. */
const MAX_KEY_NAME_BYTES = 200;

/** An API key's name: 1-200 bytes, not blank, printable (plainName). */
export function apiKeyName(v: unknown): string {
  const name = plainName(v, "name", MAX_KEY_NAME_BYTES) ?? "";
  if (name.trim() === "") throw invalidArgument("name must not be empty", "name");
  return name;
}

export function mintApiKey(name: string, scopes: Scope[], tenantId: string | null): { key: string; record: ApiKeyRecord } {
  const id = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { key: `azk_${id}_${secret}`, record: { id, name, secretSha256: hashSecret(secret), scopes, tenantId } };
}

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith("azk_");
}

/** Reads a key file: a JSON array of { id, name, sha256, scopes, tenant_id }. */
export async function readApiKeyFile(path: string): Promise<ApiKeyRecord[]> {
  const doc = JSON.parse(await readFile(path, "utf8")) as unknown;
  if (!Array.isArray(doc)) throw new Error(`${path}: expected a JSON array of API keys`);
  return doc.map((raw, i) => {
    const r = raw as Record<string, unknown>;
    const id = String(r.id ?? "");
    const sha = String(r.sha256 ?? "");
    if (!/^[0-9a-f]{16}$/.test(id)) throw new Error(`${path}[${i}]: id must be 16 hex characters`);
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new Error(`${path}[${i}] (id ${id}): sha256 must be 64 hex characters (the SHA-256 of the secret)`);
    const scopes = Array.isArray(r.scopes) ? r.scopes.map(String) : [];
    const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (bad.length) throw new Error(`${path}[${i}] (id ${id}): unknown scopes ${bad.join(", ")}`);
    return {
      id,
      name: String(r.name ?? id),
      secretSha256: sha,
      scopes: [...parseScopes(scopes)],
      tenantId: r.tenant_id === undefined || r.tenant_id === null ? null : String(r.tenant_id),
    };
  });
}

export async function readApiKeyTable(db: SqlQuerier): Promise<ApiKeyRecord[]> {
  return (await readActiveApiKeys(db)).map((k) => ({ ...k, scopes: [...parseScopes(k.scopes)] }));
}

/** Most verified keys remembered between reloads; past it the memory starts over. */
const MAX_VERIFIED = 4096;

type RingEntry = { record: ApiKeyRecord; hash: Buffer; caller: Caller };

/**
 * The keys currently valid, by id. Replaced wholesale on reload (on the
 * change feed's notice, so a revocation takes effect at once). A presented key
 * that verified is remembered until the next reload: its hash is computed
 * once per key and reload, not on every call.
 */
export class ApiKeyRing {
  #byId = new Map<string, RingEntry>();
  /** Presented key -> its caller, for keys that verified since the last replace(). */
  #verified = new Map<string, Caller>();
  #complete = false;
  #verifications = 0;
  #listeners = new Set<() => void>();

  /** Every key source has been read: from now on an unknown key is invalid rather than not loaded yet. */
  markComplete(): void {
    this.#complete = true;
  }

  replace(records: Iterable<ApiKeyRecord>): void {
    const next = new Map<string, RingEntry>();
    for (const record of records) {
      next.set(record.id, {
        record,
        hash: Buffer.from(record.secretSha256, "hex"),
        caller: Object.freeze({ id: `key:${record.id}`, kind: "api_key", scopes: new Set(record.scopes), tenantId: record.tenantId }),
      });
    }
    this.#byId = next;
    this.#verified = new Map();
    for (const listener of [...this.#listeners]) listener();
  }

  /**
   * Calls `listener` after every replace(): a key may have been revoked or
   * changed (open streams check their credential again). Returns the unsubscribe.
   */
  onReplace(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get size(): number {
    return this.#byId.size;
  }

  /** Hash comparisons done so far (calls answered from the remembered keys do none). */
  get verifications(): number {
    return this.#verifications;
  }

  /**
   * The caller for a presented key, or undefined when it is not a valid,
   * unrevoked key. Before the ring is complete, a well-formed key it does not
   * know is UNAVAILABLE (API_KEYS_NOT_LOADED): it may be valid.
   */
  verify(presented: string): Caller | undefined {
    // Only keys that verified are remembered, so a hit says nothing an answer would not.
    const known = this.#verified.get(presented);
    if (known) return known;
    const m = KEY_FORMAT.exec(presented);
    if (!m) return undefined;
    this.#verifications++;
    const entry = this.#byId.get(m[1] as string);
    const got = Buffer.from(hashSecret(m[2] as string), "hex");
    // Compare even when the id is unknown, so timing does not tell which ids exist.
    const want = entry?.hash ?? Buffer.alloc(32);
    if (timingSafeEqual(got, want) && entry) {
      if (this.#verified.size >= MAX_VERIFIED) this.#verified = new Map();
      this.#verified.set(presented, entry.caller);
      return entry.caller;
    }
    if (!this.#complete) {
      throw new AuthzError("UNAVAILABLE", "API keys are still loading on this replica; retry shortly", { reason: "API_KEYS_NOT_LOADED" });
    }
    return undefined;
  }
}
