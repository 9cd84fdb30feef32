// The Redis Lua scripts: one consume script call per batch of decisions (the
// calls one turn of the event loop made), each decision over every counter
// of its call (one key per policy and subject). The arithmetic is a port of
// algorithms.ts; keep the two in step (test/ratelimit-arithmetic.test.ts compares
// them case by case).
//
// Production scripts read the time with redis.call('TIME') inside the script:
// one clock (the Redis server's) for every replica of authz. buildScripts({
// clock: "argument" }) makes a variant that takes the time from its last
// argument instead; only tests use it, to hit window edges exactly.

export interface ScriptOptions {
  clock: "server" | "argument";
}

const SERVER_CLOCK = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])`;

const ARGUMENT_CLOCK = `
local now = tonumber(ARGV[#ARGV])`;

const COMMON = `
local EPS = 1e-9
local function up(x) return math.ceil(x - 1e-6) end
-- A counter is one string: its fields packed as little-endian doubles (exact for
-- every integer below 2^53 and for the token bucket's fractional level). A window
-- (fixed, sliding) holds ws, c, pc, lu, w; a token bucket u, lu. The key names the
-- algorithm, so the caller says which layout to read.
local function load(key, alg)
  local v = redis.call('GET', key)
  if not v then return nil end
  if alg == 'tb' then
    local u, lu = struct.unpack('<dd', v)
    return { ws = 0, c = 0, pc = 0, u = u, lu = lu }
  end
  local ws, c, pc, lu, w = struct.unpack('<ddddd', v)
  return { ws = ws, c = c, pc = pc, u = 0, lu = lu, w = w }
end
-- s.k: the stored key already holds this window (same start and length), so its
-- expiry (a function of both) is already right: keep it (SET ... KEEPTTL).
local function save(key, s, ttl)
  if s.a == 'tb' then
    redis.call('SET', key, struct.pack('<dd', s.u, s.lu), 'PX', math.max(1, math.ceil(ttl)))
  elseif s.k then
    redis.call('SET', key, struct.pack('<ddddd', s.ws, s.c, s.pc, s.lu, s.w), 'KEEPTTL')
  else
    redis.call('SET', key, struct.pack('<ddddd', s.ws, s.c, s.pc, s.lu, s.w), 'PX', math.max(1, math.ceil(ttl)))
  end
end`;

/**
 * One counter's decision at \`now\`: the arithmetic of algorithms.ts. \`s\` is
 * the stored state (nil: empty). Returns allowed, remaining, reset_after_us,
 * retry_after_us, count, previous_count, window_start_us, last_updated_us,
 * the state to write if the call spends, and its TTL in ms.
 */
const DECIDE = `
local function decide(s, alg, limit, w, cost, now)
  local exceeds = cost > limit
  local allowed, remaining, reset, retry, count, prev, wstart, lupd, nxt, ttl
  if alg == 'fw' then
    local ws = math.floor(now / w) * w
    local live = s ~= nil and s.ws == ws
    local c = 0
    if live then c = s.c end
    allowed = (not exceeds) and c + cost <= limit
    local after = c
    if allowed then after = c + cost end
    reset = ws + w - now
    remaining = math.max(0, limit - after)
    if allowed then retry = 0 elseif exceeds then retry = -1 else retry = reset end
    count = after
    prev = 0
    local spends = allowed and cost > 0
    wstart = 0
    if live or spends then wstart = ws end
    lupd = 0
    if spends then lupd = now elseif live then lupd = s.lu end
    nxt = { ws = ws, c = c + cost, pc = 0, u = 0, lu = now, w = w, k = live and s.w == w }
    ttl = math.ceil(reset / 1000) + 1000
  elseif alg == 'sw' then
    local ws = math.floor(now / w) * w
    local c, pc = 0, 0
    if s ~= nil and s.ws == ws then
      c = s.c
      pc = s.pc
    elseif s ~= nil and s.ws == ws - w then
      pc = s.c
    end
    local elapsed = now - ws
    local weighted = pc * (w - elapsed) + c * w
    allowed = (not exceeds) and weighted + cost * w <= limit * w
    local after = weighted
    if allowed then after = weighted + cost * w end
    reset = w - elapsed
    retry = 0
    if not allowed then
      if exceeds then
        retry = -1
      else
        local free = limit - c - cost
        if pc > 0 and free >= 0 then
          retry = up(w - (free * w) / pc - elapsed)
        else
          local into = 0
          if c > 0 then into = math.max(0, w - ((limit - cost) * w) / c) end
          retry = up(reset + into)
        end
      end
    end
    remaining = math.max(0, math.floor((limit * w - after) / w))
    count = c
    if allowed then count = c + cost end
    prev = pc
    local spends = allowed and cost > 0
    local live = s ~= nil and (s.ws == ws or s.ws == ws - w)
    wstart = 0
    if live or spends then wstart = ws end
    lupd = 0
    if spends then lupd = now elseif live then lupd = s.lu end
    nxt = { ws = ws, c = c + cost, pc = pc, u = 0, lu = now, w = w, k = s ~= nil and s.ws == ws and s.w == w }
    ttl = math.ceil((ws + 2 * w - now) / 1000) + 1000
  else
    local elapsed = 0
    local used = 0
    if s ~= nil then
      elapsed = math.max(0, now - s.lu)
      used = math.max(0, s.u - (elapsed * limit) / w)
    end
    allowed = (not exceeds) and used + cost <= limit + EPS
    local after = used
    if allowed then after = used + cost end
    remaining = math.max(0, math.floor(limit - after + EPS))
    reset = up((after * w) / limit)
    if allowed then retry = 0 elseif exceeds then retry = -1 else retry = up(((used + cost - limit) * w) / limit) end
    count = math.max(0, math.ceil(after - EPS))
    prev = 0
    local spends = allowed and cost > 0
    local live = s ~= nil and used > 0
    wstart = 0
    lupd = 0
    if spends then
      wstart = now
      lupd = now
    elseif live then
      wstart = s.lu
      lupd = s.lu
    end
    nxt = { ws = now, c = 0, pc = 0, u = used + cost, lu = now, w = w, k = false }
    ttl = math.ceil(((used + cost) * w) / limit / 1000) + 1000
  end
  nxt.a = alg
  return allowed, remaining, reset, retry, count, prev, wstart, lupd, nxt, ttl
end`;

/**
 * One consume call (a batch of one: what most turns of a gRPC server send,
 * and every call on a Cluster), without the batch's bookkeeping (but for a
 * key the call carries twice, written once, as the batch does). KEYS: the
 * call's counters. ARGV: cost, then per counter algorithm, limit, window
 * (µs), gating; (argument clock: the time last). Returns what the batch
 * script returns for one call.
 */
const CONSUME_ONE = `
local cost = tonumber(ARGV[1])
local out, o = { 1 }, 1
local writes, nw = {}, 0
local gate = true
for i = 1, #KEYS do
  local a = i * 4 - 2
  local allowed, remaining, reset, retry, count, prev, wstart, lupd, nxt, ttl =
    decide(load(KEYS[i], ARGV[a]), ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), cost, now)
  if ARGV[a + 3] == '1' and not allowed then gate = false end
  if allowed and cost > 0 then
    nw = nw + 1
    writes[nw] = { KEYS[i], nxt, ttl }
  end
  local flag = 0
  if allowed then flag = 1 end
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = flag, remaining, reset, retry
  out[o + 5], out[o + 6], out[o + 7], out[o + 8] = count, prev, wstart, lupd
  o = o + 8
end
if not gate then
  out[1] = 0
elseif nw == 1 then
  save(writes[1][1], writes[1][2], writes[1][3])
elseif nw > 1 then
  -- A key the call carries twice (one counter under two definitions) is written
  -- once, as the batch writes it: the last state, in full unless every write kept its window.
  local last, full = {}, {}
  for j = 1, nw do
    local key = writes[j][1]
    last[key] = j
    if not writes[j][2].k then full[key] = true end
  end
  for j = 1, nw do
    local wr = writes[j]
    if last[wr[1]] == j then
      if full[wr[1]] then wr[2].k = false end
      save(wr[1], wr[2], wr[3])
    end
  end
end
return out`;

/**
 * A batch of consume calls, run in order as if each were its own script:
 * the calls one turn of the event loop made, in one command (single Redis;
 * a Cluster client sends batches of one). KEYS: every call's counters, call
 * after call. ARGV: the number of counter kinds, then per kind its
 * algorithm ("fw", "sw", "tb"), limit, window (µs) and gating (1: its denial
 * blocks the call; 0: shadow); the number of call shapes, then per shape its
 * number of counters, its cost and its counters' kind numbers; then the
 * number of calls, then per call its shape's number (argument clock: then
 * its time). A batch's calls mostly share a few policies and costs: each
 * kind and shape is sent and parsed once, and a call costs one argument
 * beside its keys. Each call evaluates every counter first; if every gating
 * counter allows, each allowing counter spends the cost (cost 0 writes
 * nothing). A counter is read once per batch and written once at the end
 * (one SET; it keeps the key's expiry when the window was already stored),
 * with the state and TTL of the last call that spent on it. Returns, per call, {gate_ok, then per counter: allowed, remaining,
 * reset_after_us, retry_after_us (-1: never), count, previous_count,
 * window_start_us, last_updated_us}.
 */
const CONSUME = `
local state, ttls, order, full = {}, {}, {}, {}
local function get(key, alg)
  local s = state[key]
  if s == nil then
    s = load(key, alg) or false
    state[key] = s
  end
  return s or nil
end
local a = 2
local kinds = {}
for j = 1, tonumber(ARGV[1]) do
  kinds[j] = { ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3] == '1' }
  a = a + 4
end
local shapes = {}
local nshapes = tonumber(ARGV[a])
a = a + 1
for j = 1, nshapes do
  local n = tonumber(ARGV[a])
  local ks = {}
  for i = 1, n do ks[i] = kinds[tonumber(ARGV[a + 1 + i])] end
  shapes[j] = { n, tonumber(ARGV[a + 1]), ks }
  a = a + 2 + n
end
local calls = tonumber(ARGV[a])
a = a + 1
local out, o = {}, 0
local ki = 0
-- A call's writes wait here until its gate is known (reused from call to call).
local wkey, wnxt, wttl = {}, {}, {}
for _ = 1, calls do
  local shape = shapes[tonumber(ARGV[a])]
  a = a + 1
  local n, cost, ks = shape[1], shape[2], shape[3]
  CALL_CLOCK
  local gate, nw = true, 0
  local head = o + 1
  o = head
  for i = 1, n do
    local key = KEYS[ki + i]
    local kind = ks[i]
    local alg = kind[1]
    local allowed, remaining, reset, retry, count, prev, wstart, lupd, nxt, ttl =
      decide(get(key, alg), alg, kind[2], kind[3], cost, now)
    if kind[4] and not allowed then gate = false end
    if allowed and cost > 0 then
      nw = nw + 1
      wkey[nw], wnxt[nw], wttl[nw] = key, nxt, ttl
    end
    local flag = 0
    if allowed then flag = 1 end
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = flag, remaining, reset, retry
    out[o + 5], out[o + 6], out[o + 7], out[o + 8] = count, prev, wstart, lupd
    o = o + 8
  end
  ki = ki + n
  if gate then
    out[head] = 1
    for j = 1, nw do
      local key, nxt = wkey[j], wnxt[j]
      if ttls[key] == nil then order[#order + 1] = key end
      state[key], ttls[key] = nxt, wttl[j]
      if not nxt.k then full[key] = true end
    end
  else
    out[head] = 0
  end
end
for _, key in ipairs(order) do
  -- Counts only if every call of the batch found this key's window already stored.
  if full[key] then state[key].k = false end
  save(key, state[key], ttls[key])
end
return out`;

/**
 * KEYS: counters a consume spent on. ARGV: cost, then per key: algorithm,
 * limit, window (µs), the window start the consume reported. Gives the units
 * back (never below zero). Returns the number of keys changed.
 */
const REFUND = `
local cost = tonumber(ARGV[1])
local changed = 0
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 4
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local w = tonumber(ARGV[base + 3])
  local reserved = tonumber(ARGV[base + 4])
  local s = load(KEYS[i], alg)
  if s ~= nil then
    if alg == 'tb' then
      local used = math.max(0, s.u - (math.max(0, now - s.lu) * limit) / w)
      used = math.max(0, used - cost)
      save(KEYS[i], { a = alg, u = used, lu = now }, (used * w) / limit / 1000 + 1000)
      changed = changed + 1
    elseif s.ws == reserved then
      s.c, s.a, s.k = math.max(0, s.c - cost), alg, true
      save(KEYS[i], s, 0)
      changed = changed + 1
    elseif alg == 'sw' and s.ws == reserved + w then
      s.pc, s.a, s.k = math.max(0, s.pc - cost), alg, true
      save(KEYS[i], s, 0)
      changed = changed + 1
    end
  end
end
return changed`;

export interface Scripts {
  /** A batch of calls (ARGV: the counter kinds, the call shapes, then the number of calls and each call's shape and time). */
  consume: string;
  /** One call (ARGV: cost, then its counters; the time last in the test variant). */
  consumeOne: string;
  refund: string;
}

export function buildScripts(opts: ScriptOptions = { clock: "server" }): Scripts {
  const server = opts.clock === "server";
  // The consume batch reads the server's clock once; the test variant takes each call's time after its cost.
  const consume = CONSUME.replace("CALL_CLOCK", server ? "" : "local now = tonumber(ARGV[a])\n  a = a + 1");
  return {
    consume: `${server ? SERVER_CLOCK : ""}\n${COMMON}\n${DECIDE}\n${consume}`,
    consumeOne: `${server ? SERVER_CLOCK : ARGUMENT_CLOCK}\n${COMMON}\n${DECIDE}\n${CONSUME_ONE}`,
    refund: `${server ? SERVER_CLOCK : ARGUMENT_CLOCK}\n${COMMON}\n${REFUND}`,
  };
}

/** The production scripts (server clock). */
export const SCRIPTS: Scripts = buildScripts();

/**
 * The stored form's tag, the last segment of every counter key (store.ts
 * bucketKey): "p2" is the packed string of \`load\`/\`save\` above. Counters
 * stored as hashes (earlier versions) had no tag; the tag keeps a replica of
 * one form from ever reading a key of the other (a GET on a hash fails).
 */
export const STORED_FORM = "p2";

/** A counter's stored fields, as the scripts keep them (token bucket: u and lu only). */
export interface StoredCounter {
  ws: number;
  c: number;
  pc: number;
  u: number;
  lu: number;
  w: number;
}

/** Reads a counter's stored value (GET of its key) as the scripts do: for tests and diagnostics. */
export function decodeStoredCounter(value: Buffer, algorithm: "fw" | "sw" | "tb"): StoredCounter {
  if (algorithm === "tb") {
    if (value.length !== 16) throw new Error(`a token-bucket counter is 16 bytes, got ${value.length}`);
    return { ws: 0, c: 0, pc: 0, u: value.readDoubleLE(0), lu: value.readDoubleLE(8), w: 0 };
  }
  if (value.length !== 40) throw new Error(`a window counter is 40 bytes, got ${value.length}`);
  const at = (i: number) => value.readDoubleLE(i * 8);
  return { ws: at(0), c: at(1), pc: at(2), u: 0, lu: at(3), w: at(4) };
}

/** Short algorithm codes used in keys and script arguments. */
export const ALGORITHM_CODE = { fixed_window: "fw", sliding_window: "sw", token_bucket: "tb" } as const;
