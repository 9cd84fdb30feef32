// authz watch: follow the change log over gRPC (WatchService.Watch), one
// line per message as it arrives, until interrupted, the server ends the
// stream, or --max-changes changes were printed.
import type { JsonObject } from "@bufbuild/protobuf";
import { type CliIo, type Command, EXIT, parse, REMOTE_OPTIONS, REMOTE_USAGE, remoteFrom, UsageError } from "./common.js";
import { withServer } from "./remote.js";

const USAGE = `usage: authz watch [--from-revision REVISION] [--tenant UUID] [--organization UUID]
                   [--table NAME ...] [--heartbeat-ms N] [--max-changes N] [connection flags]

Streams WatchService.Watch: the committed changes after --from-revision (default:
from now on), in revision order. JSON output: one WatchResponse per line (NDJSON;
heartbeats without changes are left out); table output: one line per change.
Ends with exit 0 once --max-changes changes were printed (the message that
reaches the count is printed whole), or when the server ends the stream;
resume with --from-revision set to the last revision printed.

${REMOTE_USAGE}`;

const OPTIONS = {
  ...REMOTE_OPTIONS,
  "from-revision": { type: "string" },
  tenant: { type: "string" },
  organization: { type: "string" },
  table: { type: "string", multiple: true },
  "heartbeat-ms": { type: "string" },
  "max-changes": { type: "string" },
} as const;

function changeLine(c: JsonObject): string {
  const ids = Object.entries((c.ids ?? {}) as Record<string, string>)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return `${c.revision}\t${String(c.operation).replace("WATCH_OPERATION_", "")}\t${c.table}\t${ids}\n`;
}

export const command: Command = {
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parse(args, OPTIONS);
    const remote = remoteFrom(values, io);
    const max = values["max-changes"] === undefined ? Number.POSITIVE_INFINITY : Number(values["max-changes"]);
    if (!(max >= 1) || (Number.isFinite(max) && !/^\d+$/.test(values["max-changes"] as string)))
      throw new UsageError("--max-changes must be a whole number from 1");
    const request: JsonObject = {
      fromRevision: values["from-revision"] ?? "",
      tenantId: values.tenant ?? "",
      organizationId: values.organization ?? "",
      tables: values.table ?? [],
    };
    if (values["heartbeat-ms"] !== undefined) {
      if (!/^\d+$/.test(values["heartbeat-ms"])) throw new UsageError("--heartbeat-ms must be a whole number of milliseconds");
      request.heartbeatMs = Number(values["heartbeat-ms"]);
    }
    return withServer("watch", remote, io, async (client) => {
      let printed = 0;
      for await (const msg of client.stream("authz.v1.WatchService", "Watch", request)) {
        const changes = (msg as JsonObject).changes as JsonObject[];
        if (changes.length === 0) continue;
        if (remote.output === "json") io.out(`${JSON.stringify(msg)}\n`);
        else for (const c of changes) io.out(changeLine(c));
        printed += changes.length;
        if (printed >= max) break; // leaving the loop cancels the stream
      }
      return EXIT.OK;
    });
  },
};
