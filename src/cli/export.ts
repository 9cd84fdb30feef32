// authz export: the directory (or one tenant's part) as one import-format
// JSON document on stdout, streamed from AdminService/ExportDirectory over
// gRPC and written page by page as it arrives, so a large directory never
// sits in memory whole. --counters adds the live rate-limit counters (the
// import refuses them).
import type { JsonObject } from "@bufbuild/protobuf";
import { type CliIo, type Command, EXIT, parse, REMOTE_OPTIONS, REMOTE_USAGE, remoteFrom, UsageError } from "./common.js";
import { withServer } from "./remote.js";

const USAGE = `usage: authz export [--tenant UUID] [--counters] [connection flags] > directory.json

Writes the directory in the import format (docs/data-model.md, "Export"), every
record read at one revision, noted in "$comment". --tenant: one tenant's part
(a tenant-bound key always gets its own). --counters: also the live rate-limit
counters (section RateLimitCounter, for inspection; the import refuses them).
\`authz import\` of the output into an empty database rebuilds the same directory.

${REMOTE_USAGE}`;

const OPTIONS = { ...REMOTE_OPTIONS, tenant: { type: "string" }, counters: { type: "boolean" } } as const;

/** Writes JSON text in order: `{`, then each section's records as they come, then the revision and `}`. */
function documentWriter(out: (s: string) => void) {
  let section: string | undefined;
  let first = true;
  return {
    page(name: string, records: unknown[]) {
      for (const r of records) {
        if (name !== section) {
          out(`${section === undefined ? "{\n" : "\n  ],\n"}  ${JSON.stringify(name)}: [\n`);
          section = name;
          first = true;
        }
        out(`${first ? "" : ",\n"}    ${JSON.stringify(r)}`);
        first = false;
      }
    },
    end(revision: string) {
      out(`${section === undefined ? "{\n" : "\n  ],\n"}  "$comment": ${JSON.stringify(`authz export at revision ${revision}`)}\n}\n`);
    },
  };
}

export const command: Command = {
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parse(args, OPTIONS);
    const remote = remoteFrom(values, io);
    if (values.tenant !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(values.tenant)) {
      throw new UsageError("--tenant must be a tenant UUID");
    }
    const request: JsonObject = { tenantId: values.tenant ?? "", includeCounters: values.counters ?? false };
    return withServer("export", remote, io, async (client) => {
      const w = documentWriter((s) => io.out(s));
      let revision = "0";
      for await (const msg of client.stream("authz.v1.AdminService", "ExportDirectory", request)) {
        const m = msg as JsonObject;
        revision = String(m.revision ?? revision);
        w.page(String(m.section ?? ""), JSON.parse(String(m.recordsJson ?? "[]")) as unknown[]);
      }
      w.end(revision);
      return EXIT.OK;
    });
  },
};
