// authz list: every role and permission of a subject (ListPermissions over
// gRPC), all pages followed; with --resource, one organization only.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { consistencyFrom } from "./check.js";
import { type CliIo, type Command, EXIT, json, parse, REMOTE_OPTIONS, REMOTE_USAGE, ref, remoteFrom, table, count } from "./common.js";
import { withServer } from "./remote.js";

const USAGE = `usage: authz list --subject TYPE:ID [--resource organization:ID] [--page-size N] [--max-pages N]
                  [--at-least-as-fresh REVISION | --fully-consistent] [connection flags]

Asks PermissionService.ListPermissions and follows next_page_token until the
list is complete (at most --max-pages pages, default 1000); the server keeps
every page at the first page's revision (ABORTED, exit 1, if the subject's
roles changed meanwhile: run it again). JSON output is one ListPermissionsResponse with every page's
scopes; table output is one row per scope.

${REMOTE_USAGE}`;

const OPTIONS = {
  ...REMOTE_OPTIONS,
  subject: { type: "string" },
  resource: { type: "string" },
  "page-size": { type: "string" },
  "max-pages": { type: "string" },
  "at-least-as-fresh": { type: "string" },
  "fully-consistent": { type: "boolean" },
} as const;

function render(res: JsonObject): string {
  const scopes = res.scopes as JsonObject[];
  const rows = scopes.map((s) => {
    const scope = s.scope as JsonObject | null;
    return [String(s.urlSafeOrgName || s.orgId), scope ? `${scope.type}:${scope.id}` : "", String(s.userRole ?? ""), (s.userPermissions as string[]).join(",")];
  });
  return `subject status: ${res.subjectStatus}  revision: ${res.revision}\n${table(["ORGANIZATION", "SCOPE", "ROLE", "PERMISSIONS"], rows)}`;
}

export const command: Command = {
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parse(args, OPTIONS);
    const remote = remoteFrom(values, io);
    const subject = ref(values.subject, "subject", "user:00000003-0000-4000-8000-000000000001");
    const resource = values.resource === undefined ? undefined : ref(values.resource, "resource", "organization:00000002-0000-4000-8000-000000000001");
    const pageSize = count(values["page-size"], "page-size", 100, 1000);
    const maxPages = count(values["max-pages"], "max-pages", 1000, 100_000);
    const first = consistencyFrom(values);
    return withServer("list", remote, io, async (client) => {
      const scopes: JsonValue[] = [];
      let res: JsonObject = {};
      let token = "";
      for (let page = 0; page < maxPages; page++) {
        // The page token carries the first page's revision: later pages need no consistency of their own.
        const request: JsonObject = { subject, pageSize, pageToken: token };
        if (resource) request.resource = resource;
        if (page === 0 && first) request.consistency = first;
        res = (await client.call("authz.v1.PermissionService", "ListPermissions", request)) as JsonObject;
        scopes.push(...(res.scopes as JsonValue[]));
        token = String(res.nextPageToken ?? "");
        if (!token) break;
      }
      const all = { ...res, scopes, nextPageToken: token };
      io.out(remote.output === "json" ? json(all) : render(all));
      if (token) io.err(`authz list: stopped after --max-pages ${maxPages} pages; next_page_token ${token}\n`);
      return EXIT.OK;
    });
  },
};
