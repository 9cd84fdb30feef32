// The three counting algorithms, as pure functions of a counter's state and
// the time. The in-process store runs them directly; the Redis Lua script in
// lua.ts is a line-by-line port (test/ratelimit-arithmetic.test.ts runs both on the
// same table of cases). Times are integer microseconds since the epoch.
//
// State fields (the Redis hash holds the same names):
//   ws  start of the current window (fixed, sliding)
//   c   units counted in the current window (fixed, sliding)
//   pc  units counted in the previous window (sliding)
//   u   units in use (token bucket; fractional, drains continuously)
//   lu  when the counter was last written

import type { RateLimitAlgorithm } from "../engine/rate-limit-policies.js";

export interface CounterState {
  ws: number;
  c: number;
  pc: number;
  u: number;
  lu: number;
}

/** retryAfterUs when the cost can never pass (it exceeds the limit). */
export const NEVER = -1;

/** Tolerance for the token bucket's floating-point level. */
const EPS = 1e-9;

/** Rounds a duration in µs up, ignoring floating-point noise far below a microsecond. */
const up = (us: number) => Math.ceil(us - 1e-6) + 0; // + 0 turns -0 into 0

export interface Evaluation {
  /** Whether this counter alone allows spending `cost`. */
  allowed: boolean;
  /** Units left after the call (after spending when allowed). */
  remaining: number;
  /** Until the window ends (fixed, sliding) or the bucket is full again (token bucket). */
  resetAfterUs: number;
  /** 0 when allowed; NEVER when cost > limit; else the wait until the same cost passes. */
  retryAfterUs: number;
  /** Counted units after the call (token bucket: in use, rounded up). */
  count: number;
  /** Sliding window: the previous window's count. */
  previousCount: number;
  /** Start of the current window (token bucket: lastUpdatedUs); 0 when the counter is empty. */
  windowStartUs: number;
  /** When the counter was last written (now, when this call spends); 0 when empty. */
  lastUpdatedUs: number;
  /** The state to write when the call spends (allowed and cost > 0). */
  next: CounterState;
  /** How long the written state must live (milliseconds). */
  ttlMs: number;
}

/** Units over `windowUs` for `limit`, spending `cost` at `nowUs`, from `s` (undefined: empty counter). */
export function evaluate(algorithm: RateLimitAlgorithm, s: CounterState | undefined, nowUs: number, limit: number, windowUs: number, cost: number): Evaluation {
  switch (algorithm) {
    case "fixed_window":
      return fixedWindow(s, nowUs, limit, windowUs, cost);
    case "sliding_window":
      return slidingWindow(s, nowUs, limit, windowUs, cost);
    case "token_bucket":
      return tokenBucket(s, nowUs, limit, windowUs, cost);
  }
}

function fixedWindow(s: CounterState | undefined, nowUs: number, limit: number, windowUs: number, cost: number): Evaluation {
  const ws = Math.floor(nowUs / windowUs) * windowUs;
  const live = s !== undefined && s.ws === ws;
  const c = live ? s.c : 0;
  const exceeds = cost > limit;
  const allowed = !exceeds && c + cost <= limit;
  const after = allowed ? c + cost : c;
  const resetAfterUs = ws + windowUs - nowUs;
  const spends = allowed && cost > 0;
  return {
    allowed,
    remaining: Math.max(0, limit - after),
    resetAfterUs,
    retryAfterUs: allowed ? 0 : exceeds ? NEVER : resetAfterUs,
    count: after,
    previousCount: 0,
    windowStartUs: live || spends ? ws : 0,
    lastUpdatedUs: spends ? nowUs : live ? s.lu : 0,
    next: { ws, c: c + cost, pc: 0, u: 0, lu: nowUs },
    ttlMs: Math.ceil(resetAfterUs / 1000) + 1000,
  };
}

function slidingWindow(s: CounterState | undefined, nowUs: number, limit: number, windowUs: number, cost: number): Evaluation {
  const ws = Math.floor(nowUs / windowUs) * windowUs;
  let c = 0;
  let pc = 0;
  if (s !== undefined && s.ws === ws) {
    c = s.c;
    pc = s.pc;
  } else if (s !== undefined && s.ws === ws - windowUs) {
    pc = s.c;
  }
  const elapsed = nowUs - ws;
  // The weighted count, times windowUs (integer arithmetic while it fits in 2^53).
  const weighted = pc * (windowUs - elapsed) + c * windowUs;
  const exceeds = cost > limit;
  const allowed = !exceeds && weighted + cost * windowUs <= limit * windowUs;
  const afterWeighted = allowed ? weighted + cost * windowUs : weighted;
  const resetAfterUs = windowUs - elapsed;
  const retryAfterUs = allowed ? 0 : exceeds ? NEVER : slidingRetryAfterUs(c, pc, elapsed, limit, windowUs, cost);
  const spends = allowed && cost > 0;
  const live = s !== undefined && (s.ws === ws || s.ws === ws - windowUs);
  return {
    allowed,
    remaining: Math.max(0, Math.floor((limit * windowUs - afterWeighted) / windowUs)),
    resetAfterUs,
    retryAfterUs,
    count: allowed ? c + cost : c,
    previousCount: pc,
    windowStartUs: live || spends ? ws : 0,
    lastUpdatedUs: spends ? nowUs : live ? s.lu : 0,
    next: { ws, c: c + cost, pc, u: 0, lu: nowUs },
    ttlMs: Math.ceil((ws + 2 * windowUs - nowUs) / 1000) + 1000,
  };
}

/** Sliding window, denied but not exceeding the limit: the wait until the same cost passes. */
function slidingRetryAfterUs(c: number, pc: number, elapsed: number, limit: number, windowUs: number, cost: number): number {
  const free = limit - c - cost;
  if (pc > 0 && free >= 0) {
    // Later in this window, once the previous window's weight has shrunk enough.
    return up(windowUs - (free * windowUs) / pc - elapsed);
  }
  // In the next window, once this window's count (then the previous one) weighs little enough.
  const into = c > 0 ? Math.max(0, windowUs - ((limit - cost) * windowUs) / c) : 0;
  return up(windowUs - elapsed + into);
}

function tokenBucket(s: CounterState | undefined, nowUs: number, limit: number, windowUs: number, cost: number): Evaluation {
  // GCRA with the level stored instead of the theoretical arrival time:
  // tat = lu + u * windowUs / limit. The level stays small, so its
  // precision does not depend on the magnitude of the clock.
  const elapsed = s === undefined ? 0 : Math.max(0, nowUs - s.lu);
  const used = s === undefined ? 0 : Math.max(0, s.u - (elapsed * limit) / windowUs);
  const exceeds = cost > limit;
  const allowed = !exceeds && used + cost <= limit + EPS;
  const after = allowed ? used + cost : used;
  const spends = allowed && cost > 0;
  const live = s !== undefined && used > 0;
  return {
    allowed,
    remaining: Math.max(0, Math.floor(limit - after + EPS)),
    resetAfterUs: up((after * windowUs) / limit),
    retryAfterUs: allowed ? 0 : exceeds ? NEVER : up(((used + cost - limit) * windowUs) / limit),
    count: Math.max(0, Math.ceil(after - EPS)),
    previousCount: 0,
    windowStartUs: spends ? nowUs : live ? s.lu : 0,
    lastUpdatedUs: spends ? nowUs : live ? s.lu : 0,
    next: { ws: nowUs, c: 0, pc: 0, u: used + cost, lu: nowUs },
    ttlMs: Math.ceil(((used + cost) * windowUs) / limit / 1000) + 1000,
  };
}

/** Gives back `cost` units spent in the window that started at `reservedWs` (cluster refunds). */
export function refund(
  algorithm: RateLimitAlgorithm,
  s: CounterState,
  nowUs: number,
  limit: number,
  windowUs: number,
  reservedWs: number,
  cost: number,
): CounterState {
  switch (algorithm) {
    case "fixed_window":
      return s.ws === reservedWs ? { ...s, c: Math.max(0, s.c - cost) } : s;
    case "sliding_window":
      if (s.ws === reservedWs) return { ...s, c: Math.max(0, s.c - cost) };
      if (s.ws === reservedWs + windowUs) return { ...s, pc: Math.max(0, s.pc - cost) };
      return s;
    case "token_bucket": {
      const used = Math.max(0, s.u - (Math.max(0, nowUs - s.lu) * limit) / windowUs);
      return { ws: nowUs, c: 0, pc: 0, u: Math.max(0, used - cost), lu: nowUs };
    }
  }
}
