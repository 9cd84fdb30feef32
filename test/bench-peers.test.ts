// The pure parts of the peers benchmark (bench/peers.ts, bench/peers-cerbos.ts): the Cerbos policy
// matches the dataset's roles, the hand-encoded CheckResources message has the fields Cerbos's
// protos number, --trace-gc output from a real Node process is read correctly, and the servers not
// being measured are really paused.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

import { datasetShape, datasetTables, ORG_PERM_KEYS, ORG_ROLE_KEYS, orgPermId, orgRoleId } from "../bench/dataset.js";
import { decodeEffects, encodeCheckResources, policyYaml, rolesHolding, wireFields } from "../bench/peers-cerbos.js";
import { alone, PEER_SIDES, PEERS_SHAPE, type PeerSide, pickQuestion, traceGcSummary } from "../bench/peers.js";

describe("peers: the Cerbos policy", () => {
  it("allows each organization permission to exactly the roles that hold it in the dataset (grants plus inheritance)", () => {
    const t = datasetTables(datasetShape(0.00001)); // one organization
    const direct = new Map<string, Set<string>>();
    for (const r of t.role_permissions) {
      const role = String(r["role_id"]);
      if (!direct.has(role)) direct.set(role, new Set());
      direct.get(role)?.add(String(r["permission_id"]));
    }
    const parent = new Map<string, string>();
    for (const r of t.role_inheritance) parent.set(String(r["role_id"]), String(r["parent_role_id"]));
    const holds = (role: string, perm: string): boolean => {
      for (let x: string | undefined = role; x !== undefined; x = parent.get(x)) if (direct.get(x)?.has(perm)) return true;
      return false;
    };
    ORG_PERM_KEYS.forEach((_perm, p) => {
      const want = ORG_ROLE_KEYS.filter((_k, r) => holds(orgRoleId(0, r), orgPermId(0, p)));
      expect(rolesHolding(p)).toEqual(want);
    });
    expect(policyYaml()).toContain('actions: ["org.delete"]\n      effect: EFFECT_ALLOW\n      roles: ["owner"]');
  });

  it("asks an allowed question with the role the user holds in the organization", () => {
    const q = pickQuestion(PEERS_SHAPE);
    expect(q.cerbos.roles).toHaveLength(1);
    expect(rolesHolding(ORG_PERM_KEYS.indexOf("doc.read"))).toContain(q.cerbos.roles[0]);
    expect(q.cerbos.principalId).toBe(q.authzReq.subject?.id);
    expect(q.cerbos.resourceId).toBe(q.authzReq.resource?.id);
  });
});

describe("peers: CheckResources on the wire", () => {
  it("puts principal in field 3 and the resource entry in field 4, as cerbos.request.v1 numbers them", () => {
    const msg = encodeCheckResources({ principalId: "u1", roles: ["viewer"], kind: "organization", resourceId: "o1", actions: ["doc.read"] });
    const top = wireFields(msg);
    expect(top.map((f) => f.no)).toEqual([3, 4]);
    const principal = wireFields(top[0]?.value as Buffer);
    expect(principal.map((f) => [f.no, String(f.value)])).toEqual([
      [1, "u1"],
      [3, "viewer"],
    ]);
    const entry = wireFields(top[1]?.value as Buffer);
    expect(entry.map((f) => f.no)).toEqual([1, 2]);
    expect(String(entry[0]?.value)).toBe("doc.read");
    const resource = wireFields(entry[1]?.value as Buffer);
    expect(resource.map((f) => [f.no, String(f.value)])).toEqual([
      [1, "organization"],
      [3, "o1"],
    ]);
  });

  it("reads the effect per action from a CheckResourcesResponse", () => {
    // results (2) { resource (1) { id "o1" }, actions (2) { key "doc.read", value EFFECT_ALLOW } }, cerbos_call_id (3)
    const ld = (no: number, b: Buffer) => Buffer.concat([Buffer.from([(no << 3) | 2, b.length]), b]);
    const entry = Buffer.concat([ld(1, Buffer.from("doc.read")), Buffer.from([(2 << 3) | 0, 1])]);
    const result = Buffer.concat([ld(1, ld(1, Buffer.from("o1"))), ld(2, entry)]);
    const msg = Buffer.concat([ld(2, result), ld(3, Buffer.from("01ABC"))]);
    expect(decodeEffects(msg)).toEqual({ "doc.read": "EFFECT_ALLOW" });
  });
});

describe("peers: --trace-gc", () => {
  it("counts the scavenges and mark-compacts a real Node process reports", () => {
    const code = "let keep = []; for (let i = 0; i < 2e5; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 5e4) keep = []; } globalThis.gc();";
    const r = spawnSync(process.execPath, ["--trace-gc", "--expose-gc", "--max-semi-space-size=1", "-e", code], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const s = traceGcSummary(r.stdout);
    expect(s.scavenge.count).toBeGreaterThan(0);
    expect(s.markCompact.count).toBeGreaterThan(0);
    expect(s.scavenge.totalMs).toBeGreaterThanOrEqual(s.scavenge.maxMs);
    const lines = r.stdout.split("\n").filter((l) => / ms: (Scavenge|Mark-Compact)/.test(l)).length;
    expect(s.scavenge.count + s.markCompact.count).toBe(lines);
  });
});

describe("peers: one server measured at a time", () => {
  /** The state letter of /proc/<pid>/stat ("T" stopped, "S" sleeping, "R" running). */
  const state = (pid: number): string => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[0] ?? "?";
  /** Polls until every pid's state is (or is not) "T"; the kernel delivers SIGSTOP/SIGCONT asynchronously. Bounded: 500 polls. */
  const until = async (pids: number[], stopped: boolean): Promise<string[]> => {
    for (let i = 0; i < 500 && !pids.every((p) => (state(p) === "T") === stopped); i++) await new Promise((r) => setImmediate(r));
    return pids.map(state);
  };

  it("pauses every server but the one measured, and resumes them all", async () => {
    const kids: ChildProcess[] = PEER_SIDES.map(() => spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" }));
    try {
      const servers = Object.fromEntries(PEER_SIDES.map((side, i) => [side, { side, child: kids[i] as ChildProcess }])) as Record<
        PeerSide,
        { side: PeerSide; child: ChildProcess }
      >;
      const pid = (side: PeerSide): number => servers[side].child.pid as number;
      const others = PEER_SIDES.filter((s) => s !== "cerbos").map(pid);
      const resume = alone(servers, "cerbos");
      expect(await until(others, true)).toEqual(["T", "T"]);
      expect(state(pid("cerbos"))).not.toBe("T");
      resume();
      expect((await until(PEER_SIDES.map(pid), false)).filter((s) => s === "T")).toEqual([]);
      const resumeAll = alone(servers, undefined);
      expect(await until(PEER_SIDES.map(pid), true)).toEqual(["T", "T", "T"]);
      resumeAll();
      expect((await until(PEER_SIDES.map(pid), false)).filter((s) => s === "T")).toEqual([]);
    } finally {
      for (const k of kids) {
        k.kill("SIGKILL");
      }
    }
  });
});
