// authz api-key: create (the bootstrap of the first admin key), revoke and
// list API keys, database-direct on DATABASE_URL: the service has no API-key
// RPC yet, so these are the one way to manage keys.
import { type CliIo, type Command, EXIT, json, parse, UsageError } from "./common.js";
import { withDatabase } from "./database.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const USAGE = `usage: authz api-key create --name NAME --scopes check,ratelimit,admin [--tenant UUID]
       authz api-key revoke ID
       authz api-key list

Database-direct on DATABASE_URL. create prints the key once (only its SHA-256
is stored); revoke takes effect on every replica at once; list never shows
secrets.`;

async function create(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { name: { type: "string" }, scopes: { type: "string" }, tenant: { type: "string" } });
  const [{ mintApiKey }, { SCOPES }, { insertApiKey }] = await Promise.all([
    import("../auth/api-keys.js"),
    import("../auth/caller.js"),
    import("../store/api-key-store.js"),
  ]);
  if (!values.name) throw new UsageError("--name NAME is required");
  const scopes = (values.scopes ?? "").split(",").filter(Boolean);
  const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (scopes.length === 0 || bad.length)
    throw new UsageError(`--scopes must list some of ${SCOPES.join(", ")}${bad.length ? ` (unknown: ${bad.join(", ")})` : ""}`);
  const tenant = values.tenant ?? null;
  if (tenant !== null && !UUID.test(tenant)) throw new UsageError("--tenant must be a tenant UUID");
  const { key, record } = mintApiKey(values.name, scopes as (typeof SCOPES)[number][], tenant?.toLowerCase() ?? null);
  return withDatabase("api-key create", io, async (db) => {
    await insertApiKey(db, record);
    io.out(`${JSON.stringify({ id: record.id, name: values.name, scopes: record.scopes, tenant_id: record.tenantId, key })}\n`);
    io.err("authz api-key: store the key now; it is not shown again (only its hash is kept)\n");
    return EXIT.OK;
  });
}

async function revoke(args: string[], io: CliIo): Promise<number> {
  const { positionals } = parse(args, {}, true);
  if (positionals.length !== 1) throw new UsageError("api-key revoke ID");
  const id = positionals[0] as string;
  const { revokeApiKey } = await import("../store/api-key-store.js");
  return withDatabase("api-key revoke", io, async (db) => {
    if (!(await revokeApiKey(db, id))) {
      io.err(`authz api-key: no active key with id ${id}\n`);
      return EXIT.DENIED;
    }
    io.out(`${JSON.stringify({ revoked: id })}\n`);
    return EXIT.OK;
  });
}

async function list(args: string[], io: CliIo): Promise<number> {
  parse(args, {});
  const { listApiKeys } = await import("../store/api-key-store.js");
  return withDatabase("api-key list", io, async (db) => {
    io.out(json(await listApiKeys(db)));
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
