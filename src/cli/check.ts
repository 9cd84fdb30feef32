// authz check: one Check over gRPC; exit 0 when allowed, 1 when denied.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { type CliIo, type Command, EXIT, json, parse, REMOTE_OPTIONS, REMOTE_USAGE, ref, remoteFrom, table, UsageError } from "./common.js";
import { withServer } from "./remote.js";

const USAGE = `usage: authz check --subject TYPE:ID --permission KEY --resource TYPE:ID [--explain]
                   [--at-least-as-fresh REVISION | --fully-consistent] [connection flags]

Asks PermissionService.Check. Exit 0 when allowed, 1 when denied (the reason,
e.g. DECISION_REASON_NO_GRANT, is in the output).

${REMOTE_USAGE}`;

const OPTIONS = {
  ...REMOTE_OPTIONS,
  subject: { type: "string" },
  permission: { type: "string" },
  resource: { type: "string" },
  explain: { type: "boolean" },
  "at-least-as-fresh": { type: "string" },
  "fully-consistent": { type: "boolean" },
} as const;

/** The Consistency message from the flags, or undefined for the default (minimize latency). */
export function consistencyFrom(values: { "at-least-as-fresh"?: string | undefined; "fully-consistent"?: boolean | undefined }): JsonObject | undefined {
  const fresh = values["at-least-as-fresh"];
  if (fresh !== undefined && values["fully-consistent"]) throw new UsageError("--at-least-as-fresh and --fully-consistent exclude each other");
  if (fresh !== undefined) return { atLeastAsFresh: fresh };
  if (values["fully-consistent"]) return { fullyConsistent: true };
  return undefined;
}

function render(res: JsonObject): string {
  const rows = [[String(res.allowed), String(res.reason), String(res.revision)]];
  let out = table(["ALLOWED", "REASON", "REVISION"], rows);
  const steps = ((res.explanation as JsonObject | null)?.steps ?? []) as JsonObject[];
  if (steps.length > 0) {
    out += `\n${table(
      ["STEP", "ID", "KEY", "SCOPE"],
      steps.map((s) => {
        const scope = s.scope as JsonObject | null;
        return [String(s.kind).replace("EXPLANATION_STEP_KIND_", ""), String(s.id ?? ""), String(s.key ?? ""), scope ? `${scope.type}:${scope.id}` : ""];
      }),
    )}`;
  }
  const message = (res.explanation as JsonObject | null)?.message;
  if (message) out += `\n${message}\n`;
  return out;
}

export const command: Command = {
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parse(args, OPTIONS);
    const remote = remoteFrom(values, io);
    const subject = ref(values.subject, "subject", "user:00000003-0000-4000-8000-000000000001");
    const resource = ref(values.resource, "resource", "organization:00000002-0000-4000-8000-000000000001");
    if (!values.permission) throw new UsageError("--permission KEY is required");
    const consistency = consistencyFrom(values);
    const request: JsonObject = { subject, permission: values.permission, resource, explain: values.explain ?? false };
    if (consistency) request.consistency = consistency;
    return withServer("check", remote, io, async (client) => {
      const res = (await client.call("authz.v1.PermissionService", "Check", request as JsonValue)) as JsonObject;
      io.out(remote.output === "json" ? json(res) : render(res));
      return res.allowed === true ? EXIT.OK : EXIT.DENIED;
    });
  },
};
