// The kustomize base and example overlay: every listed file exists and
// parses, and the resources have the shape a Kubernetes operator expects.
// When kubectl is on the PATH the overlay is also rendered by kustomize.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { projectPath } from "../src/paths.js";
import { DEFAULT_SIZE, podSize, resourcesPatch } from "../src/sizing.js";

type Doc = Record<string, any>;

function load(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    expect(d.errors, file).toEqual([]);
    return d.toJS() as Doc;
  });
}

/** The resources of a kustomization, following bases recursively (no patches applied). */
function resources(dir: string): Doc[] {
  const [k] = load(join(dir, "kustomization.yaml"));
  const out: Doc[] = [];
  for (const r of (k?.resources ?? []) as string[]) {
    const p = join(dir, r);
    expect(existsSync(p), `${p} listed in ${dir}/kustomization.yaml`).toBe(true);
    if (existsSync(join(p, "kustomization.yaml"))) out.push(...resources(p));
    else out.push(...load(p));
  }
  for (const patch of (k?.patches ?? []) as Array<{ path?: string }>) {
    if (patch.path) expect(existsSync(join(dir, patch.path)), `patch ${patch.path}`).toBe(true);
  }
  return out;
}

const base = projectPath("k8s/base");
const all = resources(base);
const byKind = (kind: string) => all.filter((d) => d.kind === kind);

describe("k8s base", () => {
  it("has every object a deployment needs", () => {
    for (const kind of ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Job", "ServiceAccount"]) {
      expect(byKind(kind).length, kind).toBeGreaterThanOrEqual(1);
    }
    const [k] = load(join(base, "kustomization.yaml"));
    expect(k?.configMapGenerator?.[0]?.name).toBe("authz-config");
  });

  it("runs at least 3 non-root replicas with a read-only root, health probes (liveness on /healthz), resources and topology spread", () => {
    const d = byKind("Deployment")[0] as Doc;
    expect(d.spec.replicas).toBeGreaterThanOrEqual(3);
    const pod = d.spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.topologySpreadConstraints.length).toBeGreaterThanOrEqual(1);
    const c = pod.containers[0];
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(c.readinessProbe.grpc.port).toBe(50051);
    // Liveness must not follow the overall status (NOT_SERVING in a database outage, while Checks are still answered).
    expect(c.livenessProbe.grpc).toBeUndefined();
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect((c.ports as Doc[]).some((p) => p.name === "http")).toBe(true);
    expect(c.resources.requests.cpu).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();
    const env = Object.fromEntries((c.env as Doc[]).map((e) => [e.name, e]));
    expect(env.DATABASE_URL.valueFrom.secretKeyRef.name).toBeDefined();
    expect(env.REDIS_URL.valueFrom.secretKeyRef.name).toBeDefined();
  });

  it("names the Service ports grpc and http with an appProtocol", () => {
    const ports = (byKind("Service")[0] as Doc).spec.ports as Doc[];
    expect(ports.map((p) => [p.name, p.port, Boolean(p.appProtocol)])).toEqual([
      ["grpc", 50051, true],
      ["http", 8080, true],
    ]);
  });

  it("migrates with a Job running the CLI", () => {
    const job = byKind("Job")[0] as Doc;
    const c = job.spec.template.spec.containers[0];
    expect([...(c.command ?? []), ...(c.args ?? [])].join(" ")).toMatch(/cli\.js migrate/);
  });
});

describe("k8s base validates against the Kubernetes API schemas (kubernetes-models)", () => {
  /** The model class of an object, e.g. apps/v1 Deployment → kubernetes-models/apps/v1/Deployment. */
  const modelOf = async (doc: Doc): Promise<new (d: Doc) => { validate(): void }> => {
    const api = String(doc.apiVersion);
    const mod = (await import(`kubernetes-models/${api}/${String(doc.kind)}`)) as Record<string, new (d: Doc) => { validate(): void }>;
    const Model = mod[String(doc.kind)] ?? mod.default;
    if (!Model) throw new Error(`no schema for ${api} ${String(doc.kind)}`);
    return Model;
  };
  it.each(all.map((d) => [`${d.kind} ${d.metadata?.name}`, d] as const))("%s", async (_name, doc) => {
    const Model = await modelOf(doc);
    expect(() => new Model(doc).validate()).not.toThrow();
  });
  it("the validator catches a broken object (so a pass means something)", async () => {
    const d = structuredClone(byKind("Deployment")[0] as Doc);
    d.spec.replicas = "three";
    const Model = await modelOf(d);
    expect(() => new Model(d).validate()).toThrow();
  });
});

describe("sizing (docs/operations.md)", () => {
  it("the base's heap, memory and startup budget follow the formula at the documented default size", () => {
    const want = podSize(DEFAULT_SIZE);
    const c = byKind("Deployment")[0]?.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.map((e: Doc) => [e.name, e.value]));
    expect(env.NODE_OPTIONS).toBe(`--max-old-space-size=${want.heapMiB}`);
    expect(c.resources.requests.memory).toBe(`${want.requestMiB}Mi`);
    expect(c.resources.limits.memory).toBe(`${want.limitMiB}Mi`);
    expect([c.startupProbe.periodSeconds, c.startupProbe.failureThreshold]).toEqual([want.startupPeriodS, want.startupFailureThreshold]);
  });

  it("the example overlay's patch is what `authz size` writes for the size recorded in it", () => {
    const text = readFileSync(projectPath("k8s/overlays/example/deployment-resources.yaml"), "utf8");
    const m = /^# Written by: authz size --users (\d+) --organizations (\d+) --assignments (\d+) --memberships (\d+)$/m.exec(text);
    expect(m, "the size line").not.toBeNull();
    const [users, organizations, assignments, memberships] = (m as RegExpExecArray).slice(1).map(Number) as [number, number, number, number];
    expect(text).toBe(resourcesPatch({ users, organizations, assignments, memberships }));
  });

  it("memory and start-up grow with every kind of record", () => {
    const at = podSize(DEFAULT_SIZE);
    for (const k of ["users", "organizations", "assignments", "memberships"] as const) {
      const bigger = podSize({ ...DEFAULT_SIZE, [k]: DEFAULT_SIZE[k] * 10 });
      expect(bigger.engineMiB, k).toBeGreaterThan(at.engineMiB);
      expect(bigger.limitMiB, k).toBeGreaterThanOrEqual(at.limitMiB);
    }
    expect(podSize({ ...DEFAULT_SIZE, assignments: 5_000_000 }).startS).toBeGreaterThan(at.startS);
  });
});

describe("k8s example overlay", () => {
  const overlay = projectPath("k8s/overlays/example");
  it("points at the base and sets a namespace and an image", () => {
    const [k] = load(join(overlay, "kustomization.yaml"));
    expect(k?.namespace).toBeTruthy();
    expect(k?.images?.length).toBeGreaterThanOrEqual(1);
    expect(resources(overlay).some((d) => d.kind === "Deployment")).toBe(true);
  });

  const kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].find((p) => existsSync(p));
  if (!kubectl) console.log("k8s overlay render: skipped: no validator (kubectl is not installed; the base is validated against the API schemas above)");
  it.skipIf(!kubectl)("renders with kustomize (kubectl kustomize)", () => {
    if (!kubectl) return;
    const out = execFileSync(kubectl, ["kustomize", dirname(join(overlay, "kustomization.yaml"))], { encoding: "utf8" });
    const kinds = parseAllDocuments(out).map((d) => (d.toJS() as Doc).kind);
    expect(kinds).toEqual(
      expect.arrayContaining(["Deployment", "Service", "ConfigMap", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"]),
    );
  });
});
