// authz manage: one ManageRoles batch over gRPC, read from a JSON file (or
// stdin) in the API's JSON form; applied all or nothing.
import { readFile } from "node:fs/promises";
import type { JsonObject } from "@bufbuild/protobuf";
import { type CliIo, type Command, EXIT, json, parse, REMOTE_OPTIONS, REMOTE_USAGE, remoteFrom, table, UsageError } from "./common.js";
import { withServer } from "./remote.js";

const USAGE = `usage: authz manage FILE|- [--idempotency-key KEY] [--expected-revision REVISION] [connection flags]

Sends AdminService.ManageRoles with the request in FILE (or stdin for -), a
ManageRolesRequest in the API's JSON form, e.g.
  {"mutations":[{"upsertPermission":{"key":{"organizationId":"ORG","key":"reports.read"}}},
                {"grantPermission":{"role":{"key":{"organizationId":"ORG","key":"viewer"}},
                                    "permission":{"key":{"organizationId":"ORG","key":"reports.read"}}}}]}
The batch applies all or nothing. --idempotency-key and --expected-revision
override the file's fields. Needs the admin scope.

${REMOTE_USAGE}`;

const OPTIONS = {
  ...REMOTE_OPTIONS,
  "idempotency-key": { type: "string" },
  "expected-revision": { type: "string" },
} as const;

async function readRequest(file: string): Promise<JsonObject> {
  let text: string;
  try {
    text = file === "-" ? await readStdin() : await readFile(file, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new UsageError(`${file} must hold one JSON object (a ManageRolesRequest)`);
  return doc as JsonObject;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function render(res: JsonObject): string {
  const results = (res.results ?? []) as JsonObject[];
  return `revision: ${res.revision}\n${table(
    ["#", "ID", "CHANGED"],
    results.map((r, i) => [String(i), String(r.id), String(r.changed)]),
  )}`;
}

/** A flag replaces the file's field, whichever of its two JSON spellings the file used. */
function override(request: JsonObject, jsonName: string, protoName: string, value: string | undefined): void {
  if (value === undefined) return;
  delete request[protoName];
  request[jsonName] = value;
}

export const command: Command = {
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(args, OPTIONS, true);
    const remote = remoteFrom(values, io);
    if (positionals.length !== 1) throw new UsageError("expected exactly one FILE (or - for stdin)");
    const request = await readRequest(positionals[0] as string);
    override(request, "idempotencyKey", "idempotency_key", values["idempotency-key"]);
    override(request, "expectedRevision", "expected_revision", values["expected-revision"]);
    return withServer("manage", remote, io, async (client) => {
      const res = (await client.call("authz.v1.AdminService", "ManageRoles", request)) as JsonObject;
      io.out(remote.output === "json" ? json(res) : render(res));
      return EXIT.OK;
    });
  },
};
