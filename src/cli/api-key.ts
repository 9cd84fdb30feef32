// authz api-key: create, list and revoke API keys over gRPC (AdminService,
// admin scope). `create --bootstrap` writes the first key straight into
// DATABASE_URL, for when no key exists yet to call the server with.
import type { JsonObject } from "@bufbuild/protobuf";
import { type CliIo, type Command, EXIT, json, parse, REMOTE_OPTIONS, REMOTE_USAGE, remoteFrom, table, UsageError } from "./common.js";
import { withDatabase } from "./database.js";
import { withServer } from "./remote.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ADMIN = "authz.v1.AdminService";

const USAGE = `usage: authz api-key create --name NAME --scopes check,ratelimit,admin,directory [--tenant UUID] [connection flags]
       authz api-key create --bootstrap --name NAME --scopes ... [--tenant UUID]
       authz api-key revoke ID [connection flags]
       authz api-key list [connection flags]

Over gRPC (AdminService, admin scope): create prints the key once (only its
SHA-256 is stored; its scopes must be among the caller's, a tenant-bound
caller creates keys of its tenant); revoke takes effect on every replica at
once; list shows every key the caller may see, never secrets.
--bootstrap: create the first key database-direct on DATABASE_URL, without a
server or a credential.

${REMOTE_USAGE}`;

const CREATE_OPTIONS = {
  ...REMOTE_OPTIONS,
  name: { type: "string" },
  scopes: { type: "string" },
  tenant: { type: "string" },
  bootstrap: { type: "boolean" },
} as const;

async function bootstrap(name: string, scopes: string[], tenant: string | null, io: CliIo): Promise<number> {
  const [{ apiKeyName, mintApiKey }, { SCOPES }, { insertApiKey }] = await Promise.all([
    import("../auth/api-keys.js"),
    import("../auth/caller.js"),
    import("../store/api-key-store.js"),
  ]);
  const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (bad.length) throw new UsageError(`--scopes must list some of ${SCOPES.join(", ")} (unknown: ${bad.join(", ")})`);
  try {
    apiKeyName(name);
  } catch (err) {
    throw new UsageError(`--name: ${err instanceof Error ? err.message : String(err)}`);
  }
  const { key, record } = mintApiKey(name, scopes as (typeof SCOPES)[number][], tenant);
  return withDatabase("api-key create --bootstrap", io, async (db) => {
    await insertApiKey(db, record);
    io.out(json({ apiKey: { id: record.id, name, scopes: record.scopes, tenantId: record.tenantId ?? "" }, key }));
    return EXIT.OK;
  });
}

async function create(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, CREATE_OPTIONS);
  if (!values.name) throw new UsageError("--name NAME is required");
  const scopes = (values.scopes ?? "").split(",").filter(Boolean);
  if (scopes.length === 0) throw new UsageError("--scopes must list some of check, ratelimit, admin, directory");
  const tenant = values.tenant?.toLowerCase() ?? null;
  if (tenant !== null && !UUID.test(tenant)) throw new UsageError("--tenant must be a tenant UUID");
  const done = (code: number) => {
    if (code === EXIT.OK) io.err("authz api-key: store the key now; it is not shown again (only its hash is kept)\n");
    return code;
  };
  if (values.bootstrap) return done(await bootstrap(values.name, scopes, tenant, io));
  const remote = remoteFrom(values, io);
  return withServer("api-key create", remote, io, async (client) => {
    const res = (await client.call(ADMIN, "CreateApiKey", { name: values.name as string, scopes, tenantId: tenant ?? "" })) as JsonObject;
    io.out(json(res));
    return done(EXIT.OK);
  });
}

async function revoke(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, REMOTE_OPTIONS, true);
  if (positionals.length !== 1) throw new UsageError("expected exactly one key ID");
  const remote = remoteFrom(values, io);
  return withServer("api-key revoke", remote, io, async (client) => {
    io.out(json(await client.call(ADMIN, "RevokeApiKey", { id: positionals[0] as string })));
    return EXIT.OK;
  });
}

async function list(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, REMOTE_OPTIONS);
  const remote = remoteFrom(values, io);
  return withServer("api-key list", remote, io, async (client) => {
    const keys: JsonObject[] = [];
    let token = "";
    do {
      const page = (await client.call(ADMIN, "ListApiKeys", { pageSize: 1000, pageToken: token })) as JsonObject;
      keys.push(...(page.apiKeys as JsonObject[]));
      token = String(page.nextPageToken ?? "");
    } while (token);
    if (remote.output === "json") io.out(json({ apiKeys: keys }));
    else {
      const rows = keys.map((k) => [
        String(k.id),
        String(k.name),
        (k.scopes as string[]).join(","),
        String(k.tenantId),
        String(k.createdAt),
        String(k.revokedAt ?? ""),
      ]);
      io.out(table(["ID", "NAME", "SCOPES", "TENANT", "CREATED", "REVOKED"], rows));
    }
    return EXIT.OK;
  });
}

export const command: Command = {
  usage: USAGE,
  run(args: string[], io: CliIo): Promise<number> {
    const [sub, ...rest] = args;
    if (sub === "create") return create(rest, io);
    if (sub === "revoke") return revoke(rest, io);
    if (sub === "list") return list(rest, io);
    throw new UsageError("expected create, revoke ID or list");
  },
};
