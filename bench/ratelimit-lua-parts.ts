// What one ConsumeRateLimit script call costs inside Redis, part by part:
// the production single-call script (lua.ts consumeOne, fixed window) beside
// cut-down variants of it and beside a rate-limiter-flexible-like script
// (INCRBY, PEXPIRE on the first call, PTTL). Redis' own time per call from
// INFO commandstats (evalsha usec / calls), over 30,000 calls spread over
// 10,000 keys (three calls a key, so a third create their key), 64 in flight.
// Nobody else should run EVALSHA on that Redis meanwhile (the figures are
// deltas of its global counters); the keys go to database LUA_PARTS_DB
// (default 15), which is flushed before each variant.
//
// Run:  npm run build:bench && REDIS_URL=redis://127.0.0.1:6379 node dist/bench/ratelimit-lua-parts.js

import { Redis } from "ioredis";
import { SCRIPTS } from "../src/ratelimit/lua.js";

const CALLS = 30_000;
const KEYS = 10_000;
const IN_FLIGHT = 64;
const WINDOW_US = 3600 * 1e6;

async function evalshaUsec(r: Redis): Promise<[number, number]> {
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await r.info("commandstats"));
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

async function measure(r: Redis, lua: string, args: Array<string | number>): Promise<number> {
  const sha = (await r.script("LOAD", lua)) as string;
  await r.flushdb();
  const [c0, u0] = await evalshaUsec(r);
  let inFlight: Array<Promise<unknown>> = [];
  for (let i = 0; i < CALLS; i++) {
    inFlight.push(r.evalsha(sha, 1, `{user:bench-${i % KEYS}}:1:fw:p2`, ...args));
    if (inFlight.length >= IN_FLIGHT) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  const [c1, u1] = await evalshaUsec(r);
  return (u1 - u0) / (c1 - c0);
}

/** consumeOne without its one write (a call with one counter writes through this line only). */
function withoutWrite(consume: string): string {
  const write = "save(writes[1][1], writes[1][2], writes[1][3])";
  if (!consume.includes(write)) throw new Error("consumeOne no longer writes one counter as this probe expects");
  return consume.replace(write, "local _ = writes[1]");
}

async function main(): Promise<void> {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error("REDIS_URL is required");
  const r = new Redis(url, { db: Number(process.env.LUA_PARTS_DB ?? 15) });
  const consume = SCRIPTS.consumeOne;
  const args = [1, "fw", 1_000_000, WINDOW_US, "1"];
  const definitions = consume.slice(0, consume.indexOf("local cost = tonumber"));
  const rows: Array<[string, string, Array<string | number>]> = [
    ["an empty script (EVALSHA itself)", "return 1", args],
    ["+ the clock (replicate_commands, TIME) and the function definitions", `${definitions}\nreturn 1`, args],
    ["+ read and decide (GET of the packed counter, the arithmetic, the reply): consumeOne without its write", withoutWrite(consume), args],
    ["consumeOne as shipped (+ one SET: PX on a new window, KEEPTTL within one)", consume, args],
    ["for comparison: SET of a 40-byte value with PX alone", "redis.call('SET', KEYS[1], struct.pack('<ddddd', 1, 2, 0, 5, 6), 'PX', 100000) return 1", args],
    [
      "a rate-limiter-flexible-like script (INCRBY, PEXPIRE on the first call, PTTL)",
      "local c = redis.call('incrby', KEYS[1], ARGV[1]) if c == tonumber(ARGV[1]) then redis.call('pexpire', KEYS[1], ARGV[2]) end return {c, redis.call('pttl', KEYS[1])}",
      [1, 3_600_000],
    ],
  ];
  process.stdout.write("| script | Redis µs per call (round 1 / round 2) |\n|---|---:|\n");
  for (const [name, lua, a] of rows) {
    const one = await measure(r, lua, a);
    const two = await measure(r, lua, a);
    process.stdout.write(`| ${name} | ${one.toFixed(2)} / ${two.toFixed(2)} |\n`);
  }
  await r.flushdb();
  r.disconnect();
}

await main();
