import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import { SCOPES, type Caller, parseScopes } from "./caller.js";

/**
 * Client-certificate identities: a JSON object mapping a certificate's
 * subject common name to { scopes, tenant_id }. Only certificates the TLS
 * layer already verified against AUTHZ_TLS_CLIENT_CA_FILE reach this.
 */
export function loadMtlsIdentities(file: string): Map<string, Caller> {
  const doc = JSON.parse(readFileSync(file, "utf8")) as unknown;
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new Error(`${file}: expected a JSON object {"<common name>": {"scopes": [...]}}`);
  const out = new Map<string, Caller>();
  for (const [cn, raw] of Object.entries(doc as Record<string, { scopes?: unknown; tenant_id?: unknown }>)) {
    const scopes = Array.isArray(raw?.scopes) ? raw.scopes.map(String) : [];
    const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (bad.length) throw new Error(`${file} (${cn}): unknown scopes ${bad.join(", ")}`);
    out.set(
      cn,
      Object.freeze({
        id: `mtls:${cn}`,
        kind: "mtls",
        scopes: parseScopes(scopes),
        tenantId: typeof raw.tenant_id === "string" ? raw.tenant_id.toLowerCase() : null,
      }),
    );
  }
  return out;
}

/** The caller a verified peer certificate stands for, if its common name is known. */
export function callerFromCertificate(cert: PeerCertificate | undefined, identities: Map<string, Caller> | undefined): Caller | undefined {
  if (!identities || !cert?.subject) return undefined;
  const cn = cert.subject.CN;
  return typeof cn === "string" ? identities.get(cn) : undefined;
}
