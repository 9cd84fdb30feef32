// Rate-limit benchmark (issue 5): in one run, on the same Redis, the same
// decision (one counter, cost 1, never over the limit) made four ways:
//
//   a. ConsumeRateLimit over gRPC: h2load against the authz rate-limit
//      service (src/rpc/rate-limit-handlers.ts on src/rpc/grpc-server.ts, the
//      production Redis store with its 50 ms timeout and breaker; the lean
//      node:http2 path as shipped, AUTHZ_GRPC_LEAN=off for grpc-js) in a child
//      process; policies come from an in-memory policy index, so no database
//      is involved.
//   b. the authz store layer in process: limiter.consume() -> RedisStore
//      (the TypeScript around the script: validation-free, no gRPC; its
//      dispatcher and breaker; its own pipelining, one socket write per turn
//      of the event loop).
//   c. raw EVALSHA of the production single-call Lua script (what the store
//      sends for a batch of one) from one ioredis client with N concurrent
//      callers, one call per command: the limit for anything that sends
//      each decision as its own script call (the store batches instead).
//   d. rate-limiter-flexible RateLimiterRedis.consume() on one ioredis client,
//      same concurrency (its own fixed-window Lua script).
// c and d run with ioredis enableAutoPipelining, as the baseline always has
// (the authz store turned it off: docs/faults-ratelimit.md), so ratios stay
// comparable across versions.
//
// Parts run interleaved (a, b, c, d, a, b, c, d, ...), each on its own key.
// Around each part's measured calls the bench reads Redis' INFO and /proc:
// per decision, the scripts Redis ran, its time inside them, its main
// thread's CPU, the bytes on the wire, and the calling process' CPU. Run it
// against a Redis nobody else uses for those figures to be exact.
//
// Run:  npm run build:bench && node dist/bench/ratelimit.js
// Env:  REDIS_URL            (default redis://127.0.0.1:6379)
//       BENCH_RL_REQUESTS    (default 50000)  measured calls per part and round
//       BENCH_RL_WARMUP      (default 5000)
//       BENCH_RL_ROUNDS      (default 2)
//       BENCH_RL_CONCURRENCY (default 64)     calls in flight (h2load: 4 connections x 16 streams)
//       BENCH_RL_KEYS        (default 1,10000) subjects b, c and d cycle over, each setting measured in
//                            every round: 1 is one hot counter; 10000 gives every call of a batch its
//                            own counter (a is always one subject, measured with the first setting)
//       BENCH_RL_ALGORITHMS  (default sliding_window,fixed_window) authz's algorithms, each measured
//                            with every part in every round (rate-limiter-flexible has only its fixed window)
//       BENCH_RL_TIMEOUT_MS  (default 50, the product default) the stores' Redis command timeout; on a
//                            starved machine Redis itself may stall longer, and the breaker's fast
//                            failure-mode answers would then be counted as throughput (the run stops)
//       BENCH_RL_PARTS       (default grpc,store,evalsha,rlflex) the parts to run; the gRPC part stops
//                            the run when any call was not decided by Redis (a Redis slower than 50 ms
//                            on a starved machine), so "store,evalsha,rlflex" still measures the rest
//       H2LOAD               (default /usr/bin/h2load)

import { type ChildProcess, fork, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { RateLimiterRedis } from "rate-limiter-flexible";
import {
  ConsumeRateLimitRequestSchema,
  RateLimitDecisionSource,
  type ConsumeRateLimitResponse,
  ConsumeRateLimitResponseSchema,
  RateLimitService,
} from "../gen/authz/v1/rate_limit_service_pb.js";
import { fromBinary } from "@bufbuild/protobuf";
import { PolicyIndex, type RateLimitAlgorithm, RATE_LIMIT_ALGORITHMS } from "../src/engine/rate-limit-policies.js";
import { createLogger } from "../src/logger.js";
import { consume } from "../src/ratelimit/limiter.js";
import { ALGORITHM_CODE, SCRIPTS } from "../src/ratelimit/lua.js";
import { createRedisStore } from "../src/ratelimit/redis-store.js";
import { bucketKey } from "../src/ratelimit/store.js";
import { createCallLog } from "../src/rpc/call-log.js";
import { createGrpcServer, listenGrpc } from "../src/rpc/grpc-server.js";
import { bind } from "../src/rpc/handler-types.js";
import { type PolicySource, rateLimitHandlers } from "../src/rpc/rate-limit-handlers.js";
import { processCpuNs } from "./hot-path.js";
import { parseH2load } from "./server-stacks.js";

const PATH = "/authz.v1.RateLimitService/ConsumeRateLimit";
const POLICY = "bench";
const POLICY_ID = 900_001;
const LIMIT = 2_147_483_647;
const WINDOW_SEC = 3600;

function envInt(name: string, def: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

/** BENCH_RL_ALGORITHMS (or the older BENCH_RL_ALGORITHM): authz's algorithms to measure, in order. */
export function algorithmsFromEnv(): RateLimitAlgorithm[] {
  const raw = process.env["BENCH_RL_ALGORITHMS"] ?? process.env["BENCH_RL_ALGORITHM"] ?? "sliding_window,fixed_window";
  const list = raw.split(",").map((a) => a.trim());
  for (const a of list)
    if (!(RATE_LIMIT_ALGORITHMS as readonly string[]).includes(a)) throw new Error(`BENCH_RL_ALGORITHMS must list some of ${RATE_LIMIT_ALGORITHMS.join(", ")}`);
  return list as RateLimitAlgorithm[];
}

function keysFromEnv(): number[] {
  const raw = process.env["BENCH_RL_KEYS"] ?? "1,10000";
  const list = raw.split(",").map((k) => Number(k.trim()));
  if (list.some((k) => !Number.isInteger(k) || k <= 0)) throw new Error(`BENCH_RL_KEYS must list positive integers, got "${raw}"`);
  return list;
}

/** One policy per algorithm: "bench-<algorithm>", id POLICY_ID + its index. */
const policyName = (a: RateLimitAlgorithm) => `${POLICY}-${a}`;
const policyId = (a: RateLimitAlgorithm) => POLICY_ID + RATE_LIMIT_ALGORITHMS.indexOf(a);

function policySource(): PolicySource {
  const idx = new PolicyIndex();
  for (const algorithm of RATE_LIMIT_ALGORITHMS)
    idx.upsertPolicy({
      id: policyId(algorithm),
      name: policyName(algorithm),
      scope: "key",
      limitCount: LIMIT,
      windowSec: WINDOW_SEC,
      algorithm,
      failureMode: "open",
      shadow: false,
      description: null,
    });
  const view = { revision: 1n, ratePolicy: (n: string) => idx.ratePolicy(n), ratePoliciesFor: () => [], resourceTenant: () => undefined };
  return { current: () => view, atLeast: async () => view, fullyConsistent: async () => view };
}

// ---------------------------------------------------------------------------
// Child: the gRPC rate-limit service

type ChildMsg = { type: "listening"; port: number } | { type: "error"; message: string } | { type: "sources"; sources: Record<string, number> };

async function serveChild(): Promise<void> {
  const send = (m: ChildMsg) => process.send?.(m);
  const logger = createLogger("warn");
  const sources: Record<string, number> = {};
  const store = createRedisStore({
    url: process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379",
    cluster: false,
    keyPrefix: "authz:bench",
    commandTimeoutMs: envInt("BENCH_RL_TIMEOUT_MS", 50),
    connectTimeoutMs: 1000,
    breakerFailures: 5,
    breakerCooldownMs: 1000,
    logger,
  });
  if (!(await store.ready(5000))) {
    send({ type: "error", message: "Redis not reachable" });
    process.exit(1);
  }
  const handlers = rateLimitHandlers({
    store,
    policies: () => policySource(),
    db: () => {
      throw new Error("no database in this benchmark");
    },
    onDecision: (s) => (sources[s] = (sources[s] ?? 0) + 1),
  });
  // As shipped: the hot RPCs on the lean node:http2 path (AUTHZ_GRPC_LEAN, default on; "off" measures grpc-js).
  const lean = process.env["AUTHZ_GRPC_LEAN"] !== "off";
  const server = createGrpcServer([bind(RateLimitService, handlers)], { logger, callLog: createCallLog(logger), maxMessageBytes: 4 << 20, lean });
  const port = await listenGrpc(server, "127.0.0.1", 0);
  process.on("message", (m) => {
    if (m === "sources") send({ type: "sources", sources: { ...sources } });
  });
  const stop = () => {
    setTimeout(() => process.exit(0), 2000).unref();
    server.tryShutdown(() => void store.close().then(() => process.exit(0)));
  };
  process.on("SIGTERM", stop);
  process.on("disconnect", stop);
  send({ type: "listening", port });
}

interface Child {
  port: number;
  pid: number;
  sources(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

function startChild(): Promise<Child> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--serve"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("rate-limit server child did not start within 15 s")), 15_000);
    child.once("exit", (code) => reject(new Error(`rate-limit server child exited early (${code})`)));
    const onMessage = (raw: unknown) => {
      const m = raw as ChildMsg;
      if (m.type === "error") return reject(new Error(m.message));
      if (m.type !== "listening") return;
      clearTimeout(timer);
      child.off("message", onMessage);
      resolve({
        port: m.port,
        pid: child.pid as number,
        sources: () =>
          new Promise((res) => {
            const h = (r: unknown) => {
              const mm = r as ChildMsg;
              if (mm.type === "sources") {
                child.off("message", h);
                res(mm.sources);
              }
            };
            child.on("message", h);
            child.send("sources");
          }),
        stop: async () => {
          child.kill("SIGTERM");
          const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(killer);
        },
      });
    };
    child.on("message", onMessage);
  });
}

// ---------------------------------------------------------------------------
// Parent

export interface RateLimitBenchRow {
  round: number;
  /** authz's algorithm for a-c (rate-limiter-flexible has only its own fixed window). Absent in results from before. */
  algorithm?: RateLimitAlgorithm;
  /** Distinct subjects the calls cycled over (absent: one). */
  keys?: number;
  part: "grpc" | "store" | "evalsha" | "rlflex";
  label: string;
  requests: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  ratioVsEvalsha: number;
  /** Per decision over the measured calls; absent in results from before they were measured. */
  cost?: CallCost;
  /** Throughput over rate-limiter-flexible's in the same round. */
  ratioVsRlflex?: number;
}

/**
 * What one decision cost, from counters read before and after the measured
 * calls: Redis' own figures (INFO commandstats, cpu, stats) and /proc.
 * Exact only on a Redis nobody else uses while the bench runs.
 */
export interface CallCost {
  /** Script commands (EVAL + EVALSHA) Redis ran per decision. */
  scripts: number;
  /** Redis' time inside those commands per decision (commandstats usec). */
  scriptUs: number;
  /** Redis' main-thread CPU per decision (INFO cpu): the script plus reading, parsing and replying. */
  redisCpuUs: number;
  /** Bytes Redis read plus wrote per decision. */
  bytes: number;
  /** CPU of the process making the calls per decision (the gRPC server child for part a), every thread. */
  clientCpuUs: number;
}

const LABELS: Record<RateLimitBenchRow["part"], string> = {
  grpc: "a. ConsumeRateLimit over gRPC (h2load, authz handler + Redis store)",
  store: "b. authz store layer in process (limiter.consume -> RedisStore)",
  evalsha: "c. raw EVALSHA of the single-call script, one call per command, one ioredis client",
  rlflex: "d. rate-limiter-flexible RateLimiterRedis.consume, one ioredis client",
};

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** `n` calls of `op` with `concurrency` callers each awaiting its previous call; latency per call in µs. */
async function closedLoop(n: number, concurrency: number, op: () => Promise<unknown>): Promise<{ opsPerSec: number; p50Us: number; p99Us: number }> {
  const lat = new Float64Array(n);
  let issued = 0;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (issued < n) {
        issued++;
        const s = performance.now();
        await op();
        lat[done++] = (performance.now() - s) * 1000;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort();
  return { opsPerSec: n / secs, p50Us: percentile(lat, 50), p99Us: percentile(lat, 99) };
}

function runH2load(bin: string, port: number, n: number, clients: number, streams: number, frameFile: string, logFile?: string): Promise<string> {
  const args = ["-n", String(n), "-c", String(clients), "-m", String(streams), "-d", frameFile, "-H", "content-type: application/grpc", "-H", "te: trailers"];
  if (logFile) args.push("--log-file", logFile);
  args.push(`http://127.0.0.1:${port}${PATH}`);
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (c: Buffer) => (out += c.toString()));
    p.stderr.on("data", (c: Buffer) => (err += c.toString()));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`h2load exited ${code}: ${err}${out}`))));
  });
}

function grpcFrame(payload: Uint8Array): Buffer {
  const f = Buffer.alloc(5 + payload.byteLength);
  f.writeUInt32BE(payload.byteLength, 1);
  f.set(payload, 5);
  return f;
}

/** One real client call: the handler answers from the store. */
function verifyOverGrpc(port: number, policy: string, key: string): Promise<ConsumeRateLimitResponse> {
  const ser = (m: unknown) => Buffer.from(toBinary(ConsumeRateLimitRequestSchema, create(ConsumeRateLimitRequestSchema, m as never)));
  const de = (b: Buffer) => fromBinary(ConsumeRateLimitResponseSchema, b);
  const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    c.makeUnaryRequest(PATH, ser, de, { policy, subject: { type: "key", id: key }, cost: 1n }, (err, res) => {
      c.close();
      if (err || !res) return reject(err ?? new Error("no response"));
      if (!res.allowed || res.source !== RateLimitDecisionSource.STORE)
        return reject(new Error(`unexpected answer ${JSON.stringify({ allowed: res.allowed, source: res.source })}`));
      resolve(res);
    });
  });
}

type Part = RateLimitBenchRow["part"];
const PARTS: readonly Part[] = ["grpc", "store", "evalsha", "rlflex"];

function partsFrom(raw: string | undefined): Part[] {
  if (raw === undefined || raw === "") return [...PARTS];
  const list = raw.split(",").map((p) => p.trim());
  const bad = list.filter((p) => !(PARTS as readonly string[]).includes(p));
  if (bad.length > 0 || !list.includes("evalsha"))
    throw new Error(`BENCH_RL_PARTS must list some of ${PARTS.join(", ")}, evalsha included (the baseline), got "${raw}"`);
  return PARTS.filter((p) => list.includes(p));
}

export interface RateLimitBenchOptions {
  /** Distinct subjects the in-process parts cycle over, one setting after the other (BENCH_RL_KEYS). */
  keys?: number[];
  /** Comma-separated parts, as BENCH_RL_PARTS. */
  parts?: string;
  requests?: number;
  warmup?: number;
  rounds?: number;
  concurrency?: number;
  redisUrl?: string;
  h2load?: string;
}

/** Redis' counters a part's cost is computed from. */
interface RedisSample {
  scripts: number;
  scriptUsec: number;
  netBytes: number;
  cpuUs: number;
}

async function redisSample(info: Redis): Promise<RedisSample> {
  const text = await info.info("all");
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(text)?.[1] ?? 0);
  const cmd = (name: string) => {
    const m = new RegExp(`^cmdstat_${name}:calls=(\\d+),usec=(\\d+)`, "m").exec(text);
    return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
  };
  const ev = cmd("eval");
  const sha = cmd("evalsha");
  return {
    scripts: ev.calls + sha.calls,
    scriptUsec: ev.usec + sha.usec,
    netBytes: field("total_net_input_bytes") + field("total_net_output_bytes"),
    cpuUs: (field("used_cpu_user_main_thread") + field("used_cpu_sys_main_thread")) * 1e6,
  };
}

/** Runs `measure` between two readings of Redis and of `clientPid`'s CPU; the cost per decision. */
async function withCost<T>(info: Redis, clientPid: number, decisions: number, measure: () => Promise<T>): Promise<{ result: T; cost: CallCost }> {
  const r0 = await redisSample(info);
  const c0 = processCpuNs(clientPid);
  const result = await measure();
  const c1 = processCpuNs(clientPid);
  const r1 = await redisSample(info);
  return {
    result,
    cost: {
      scripts: (r1.scripts - r0.scripts) / decisions,
      scriptUs: (r1.scriptUsec - r0.scriptUsec) / decisions,
      redisCpuUs: (r1.cpuUs - r0.cpuUs) / decisions,
      bytes: (r1.netBytes - r0.netBytes) / decisions,
      clientCpuUs: (c1 - c0) / 1000 / decisions,
    },
  };
}

type Measured = { opsPerSec: number; p50Us: number; p99Us: number };

interface BenchSetup {
  requests: number;
  warmup: number;
  streams: number;
  concurrency: number;
  h2loadBin: string;
  dir: string;
  child: Child | undefined;
  frames: Map<RateLimitAlgorithm, string>;
}

async function measureGrpc(s: BenchSetup, algorithm: RateLimitAlgorithm, round: number): Promise<Measured> {
  const child = s.child as Child;
  const frameFile = s.frames.get(algorithm) as string;
  const before = await child.sources();
  if (s.warmup > 0) parseH2load(await runH2load(s.h2loadBin, child.port, s.warmup, 4, s.streams, frameFile));
  const logFile = path.join(s.dir, `grpc-${algorithm}-${round}.log`);
  const r = parseH2load(await runH2load(s.h2loadBin, child.port, s.requests, 4, s.streams, frameFile, logFile));
  if (r.succeeded !== s.requests || r.status2xx !== s.requests) throw new Error(`gRPC run had failures\n${r.raw}`);
  const after = await child.sources();
  const storeAnswers = (after["store"] ?? 0) - (before["store"] ?? 0);
  // h2load sees only HTTP status: every call must also have been decided by the store (not a failure mode).
  if (storeAnswers !== s.requests + s.warmup)
    throw new Error(`only ${storeAnswers} of ${s.requests + s.warmup} calls were decided by Redis: ${JSON.stringify(after)}`);
  const lat: number[] = [];
  for (const line of (await readFile(logFile, "utf8")).split("\n")) {
    const cols = line.split("\t");
    if (cols.length >= 3 && cols[1] !== "-1") lat.push(Number(cols[2]));
  }
  lat.sort((a, b) => a - b);
  return { opsPerSec: r.reqPerSec, p50Us: percentile(lat, 50), p99Us: percentile(lat, 99) };
}

export async function runRateLimitBench(opts: RateLimitBenchOptions = {}): Promise<RateLimitBenchRow[]> {
  const requests = opts.requests ?? envInt("BENCH_RL_REQUESTS", 50_000);
  const warmup = opts.warmup ?? envInt("BENCH_RL_WARMUP", 5_000);
  const rounds = opts.rounds ?? envInt("BENCH_RL_ROUNDS", 2);
  const concurrency = opts.concurrency ?? envInt("BENCH_RL_CONCURRENCY", 64);
  const redisUrl = opts.redisUrl ?? process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
  const algorithms = algorithmsFromEnv();
  const keySettings = opts.keys ?? keysFromEnv();
  const log = (s: string) => process.stderr.write(`[ratelimit] ${s}\n`);
  const run = `${process.pid}-${Date.now()}`;
  const key = (part: string, a: RateLimitAlgorithm) => `bench-${part}-${a}-${run}`;
  const parts = partsFrom(opts.parts ?? process.env["BENCH_RL_PARTS"]);

  const dir = await mkdtemp(path.join(os.tmpdir(), "authz-rl-bench-"));
  const frames = new Map<RateLimitAlgorithm, string>();
  for (const a of algorithms) {
    const req = create(ConsumeRateLimitRequestSchema, { policy: policyName(a), subject: { type: "key", id: key("grpc", a) }, cost: 1n });
    frames.set(a, path.join(dir, `frame-${a}.bin`));
    await writeFile(frames.get(a) as string, grpcFrame(toBinary(ConsumeRateLimitRequestSchema, req)));
  }
  const child = parts.includes("grpc") ? await startChild() : undefined;
  if (child) for (const a of algorithms) await verifyOverGrpc(child.port, policyName(a), key("grpc", a));
  const setup: BenchSetup = {
    requests,
    warmup,
    concurrency,
    streams: Math.max(1, Math.floor(concurrency / 4)),
    h2loadBin: opts.h2load ?? process.env["H2LOAD"] ?? "/usr/bin/h2load",
    dir,
    child,
    frames,
  };

  const logger = createLogger("warn");
  const store = createRedisStore({
    url: redisUrl,
    cluster: false,
    keyPrefix: "authz:bench",
    commandTimeoutMs: envInt("BENCH_RL_TIMEOUT_MS", 50),
    connectTimeoutMs: 1000,
    breakerFailures: 5,
    breakerCooldownMs: 1000,
    logger,
  });
  if (!(await store.ready(5000))) throw new Error(`Redis at ${redisUrl} not reachable`);
  const policies = policySource().current();
  // Calls cycle over `keys` subjects per part (BENCH_RL_KEYS): 1 is one hot counter; many makes every
  // call in a batch touch its own counter, so a batch saves no reads or writes.
  const cycle = <T>(items: T[]) => {
    let i = 0;
    return () => items[i++ % items.length] as T;
  };
  const subjects = (part: string, a: RateLimitAlgorithm, keys: number) => Array.from({ length: keys }, (_, i) => `${key(part, a)}-${keys}-${i}`);
  const storeFailures = { n: 0 };
  const storeOp = (a: RateLimitAlgorithm, keys: number) => {
    const policy = policies.ratePolicy(policyName(a));
    if (!policy) throw new Error("bench policy missing");
    const next = cycle(subjects("store", a, keys).map((id) => [{ policy, owner: { type: "key" as const, id } }]));
    return async () => {
      const d = await consume(store, next(), 1);
      if (d.source !== "STORE" || !d.allowed) storeFailures.n++;
    };
  };

  // Both baselines run with auto-pipelining on, as they always have.
  const raw = new Redis(redisUrl, { enableAutoPipelining: true });
  raw.defineCommand("rlConsume", { lua: SCRIPTS.consumeOne });
  const evalshaOp = (a: RateLimitAlgorithm, keys: number) => {
    const next = cycle(subjects("evalsha", a, keys).map((id) => bucketKey("authz:bench", { policyId: policyId(a), algorithm: a, owner: { type: "key", id } })));
    // The production single-call script (what the store sends for a batch of one): cost 1, then the counter.
    const rawArgs = [1, ALGORITHM_CODE[a], LIMIT, WINDOW_SEC * 1_000_000, 1];
    return () => (raw as unknown as { rlConsume(n: number, ...a: (string | number)[]): Promise<number[]> }).rlConsume(1, next(), ...rawArgs);
  };
  const rlfClient = new Redis(redisUrl, { enableAutoPipelining: true });
  const rlf = new RateLimiterRedis({ storeClient: rlfClient, keyPrefix: `authz:bench:rlflx:${run}`, points: LIMIT, duration: WINDOW_SEC });
  const rlfOp = (a: RateLimitAlgorithm, keys: number) => {
    const next = cycle(subjects("rlflex", a, keys));
    return () => rlf.consume(next(), 1);
  };
  const info = new Redis(redisUrl);

  const rows: RateLimitBenchRow[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const [ki, keys] of keySettings.entries()) {
        for (const algorithm of algorithms) {
          const roundRows: RateLimitBenchRow[] = [];
          for (const part of parts) {
            if (part === "grpc" && ki > 0) continue;
            const op = part === "store" ? storeOp(algorithm, keys) : part === "evalsha" ? evalshaOp(algorithm, keys) : rlfOp(algorithm, keys);
            if (part !== "grpc") await closedLoop(warmup, concurrency, op);
            // For gRPC h2load's warm-up run is inside the window: the cost is over both runs' calls.
            const { result: m, cost } = await withCost(
              info,
              part === "grpc" ? (child as Child).pid : process.pid,
              part === "grpc" ? requests + warmup : requests,
              () => (part === "grpc" ? measureGrpc(setup, algorithm, round) : closedLoop(requests, concurrency, op)),
            );
            if (part === "store" && storeFailures.n > 0) throw new Error(`${storeFailures.n} store-layer calls were not decided by Redis`);
            const row: RateLimitBenchRow = {
              round,
              algorithm,
              keys: part === "grpc" ? 1 : keys,
              part,
              label: LABELS[part],
              requests,
              ...m,
              ratioVsEvalsha: Number.NaN,
              cost,
            };
            roundRows.push(row);
            log(
              `round ${round} ${algorithm} keys ${keys} ${part}: ${m.opsPerSec.toFixed(0)} ops/s, p50 ${(m.p50Us / 1000).toFixed(2)} ms, p99 ${(m.p99Us / 1000).toFixed(2)} ms; ` +
                `per call: ${cost.scripts.toFixed(2)} scripts, Redis ${cost.scriptUs.toFixed(2)} µs in scripts, ${cost.redisCpuUs.toFixed(2)} µs CPU, ${cost.bytes.toFixed(0)} bytes, client CPU ${cost.clientCpuUs.toFixed(2)} µs`,
            );
          }
          const base = roundRows.find((r) => r.part === "evalsha")?.opsPerSec ?? Number.NaN;
          const rlfBase = roundRows.find((r) => r.part === "rlflex")?.opsPerSec ?? Number.NaN;
          for (const r of roundRows) {
            r.ratioVsEvalsha = r.opsPerSec / base;
            r.ratioVsRlflex = r.opsPerSec / rlfBase;
          }
          rows.push(...roundRows);
        }
      }
    }
  } finally {
    await child?.stop();
    await store.close();
    raw.disconnect();
    rlfClient.disconnect();
    info.disconnect();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

const fmt = (us: number) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} µs`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const x2 = (r: number | undefined) => (r === undefined || Number.isNaN(r) ? "" : `${r.toFixed(2)}x`);
const num = (v: number | undefined, d: number) => (v === undefined ? "" : v.toFixed(d));
const int = (v: number) => Math.round(v).toLocaleString("en-US");

/** The row's algorithm as the tables name it: rate-limiter-flexible has only its own fixed window. */
function algorithmCell(r: RateLimitBenchRow): string {
  const subjects = `${(r.keys ?? 1).toLocaleString("en-US")} subject${(r.keys ?? 1) === 1 ? "" : "s"}`;
  return `${r.part === "rlflex" ? `its fixed window (authz rows: ${r.algorithm})` : (r.algorithm ?? "")}, ${subjects}`;
}

/** The per-round table and the medians per algorithm and path (markdown lines), shared with bench/report.ts. */
export function rateLimitTables(rows: RateLimitBenchRow[]): string[] {
  const out = [
    "| round | algorithm, subjects | path | ops/s | p50 | p99 | vs raw EVALSHA | vs rate-limiter-flexible | Redis µs in scripts / call | Redis CPU µs / call | bytes / call | client CPU µs / call |",
    "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const line = (round: string, r: RateLimitBenchRow, rs: RateLimitBenchRow[]) => {
    const med = (f: (x: RateLimitBenchRow) => number | undefined) => {
      const v = rs.map(f).filter((y): y is number => y !== undefined);
      return v.length ? median(v) : undefined;
    };
    out.push(
      `| ${round} | ${algorithmCell(r)} | ${r.label} | ${int(med((x) => x.opsPerSec) as number)} | ${fmt(med((x) => x.p50Us) as number)} | ${fmt(med((x) => x.p99Us) as number)} | ` +
        `${x2(med((x) => x.ratioVsEvalsha))} | ${x2(med((x) => x.ratioVsRlflex))} | ${num(
          med((x) => x.cost?.scriptUs),
          2,
        )} | ${num(
          med((x) => x.cost?.redisCpuUs),
          2,
        )} | ` +
        `${num(
          med((x) => x.cost?.bytes),
          0,
        )} | ${num(
          med((x) => x.cost?.clientCpuUs),
          2,
        )} |`,
    );
  };
  for (const r of rows) line(String(r.round), r, [r]);
  const groups = new Map<string, RateLimitBenchRow[]>();
  for (const r of rows) {
    const k = `${r.keys ?? 1}/${r.algorithm ?? ""}/${r.part}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  for (const rs of groups.values()) line("**median**", rs[0] as RateLimitBenchRow, rs);
  return out;
}

export function formatRateLimitBench(rows: RateLimitBenchRow[]): string {
  return `${rateLimitTables(rows).join("\n")}\n\nRatios: medians of the per-round ratios (each against the baseline of the same round and algorithm).\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === "--serve") {
    void serveChild();
  } else {
    const rows = await runRateLimitBench();
    const c = envInt("BENCH_RL_CONCURRENCY", 64);
    process.stdout.write(
      `## Rate limits\n\nalgorithms ${algorithmsFromEnv().join(", ")}, ${c} calls in flight (h2load -c 4 -m ${Math.max(1, Math.floor(c / 4))}), ` +
        `${envInt("BENCH_RL_REQUESTS", 50_000)} calls per part and round\n\n${formatRateLimitBench(rows)}`,
    );
    process.exit(0);
  }
}
