// The Redis Lua scripts: one script call per decision, over every counter of
// the call (one hash key per policy and subject). The arithmetic is a port of
// algorithms.ts; keep the two in step (test/ratelimit-lua.test.ts compares
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
local function int(x) return string.format('%.0f', x) end
local function num(x) return string.format('%.17g', x) end
local function load(key)
  local v = redis.call('HMGET', key, 'ws', 'c', 'pc', 'u', 'lu')
  if not v[5] then return nil end
  return { ws = tonumber(v[1]) or 0, c = tonumber(v[2]) or 0, pc = tonumber(v[3]) or 0,
           u = tonumber(v[4]) or 0, lu = tonumber(v[5]) or 0 }
end
local function save(key, s, ttl)
  redis.call('HSET', key, 'ws', int(s.ws), 'c', int(s.c), 'pc', int(s.pc), 'u', num(s.u), 'lu', int(s.lu))
  redis.call('PEXPIRE', key, math.max(1, math.ceil(ttl)))
end`;

/**
 * KEYS: one counter per policy. ARGV: cost, then per key: algorithm
 * ("fw", "sw", "tb"), limit, window (µs), gating (1: its denial blocks the
 * call; 0: shadow). Every key is evaluated first; if every gating key allows,
 * each allowing key spends `cost` (cost 0 writes nothing). Returns
 * {gate_ok, then per key: allowed, remaining, reset_after_us, retry_after_us
 * (-1: never), count, previous_count, window_start_us, last_updated_us}.
 */
const CONSUME = `
local cost = tonumber(ARGV[1])
local n = #KEYS
local out = { 1 }
local writes = {}
local gate = true
for i = 1, n do
  local base = 1 + (i - 1) * 4
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local w = tonumber(ARGV[base + 3])
  local gating = ARGV[base + 4] == '1'
  local s = load(KEYS[i])
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
    nxt = { ws = ws, c = c + cost, pc = 0, u = 0, lu = now }
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
    nxt = { ws = ws, c = c + cost, pc = pc, u = 0, lu = now }
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
    nxt = { ws = now, c = 0, pc = 0, u = used + cost, lu = now }
    ttl = math.ceil(((used + cost) * w) / limit / 1000) + 1000
  end
  if gating and not allowed then gate = false end
  if allowed and cost > 0 then writes[#writes + 1] = { KEYS[i], nxt, ttl } end
  local a = 0
  if allowed then a = 1 end
  out[#out + 1] = a
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
  out[#out + 1] = count
  out[#out + 1] = prev
  out[#out + 1] = wstart
  out[#out + 1] = lupd
end
if gate then
  for _, wr in ipairs(writes) do save(wr[1], wr[2], wr[3]) end
else
  out[1] = 0
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
  local s = load(KEYS[i])
  if s ~= nil then
    if alg == 'tb' then
      local used = math.max(0, s.u - (math.max(0, now - s.lu) * limit) / w)
      used = math.max(0, used - cost)
      redis.call('HSET', KEYS[i], 'ws', int(now), 'u', num(used), 'lu', int(now))
      redis.call('PEXPIRE', KEYS[i], math.max(1, math.ceil((used * w) / limit / 1000) + 1000))
      changed = changed + 1
    elseif s.ws == reserved then
      redis.call('HSET', KEYS[i], 'c', int(math.max(0, s.c - cost)))
      changed = changed + 1
    elseif alg == 'sw' and s.ws == reserved + w then
      redis.call('HSET', KEYS[i], 'pc', int(math.max(0, s.pc - cost)))
      changed = changed + 1
    end
  end
end
return changed`;

export interface Scripts {
  consume: string;
  refund: string;
}

export function buildScripts(opts: ScriptOptions = { clock: "server" }): Scripts {
  const clock = opts.clock === "server" ? SERVER_CLOCK : ARGUMENT_CLOCK;
  return {
    consume: `${clock}\n${COMMON}\n${CONSUME}`,
    refund: `${clock}\n${COMMON}\n${REFUND}`,
  };
}

/** The production scripts (server clock). */
export const SCRIPTS: Scripts = buildScripts();

/** Short algorithm codes used in keys and script arguments. */
export const ALGORITHM_CODE = { fixed_window: "fw", sliding_window: "sw", token_bucket: "tb" } as const;
