// authz lookup: who may do a permission on a resource (LookupSubjects), or on
// which resources of a type a subject may do it (LookupResources), over gRPC,
// every page followed.
import type { JsonObject } from "@bufbuild/protobuf";
import { consistencyFrom } from "./check.js";
import { type CliIo, type Command, EXIT, json, parse, REMOTE_OPTIONS, REMOTE_USAGE, ref, remoteFrom, table, UsageError, count } from "./common.js";
import { withServer } from "./remote.js";

const USAGE = `usage: authz lookup subjects --permission KEY --resource TYPE:ID [--subject-type TYPE]
       authz lookup resources --subject TYPE:ID --permission KEY --resource-type TYPE
         [--with-grants] [--page-size N] [--max-pages N]
         [--at-least-as-fresh REVISION | --fully-consistent] [connection flags]

Asks PermissionService.LookupSubjects or LookupResources and follows
next_page_token until the answer is complete (at most --max-pages pages,
default 1000). The answers are exactly the ones Check gives. JSON output is one
response with every page's subjects (or resources); table output is one row
each.

${REMOTE_USAGE}`;

const OPTIONS = {
  ...REMOTE_OPTIONS,
  subject: { type: "string" },
  resource: { type: "string" },
  permission: { type: "string" },
  "subject-type": { type: "string" },
  "resource-type": { type: "string" },
  "with-grants": { type: "boolean" },
  "page-size": { type: "string" },
  "max-pages": { type: "string" },
  "at-least-as-fresh": { type: "string" },
  "fully-consistent": { type: "boolean" },
} as const;

const refText = (r: JsonObject | null | undefined) => (r ? `${r.type}:${r.id}` : "");

export const command: Command = {
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(args, OPTIONS, true);
    const kind = positionals[0];
    if (positionals.length !== 1 || (kind !== "subjects" && kind !== "resources")) throw new UsageError("expected subjects or resources");
    const remote = remoteFrom(values, io);
    if (!values.permission) throw new UsageError("--permission KEY is required");
    const base: JsonObject = { permission: values.permission, withGrants: values["with-grants"] ?? false };
    if (kind === "subjects") {
      base.resource = ref(values.resource, "resource", "organization:00000002-0000-4000-8000-000000000001");
      if (values["subject-type"]) base.subjectType = values["subject-type"];
    } else {
      base.subject = ref(values.subject, "subject", "user:00000003-0000-4000-8000-000000000001");
      if (!values["resource-type"]) throw new UsageError("--resource-type TYPE is required (tenant, organization or avatar)");
      base.resourceType = values["resource-type"];
    }
    const pageSize = count(values["page-size"], "page-size", 100, 1000);
    const maxPages = count(values["max-pages"], "max-pages", 1000, 100_000);
    const first = consistencyFrom(values);
    const method = kind === "subjects" ? "LookupSubjects" : "LookupResources";
    return withServer(`lookup ${kind}`, remote, io, async (client) => {
      const found: JsonObject[] = [];
      let res: JsonObject = {};
      let token = "";
      for (let page = 0; page < maxPages; page++) {
        const request: JsonObject = { ...base, pageSize, pageToken: token };
        if (page === 0 && first) request.consistency = first;
        res = (await client.call("authz.v1.PermissionService", method, request)) as JsonObject;
        found.push(...(res[kind] as JsonObject[]));
        token = String(res.nextPageToken ?? "");
        if (!token) break;
      }
      const all = { ...res, [kind]: found, nextPageToken: token };
      if (remote.output === "json") io.out(json(all));
      else {
        const key = kind === "subjects" ? "subject" : "resource";
        const rows = found.map((f) => [refText(f[key] as JsonObject), f.grant ? JSON.stringify(f.grant) : ""]);
        io.out(`revision: ${res.revision}\n${table([key.toUpperCase(), "GRANT"], rows)}`);
      }
      if (token) io.err(`authz lookup: stopped after --max-pages ${maxPages} pages; next_page_token ${token}\n`);
      return EXIT.OK;
    });
  },
};
