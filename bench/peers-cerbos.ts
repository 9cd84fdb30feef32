// The Cerbos side of the peers benchmark (bench/peers.ts): the binary from npm,
// installed by the benchmark itself outside the repository; its configuration;
// a resource policy equivalent to the generated dataset's organization roles;
// and CheckResources messages encoded by hand from the field numbers of
// Cerbos's public protos (cerbos/request/v1, cerbos/engine/v1,
// cerbos/response/v1), so no Cerbos SDK or generated code is needed.

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import * as path from "node:path";

import { ORG_PERM_KEYS, ORG_ROLE_KEYS } from "./dataset.js";

export const CERBOS_PACKAGE = "@cerbos/cerbos-linux-x64";
export const CHECK_RESOURCES_PATH = "/cerbos.svc.v1.CerbosService/CheckResources";

export type Install = { ok: true; bin: string; version: string } | { ok: false; reason: string };

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/**
 * `npm install --no-save --prefix <cacheDir> @cerbos/cerbos-linux-x64@<version>`: the package
 * lands in a cache directory outside the repository, so package.json and the lock file stay
 * as they are. Never throws: a failure (no registry, another platform) is a reason to skip.
 */
export async function installCerbos(cacheDir: string, version: string): Promise<Install> {
  if (process.platform !== "linux" || process.arch !== "x64")
    return { ok: false, reason: `${CERBOS_PACKAGE} is built for linux x64, this is ${process.platform} ${process.arch}` };
  const bin = path.join(cacheDir, "node_modules", CERBOS_PACKAGE, "cerbos-linux-x64");
  const have = existsSync(bin) ? await run(bin, ["--version"], 10_000) : undefined;
  if (!have || have.code !== 0 || have.out.split("\n")[0]?.trim() !== version) {
    await mkdir(cacheDir, { recursive: true });
    const r = await run("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--prefix", cacheDir, `${CERBOS_PACKAGE}@${version}`], 300_000);
    if (r.code !== 0 || !existsSync(bin))
      return { ok: false, reason: `npm install ${CERBOS_PACKAGE}@${version} failed: ${r.out.trim().split("\n").slice(-3).join(" ")}` };
  }
  const v = await run(bin, ["--version"], 10_000);
  const got = v.out.split("\n")[0]?.trim() ?? "";
  if (v.code !== 0) return { ok: false, reason: `${bin} --version exited ${v.code}` };
  return { ok: true, bin, version: got };
}

/** Organization role r (0 owner .. 4 viewer) holds organization permissions 0 .. 2*(5-r)-1 (bench/dataset.ts). */
export function rolesHolding(p: number): string[] {
  return ORG_ROLE_KEYS.filter((_k, r) => p < (5 - r) * 2);
}

/** A resource policy for kind `organization`: one rule per permission, allowing the roles that hold it. */
export function policyYaml(): string {
  const rules = ORG_PERM_KEYS.map(
    (perm, p) =>
      `    - actions: ["${perm}"]\n      effect: EFFECT_ALLOW\n      roles: [${rolesHolding(p)
        .map((r) => `"${r}"`)
        .join(", ")}]`,
  );
  return ["apiVersion: api.cerbos.dev/v1", "resourcePolicy:", "  version: default", "  resource: organization", "  rules:", ...rules, ""].join("\n");
}

/** gRPC and HTTP on loopback, policies from a directory (not watched), no telemetry, no audit log. */
export function configYaml(grpcPort: number, httpPort: number, policyDir: string): string {
  return [
    "server:",
    `  httpListenAddr: "127.0.0.1:${httpPort}"`,
    `  grpcListenAddr: "127.0.0.1:${grpcPort}"`,
    "storage:",
    "  driver: disk",
    "  disk:",
    `    directory: ${JSON.stringify(policyDir)}`,
    "    watchForChanges: false",
    "telemetry:",
    "  disabled: true",
    "audit:",
    "  enabled: false",
    "",
  ].join("\n");
}

export async function writeCerbosFiles(dir: string, grpcPort: number, httpPort: number): Promise<{ config: string; policy: string }> {
  const policyDir = path.join(dir, "policies");
  await mkdir(policyDir, { recursive: true });
  const policy = policyYaml();
  await writeFile(path.join(policyDir, "organization.yaml"), policy);
  const config = path.join(dir, "cerbos.yaml");
  await writeFile(config, configYaml(grpcPort, httpPort, policyDir));
  return { config, policy };
}

// ---------------------------------------------------------------------------
// Protobuf wire format, by hand: only length-delimited fields are needed to ask.

function varint(n: number): number[] {
  const out: number[] = [];
  let x = n;
  while (x > 0x7f) {
    out.push((x & 0x7f) | 0x80);
    x >>>= 7;
  }
  out.push(x);
  return out;
}

function field(no: number, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((no << 3) | 2), ...varint(payload.byteLength)]), payload]);
}
const str = (no: number, s: string): Buffer => field(no, Buffer.from(s, "utf8"));

export interface CerbosCheck {
  principalId: string;
  roles: string[];
  kind: string;
  resourceId: string;
  actions: string[];
}

/**
 * cerbos.request.v1.CheckResourcesRequest: principal = 3, resources = 4 (ResourceEntry:
 * actions = 1, resource = 2). cerbos.engine.v1.Principal: id = 1, roles = 3.
 * cerbos.engine.v1.Resource: kind = 1, id = 3.
 */
export function encodeCheckResources(c: CerbosCheck): Buffer {
  const principal = Buffer.concat([str(1, c.principalId), ...c.roles.map((r) => str(3, r))]);
  const resource = Buffer.concat([str(1, c.kind), str(3, c.resourceId)]);
  const entry = Buffer.concat([...c.actions.map((a) => str(1, a)), field(2, resource)]);
  return Buffer.concat([field(3, principal), field(4, entry)]);
}

interface WireField {
  no: number;
  value: number | Buffer;
}

function readVarint(b: Buffer, at: number): [number, number] {
  let x = 0;
  let shift = 0;
  let i = at;
  for (;;) {
    const byte = b[i++];
    if (byte === undefined) throw new Error("truncated varint");
    x += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [x, i];
    shift += 7;
  }
}

/** Top-level fields of one message (varint and length-delimited only: all CheckResourcesResponse uses). */
export function wireFields(b: Buffer): WireField[] {
  const out: WireField[] = [];
  let i = 0;
  while (i < b.length) {
    const [tag, a] = readVarint(b, i);
    const wt = tag & 7;
    if (wt === 0) {
      const [v, c] = readVarint(b, a);
      out.push({ no: tag >>> 3, value: v });
      i = c;
    } else if (wt === 2) {
      const [len, c] = readVarint(b, a);
      out.push({ no: tag >>> 3, value: b.subarray(c, c + len) });
      i = c + len;
    } else throw new Error(`wire type ${wt} not expected`);
  }
  return out;
}

export const EFFECTS = ["EFFECT_UNSPECIFIED", "EFFECT_ALLOW", "EFFECT_DENY", "EFFECT_NO_MATCH"] as const;

/**
 * cerbos.response.v1.CheckResourcesResponse: results = 2 (ResultEntry: actions = 2, a
 * map<string, cerbos.effect.v1.Effect>, entries key = 1, value = 2). Returns action -> effect name.
 */
export function decodeEffects(msg: Buffer): Record<string, string> {
  const effects: Record<string, string> = {};
  for (const r of wireFields(msg)) {
    if (r.no !== 2 || !Buffer.isBuffer(r.value)) continue;
    for (const e of wireFields(r.value)) {
      if (e.no !== 2 || !Buffer.isBuffer(e.value)) continue;
      const kv = wireFields(e.value);
      const k = kv.find((x) => x.no === 1)?.value;
      const v = kv.find((x) => x.no === 2)?.value ?? 0;
      if (Buffer.isBuffer(k) && typeof v === "number") effects[k.toString("utf8")] = EFFECTS[v] ?? `EFFECT_${v}`;
    }
  }
  return effects;
}
