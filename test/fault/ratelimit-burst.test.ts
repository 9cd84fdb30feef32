// Rate limits under a burst, and when Redis stalls or dies (issue 11, point
// 6), against the built server as a process of its own (auth on, breaker
// defaults), called over a real gRPC socket as a service in another
// language would. What the limiter promises (docs/faults-ratelimit.md):
//
//   - A burst against a healthy Redis admits exactly the limit, whatever the
//     algorithm and failure mode: time spent queued in authz is not a Redis
//     failure. Served by one process on the shared Redis with a 250 ms
//     command timeout: on a shared 2-core CI machine Redis itself is now and
//     then slower than the 50 ms default (redis-cli --latency saw 60-70 ms,
//     and the limiter up to ~250 ms, while other test files ran), and the
//     limiter must then answer by failure mode: that is its promise, not
//     the defect tested here. 250 ms still fails the code before the fix on
//     every case (0 to 58 of 100 admitted fail-closed, up to 2000 fail-open):
//     its deadline ran while calls were queued inside the process.
//   - With Redis paused (SIGSTOP) or killed, every call answers by its
//     policy's failure mode within the command timeout plus a little: a
//     second process with the default 50 ms timeout, on a Redis this file
//     starts for itself on a free loopback port (never the shared one).
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { mintApiKey } from "../../src/auth/api-keys.js";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { client, loadProtos } from "../support/grpc-client.js";
import { type RedisProcess, startRedisServer } from "../support/redis.js";
import { type ServerProcess, startServerProcess } from "../support/server-child.js";

/** The product default (AUTHZ_REDIS_COMMAND_TIMEOUT_MS unset): the Redis fault tests. */
const COMMAND_TIMEOUT_MS = 50;
/** The burst tests: above the healthy Redis' worst latency on a busy CI machine (see the head of the file). */
const BURST_COMMAND_TIMEOUT_MS = 250;
/**
 * Generous slack for a shared 2-core machine, measured at the client: there, with other test
 * files running, a call to a healthy Redis took up to ~250 ms end to end. The figures are printed.
 */
const SLACK_MS = 500;
const BURST = 2000;
const LIMIT = 100;
const ALGORITHMS = ["fixed_window", "sliding_window", "token_bucket"] as const;
const MODES = ["open", "closed"] as const;
const policyName = (a: string, m: string) => `burst-${a.replace("_", "-")}-${m}`;

let t: TestDatabase;
let redis: RedisProcess;
/** Serves the bursts (shared Redis). */
let bursting: ServerProcess;
/** Faces the Redis this file pauses and kills (default timeout). */
let faulty: ServerProcess;
let rlBurst: grpc.Client & Record<string, Function>;
let rlFault: grpc.Client & Record<string, Function>;
let apiKey: string;

interface Answer {
  allowed: boolean;
  source: string;
  ms: number;
}

/** A deadline far beyond any answer: only a hang reaches it (2000 calls took up to 15 s on a crowded machine). */
const DEADLINE_MS = 90_000;

function consumeOnce(rl: grpc.Client & Record<string, Function>, policy: string, key: string, deadlineMs = DEADLINE_MS): Promise<Answer> {
  const md = new grpc.Metadata();
  md.set("x-api-key", apiKey);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    rl["ConsumeRateLimit"]?.call(
      rl,
      { policy, subject: { type: "key", id: key }, cost: "1" },
      md,
      { deadline: Date.now() + deadlineMs },
      (err: grpc.ServiceError | null, res: { allowed: boolean; source: string }) =>
        err ? reject(err) : resolve({ allowed: res.allowed, source: res.source.replace("RATE_LIMIT_DECISION_SOURCE_", ""), ms: performance.now() - t0 }),
    );
  });
}

const burst = (rl: grpc.Client & Record<string, Function>, policy: string, key: string, n = BURST) =>
  Promise.all(Array.from({ length: n }, () => consumeOnce(rl, policy, key)));
const max = (xs: number[]) => xs.reduce((a, b) => Math.max(a, b), 0);
const count = (as: Answer[], f: (a: Answer) => boolean) => as.filter(f).length;
const summary = (as: Answer[]) => {
  const by: Record<string, number> = {};
  for (const a of as) by[`${a.allowed ? "allowed" : "denied"}/${a.source}`] = (by[`${a.allowed ? "allowed" : "denied"}/${a.source}`] ?? 0) + 1;
  return JSON.stringify(by);
};
const logLines = (server: ServerProcess, msg: string) => server.lines().filter((l) => l.includes(msg));

beforeAll(async () => {
  t = await freshDatabase();
  // Windows of a day: a burst of a few seconds almost never straddles a fixed window's edge (which would
  // rightly admit up to twice the limit), and a token bucket refills one unit every 14 minutes.
  for (const a of ALGORITHMS) {
    for (const m of MODES) {
      await t.raw`insert into rate_limit_policies (name, scope, limit_count, window_sec, algorithm, failure_mode)
                  values (${policyName(a, m)}, 'key', ${LIMIT}, 86400, ${a}, ${m})`;
    }
  }
  const minted = mintApiKey("burst-caller", ["ratelimit"], null);
  apiKey = minted.key;
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes, tenant_id)
              values (${minted.record.id}, 'burst-caller', ${minted.record.secretSha256}, ${minted.record.scopes}, null)`;
  redis = await startRedisServer();
  const common = { DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_REDIS_KEY_PREFIX: `authz:test:burst:${randomUUID()}` };
  [bursting, faulty] = await Promise.all([
    startServerProcess({ ...common, REDIS_URL: inject("redisUrl"), AUTHZ_REDIS_COMMAND_TIMEOUT_MS: String(BURST_COMMAND_TIMEOUT_MS) }),
    startServerProcess({ ...common, REDIS_URL: redis.url }),
  ]);
  const protos = loadProtos();
  rlBurst = client(protos, "authz.v1.RateLimitService", bursting.grpcPort);
  rlFault = client(protos, "authz.v1.RateLimitService", faulty.grpcPort);
  // Warm the connections, the script caches and the code paths (a cold server took longest on the first burst).
  for (const rl of [rlBurst, rlFault])
    expect(await consumeOnce(rl, policyName("fixed_window", "open"), `warm-${randomUUID()}`)).toMatchObject({ allowed: true, source: "STORE" });
  await burst(rlBurst, policyName("fixed_window", "open"), `warm-${randomUUID()}`, 200);
}, 120_000);

afterAll(async () => {
  rlBurst?.close();
  rlFault?.close();
  await Promise.all([bursting?.stop(), faulty?.stop()]);
  await redis?.stop();
  await t?.drop();
});

describe(`${BURST} concurrent ConsumeRateLimit calls on a limit of ${LIMIT}, Redis healthy`, () => {
  const cases = ALGORITHMS.flatMap((a) => MODES.map((m) => [a, m] as const));
  it.each(cases)(
    "%s, fail-%s: exactly the limit is admitted, every answer from Redis",
    async (a, m) => {
      const answers = await burst(rlBurst, policyName(a, m), `k-${randomUUID()}`);
      const allowed = count(answers, (x) => x.allowed);
      console.info(`burst ${a}/${m}: ${summary(answers)}, max latency ${max(answers.map((x) => x.ms)).toFixed(0)} ms`);
      expect(allowed, summary(answers)).toBe(LIMIT);
      expect(
        count(answers, (x) => x.source === "STORE"),
        summary(answers),
      ).toBe(BURST);
    },
    2 * DEADLINE_MS,
  );

  it("the circuit breaker never opened and Redis was never reported down", () => {
    expect(logLines(bursting, "circuit breaker open")).toEqual([]);
    expect(logLines(bursting, "Redis is down")).toEqual([]);
    expect(bursting.alive()).toBe(true);
  });
});

/** Waits (bounded) until a call is answered by Redis again. */
async function untilStore(policy: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if ((await consumeOnce(rlFault, policy, `probe-${randomUUID()}`)).source === "STORE") return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`Redis did not answer again within ${ms} ms`);
}

/** `callers` callers, each making `rounds` calls one after another, on both failure modes. */
async function stream(callers: number, rounds: number): Promise<Array<Answer & { mode: "open" | "closed" }>> {
  const out: Array<Answer & { mode: "open" | "closed" }> = [];
  await Promise.all(
    Array.from({ length: callers }, async (_, i) => {
      const mode = i % 2 === 0 ? "open" : "closed";
      for (let r = 0; r < rounds; r++) out.push({ mode, ...(await consumeOnce(rlFault, policyName(ALGORITHMS[r % 3] as string, mode), `s-${randomUUID()}`)) });
    }),
  );
  return out;
}

function expectFailureMode(answers: Array<Answer & { mode: "open" | "closed" }>): void {
  for (const a of answers) {
    if (a.mode === "open") expect(a, summary(answers)).toMatchObject({ allowed: true, source: "FAILURE_OPEN" });
    else expect(a, summary(answers)).toMatchObject({ allowed: false, source: "FAILURE_CLOSED" });
  }
}

describe("Redis stalls (SIGSTOP) or dies (SIGKILL)", () => {
  it(
    "paused: calls answer by failure mode within the command timeout; a burst too, and nothing hangs",
    async () => {
      // The same stream against the healthy Redis first: warm code paths, and the figure to compare with.
      const healthy = await stream(16, 12);
      console.info(`healthy stream: ${healthy.length} calls, ${summary(healthy)}, max latency ${max(healthy.map((x) => x.ms)).toFixed(1)} ms`);
      redis.pause();
      try {
        // Sixteen callers in a loop, as services call: each answer within the timeout (+ slack).
        const s = await stream(16, 12);
        expectFailureMode(s);
        const worst = max(s.map((x) => x.ms));
        console.info(`paused stream: ${s.length} calls, max latency ${worst.toFixed(1)} ms`);
        expect(worst).toBeLessThanOrEqual(COMMAND_TIMEOUT_MS + SLACK_MS);
        // A burst: every answer is its policy's failure mode (the client's deadline bounds a hang).
        const [open, closed] = await Promise.all([
          burst(rlFault, policyName("sliding_window", "open"), `p-${randomUUID()}`, BURST / 2),
          burst(rlFault, policyName("token_bucket", "closed"), `p-${randomUUID()}`, BURST / 2),
        ]);
        expectFailureMode([...open.map((a) => ({ ...a, mode: "open" as const })), ...closed.map((a) => ({ ...a, mode: "closed" as const }))]);
        console.info(`paused burst: max latency ${max([...open, ...closed].map((x) => x.ms)).toFixed(0)} ms (the server decoding ${BURST} calls)`);
      } finally {
        redis.resume();
      }
      await untilStore(policyName("fixed_window", "closed"), 10_000);
      expect(faulty.alive()).toBe(true);
    },
    2 * DEADLINE_MS,
  );

  it("killed: calls answer by failure mode within the timeout; back on the same port, Redis answers again", async () => {
    await redis.kill();
    try {
      const s = await stream(16, 12);
      expectFailureMode(s);
      const worst = max(s.map((x) => x.ms));
      console.info(`killed stream: ${s.length} calls, max latency ${worst.toFixed(1)} ms`);
      expect(worst).toBeLessThanOrEqual(COMMAND_TIMEOUT_MS + SLACK_MS);
    } finally {
      await redis.restart();
    }
    await untilStore(policyName("fixed_window", "closed"), 10_000);
    const s = await stream(4, 3);
    expect(
      s.every((a) => a.source === "STORE" && a.allowed),
      summary(s),
    ).toBe(true);
    expect(faulty.alive()).toBe(true);
  }, 60_000);
});
