// authz size: the pod's memory, heap and start-up budget for an expected
// amount of data (docs/operations.md), as a kustomize patch for an overlay.
import { type CliIo, type Command, EXIT, json, parse, UsageError } from "./common.js";

const USAGE = `usage: authz size --users N --organizations N --assignments N --memberships N [--output yaml|json]

Prints the Deployment patch (memory request and limit, --max-old-space-size,
startupProbe budget) for the expected data, from the formula in
docs/operations.md. Write it into an overlay:
  authz size --users 200000 --organizations 20000 --assignments 1000000 --memberships 200000 \\
    > k8s/overlays/example/deployment-resources.yaml`;

const OPTIONS = {
  users: { type: "string" },
  organizations: { type: "string" },
  assignments: { type: "string" },
  memberships: { type: "string" },
  output: { type: "string", short: "o" },
} as const;

function count(raw: string | undefined, flag: string): number {
  if (raw === undefined) throw new UsageError(`--${flag} N is required`);
  const n = Number(raw.replaceAll("_", ""));
  if (!/^[\d_]+$/.test(raw) || !Number.isSafeInteger(n) || n > 1e10) throw new UsageError(`--${flag} must be a whole number up to 10,000,000,000`);
  return n;
}

export const command: Command = {
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parse(args, OPTIONS);
    const output = values.output ?? "yaml";
    if (output !== "yaml" && output !== "json") throw new UsageError(`--output must be yaml or json, got "${output}"`);
    const size = {
      users: count(values.users, "users"),
      organizations: count(values.organizations, "organizations"),
      assignments: count(values.assignments, "assignments"),
      memberships: count(values.memberships, "memberships"),
    };
    const { podSize, resourcesPatch } = await import("../sizing.js");
    io.out(output === "json" ? json({ size, pod: podSize(size) }) : resourcesPatch(size));
    return EXIT.OK;
  },
};
