// Pod sizing from the expected data: the formula of docs/operations.md, used
// by `authz size` (which writes a kustomize patch) and checked against
// k8s/base by test/sizing.test.ts. Pure arithmetic, no I/O.

/** The expected number of records the engine holds. */
export interface DataSize {
  users: number;
  organizations: number;
  assignments: number;
  memberships: number;
}

/** Engine memory per record, bytes (bench/sizing.ts, rounded up; docs/operations.md). */
export const BYTES_PER = { assignment: 100, organization: 2000, user: 80, membership: 25 } as const;
/** Cold start per record, microseconds (docs/benchmarks.md, "Cold load at 5M assignments": the load by COPY; docs/operations.md). */
export const MICROS_PER = { assignment: 2.5, organization: 25, user: 0, membership: 1.5 } as const;
/** The process without data: runtime, gRPC/HTTP servers, pools (MiB); start without data (s). */
export const BASE = { rssMiB: 160, heapMiB: 192, startS: 3 } as const;

/** The size k8s/base is set for (the benchmark's 1M-assignment mix). */
export const DEFAULT_SIZE: DataSize = { users: 200_000, organizations: 20_000, assignments: 1_000_000, memberships: 200_000 };

export interface PodSize {
  /** Engine memory (typed arrays and heap), MiB. */
  engineMiB: number;
  requestMiB: number;
  limitMiB: number;
  /** --max-old-space-size, MiB. */
  heapMiB: number;
  /** Expected cold start to SERVING, seconds. */
  startS: number;
  /** startupProbe: periodSeconds × failureThreshold covers twice the start plus 30 s. */
  startupPeriodS: number;
  startupFailureThreshold: number;
}

const MiB = 1024 * 1024;
const up = (x: number, step: number) => Math.ceil(x / step) * step;

export function podSize(d: DataSize): PodSize {
  const bytes =
    d.assignments * BYTES_PER.assignment + d.organizations * BYTES_PER.organization + d.users * BYTES_PER.user + d.memberships * BYTES_PER.membership;
  const engineMiB = bytes / MiB;
  const micros =
    d.assignments * MICROS_PER.assignment + d.organizations * MICROS_PER.organization + d.users * MICROS_PER.user + d.memberships * MICROS_PER.membership;
  const startS = BASE.startS + micros / 1e6;
  const startupPeriodS = 2;
  return {
    engineMiB,
    // Steady state: the engine plus copy-on-write pages of applies in flight.
    requestMiB: up(BASE.rssMiB + 1.5 * engineMiB, 64),
    // A reload builds the next snapshot while the last good one serves: twice the engine, and margin.
    limitMiB: up(BASE.rssMiB + 2.5 * engineMiB, 64),
    // The engine lives mostly in typed arrays outside V8's old space; the heap holds row batches while loading and calls.
    heapMiB: up(BASE.heapMiB + 0.5 * engineMiB, 64),
    startS,
    startupPeriodS,
    startupFailureThreshold: Math.ceil((2 * startS + 30) / startupPeriodS),
  };
}

/** The kustomize patch for the Deployment that sets these figures (strategic merge). */
export function resourcesPatch(d: DataSize, s: PodSize = podSize(d)): string {
  return `# Written by: authz size --users ${d.users} --organizations ${d.organizations} --assignments ${d.assignments} --memberships ${d.memberships}
# Engine ~${Math.ceil(s.engineMiB)} MiB; expected cold start ~${Math.ceil(s.startS)} s (docs/operations.md).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: authz
spec:
  template:
    spec:
      containers:
        - name: authz
          env:
            - name: NODE_OPTIONS
              value: --max-old-space-size=${s.heapMiB}
          resources:
            requests:
              memory: ${s.requestMiB}Mi
            limits:
              memory: ${s.limitMiB}Mi
          startupProbe:
            periodSeconds: ${s.startupPeriodS}
            failureThreshold: ${s.startupFailureThreshold}
`;
}
