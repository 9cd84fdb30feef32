import { readFile } from "node:fs/promises";
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import type { Caller } from "./caller.js";
import { parseScopes } from "./caller.js";

export interface JwtOptions {
  /** JWKS URL (keys fetched and cached by jose), or */
  jwksUrl?: string;
  /** a local JWKS file ({"keys": [...]}). */
  jwksFile?: string;
  issuer?: string;
  audience?: string;
  /** Claim holding the scopes (space-separated string or array); default "scope". */
  scopeClaim: string;
  /** Claim holding the tenant id the caller is bound to, if any; default "tenant_id". */
  tenantClaim: string;
}

const CACHE_MAX = 10_000;

/** Verifies bearer JWTs; verified tokens are cached until they expire. */
export class JwtVerifier {
  readonly #key: Parameters<typeof jwtVerify>[1];
  readonly #opts: JwtOptions;
  readonly #cache = new Map<string, { caller: Caller; exp: number }>();

  private constructor(key: Parameters<typeof jwtVerify>[1], opts: JwtOptions) {
    this.#key = key;
    this.#opts = opts;
  }

  static async create(opts: JwtOptions): Promise<JwtVerifier> {
    if (opts.jwksUrl) return new JwtVerifier(createRemoteJWKSet(new URL(opts.jwksUrl)), opts);
    if (opts.jwksFile) {
      const jwks = JSON.parse(await readFile(opts.jwksFile, "utf8")) as JSONWebKeySet;
      if (!Array.isArray(jwks.keys)) throw new Error(`${opts.jwksFile}: expected a JWKS document {"keys": [...]}`);
      return new JwtVerifier(createLocalJWKSet(jwks), opts);
    }
    throw new Error("JWT verification needs a JWKS URL or a JWKS file");
  }

  /** The caller for a token, or undefined when it does not verify (bad signature, expired, wrong issuer/audience). */
  async verify(token: string, now = Date.now()): Promise<Caller | undefined> {
    const hit = this.#cache.get(token);
    if (hit && hit.exp > now) return hit.caller;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#key, {
        ...(this.#opts.issuer ? { issuer: this.#opts.issuer } : {}),
        ...(this.#opts.audience ? { audience: this.#opts.audience } : {}),
        currentDate: new Date(now),
      }));
    } catch {
      return undefined;
    }
    const rawScopes = payload[this.#opts.scopeClaim];
    const scopes = parseScopes(Array.isArray(rawScopes) ? rawScopes.map(String) : typeof rawScopes === "string" ? rawScopes : []);
    const tenant = payload[this.#opts.tenantClaim];
    const caller: Caller = Object.freeze({
      id: `jwt:${payload.sub ?? "unknown"}`,
      kind: "jwt",
      scopes,
      tenantId: typeof tenant === "string" && tenant ? tenant.toLowerCase() : null,
      ...(payload.exp ? { expiresAtMs: payload.exp * 1000 } : {}),
    });
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(token, { caller, exp: payload.exp ? payload.exp * 1000 : now + 60_000 });
    return caller;
  }
}
