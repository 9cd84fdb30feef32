import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createDispatcher, type Dispatcher, QueueTimeout, RedisTimeout } from "./redis-dispatcher.js";

/** A command Redis has not answered yet: the test answers it. */
interface Pending {
  readonly name: string;
  answer(v?: unknown): void;
  fail(e: Error): void;
}

let sent: Pending[];
const command = (name: string) => () =>
  new Promise<unknown>((resolve, reject) => {
    sent.push({ name, answer: (v) => resolve(v ?? name), fail: reject });
  });

/** Runs a command through `d`, recording how it ended. */
function track(d: Dispatcher, name: string) {
  const r: { value?: unknown; error?: Error } = {};
  d.run(command(name)).then(
    (v) => (r.value = v),
    (e: Error) => (r.error = e),
  );
  return r;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "clearImmediate", "Date"] });
  sent = [];
});
afterEach(() => vi.useRealTimers());

/** The fake clock runs a setImmediate scheduled at t at t + 1 ms: the judgment comes 1 ms after its timer. */
const JUDGED = 1;

const dispatcher = (o: { maxInFlight: number; timeoutMs?: number; queueTimeoutMs?: number }) =>
  createDispatcher({ timeoutMs: o.timeoutMs ?? 50, queueTimeoutMs: o.queueTimeoutMs ?? 1000, maxInFlight: o.maxInFlight, now: () => Date.now() });

describe("Redis dispatcher", () => {
  it("keeps at most maxInFlight commands unanswered; the others go out in call order as answers come back", async () => {
    const d = dispatcher({ maxInFlight: 2 });
    const rs = ["a", "b", "c", "d"].map((n) => track(d, n));
    expect(sent.map((s) => s.name)).toEqual(["a", "b"]);
    expect(d.stats()).toMatchObject({ inFlight: 2, queued: 2 });
    sent[1]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.map((s) => s.name)).toEqual(["a", "b", "c"]);
    sent[0]?.answer();
    sent[2]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    sent[3]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect(rs.map((r) => r.value)).toEqual(["a", "b", "c", "d"]);
    expect(d.stats()).toMatchObject({ inFlight: 0, queued: 0 });
  });

  it("times Redis from when a command is sent: waiting for a slot does not count", async () => {
    const d = dispatcher({ maxInFlight: 1, timeoutMs: 50 });
    const a = track(d, "a");
    const b = track(d, "b");
    await vi.advanceTimersByTimeAsync(40);
    sent[0]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    // b was called at 0 and sent at 40: at 80 it is 80 ms old but has waited 40 ms for Redis.
    await vi.advanceTimersByTimeAsync(40);
    expect(b).toEqual({});
    sent[1]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect([a.value, b.value]).toEqual(["a", "b"]);
  });

  it("each command fails at its own deadline; answers still in time succeed", async () => {
    const d = dispatcher({ maxInFlight: 4, timeoutMs: 50 });
    const a = track(d, "a");
    await vi.advanceTimersByTimeAsync(30);
    const b = track(d, "b");
    await vi.advanceTimersByTimeAsync(20 + JUDGED);
    expect(a.error).toBeInstanceOf(RedisTimeout);
    expect(b).toEqual({});
    sent[1]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect(b.value).toBe("b");
    expect(d.stats()).toMatchObject({ inFlight: 0, queued: 0 });
  });

  it("while Redis is stalled, calls waiting for a slot are not sent into it and fail within the timeout; any answer ends the stall", async () => {
    const d = dispatcher({ maxInFlight: 2, timeoutMs: 50, queueTimeoutMs: 10_000 });
    const [a, b] = [track(d, "a"), track(d, "b")];
    await vi.advanceTimersByTimeAsync(20);
    const c = track(d, "c");
    await vi.advanceTimersByTimeAsync(30 + JUDGED);
    // a and b timed out: Redis is stalled; c, waiting since 20, is not sent into it...
    expect([a.error, b.error]).toEqual([expect.any(RedisTimeout), expect.any(RedisTimeout)]);
    expect(sent.map((x) => x.name)).toEqual(["a", "b"]);
    const e = track(d, "e");
    // ...and fails once it has waited the timeout, as does every call queued behind it.
    await vi.advanceTimersByTimeAsync(20);
    expect(c.error).toBeInstanceOf(RedisTimeout);
    expect(e).toEqual({});
    await vi.advanceTimersByTimeAsync(30 + JUDGED);
    expect(e.error).toBeInstanceOf(RedisTimeout);
    expect(d.stats()).toMatchObject({ inFlight: 0, queued: 0 });
    // A late answer to a failed command shows Redis is back: calls flow again.
    sent[0]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    const f = track(d, "f");
    const g = track(d, "g");
    const h = track(d, "h");
    expect(sent.map((x) => x.name)).toEqual(["a", "b", "f", "g"]);
    sent[2]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.at(-1)?.name).toBe("h");
    sent[3]?.answer();
    sent[4]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect([f.value, g.value, h.value]).toEqual(["f", "g", "h"]);
  });

  it("judges one poll phase after the timer: an answer that arrives in between wins", async () => {
    const d = dispatcher({ maxInFlight: 1, timeoutMs: 50 });
    const a = track(d, "a");
    // Fires right after the dispatcher's timer, before its setImmediate: a reply read in that poll phase.
    setTimeout(() => sent[0]?.answer(), 50);
    await vi.advanceTimersByTimeAsync(60);
    expect(a).toEqual({ value: "a" });
  });

  it("judges only deadlines passed when its timer fired: a command sent during the busy poll phase after it is not failed", async () => {
    const d = dispatcher({ maxInFlight: 2, timeoutMs: 50 });
    track(d, "a");
    sent[0]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    // The timer for a's deadline still fires at 50; right after it, a long callback sends b and runs 300 ms.
    let b: ReturnType<typeof track> | undefined;
    setTimeout(() => {
      b = track(d, "b");
      vi.setSystemTime(Date.now() + 300);
    }, 50);
    await vi.advanceTimersByTimeAsync(50 + JUDGED);
    expect(b).toEqual({});
    sent[1]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect(b?.value).toBe("b");
  });

  it("a call waiting longer than the queue budget fails with QueueTimeout; the command in flight is not failed", async () => {
    const d = dispatcher({ maxInFlight: 1, timeoutMs: 1000, queueTimeoutMs: 100 });
    const a = track(d, "a");
    const b = track(d, "b");
    await vi.advanceTimersByTimeAsync(100 + JUDGED);
    expect(b.error).toBeInstanceOf(QueueTimeout);
    expect(a).toEqual({});
    sent[0]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect(a.value).toBe("a");
    expect(sent.map((s) => s.name)).toEqual(["a"]);
  });

  it("a send that throws or rejects fails only its call and frees its slot", async () => {
    const d = dispatcher({ maxInFlight: 1 });
    const thrown = d.run(() => {
      throw new TypeError("boom");
    });
    await expect(thrown).rejects.toThrow("boom");
    const b = track(d, "b");
    sent[0]?.fail(new Error("NOSCRIPT"));
    await vi.advanceTimersByTimeAsync(0);
    expect(b.error?.message).toBe("NOSCRIPT");
    const c = track(d, "c");
    sent[1]?.answer();
    await vi.advanceTimersByTimeAsync(0);
    expect(c.value).toBe("c");
  });

  it("close fails everything in flight or waiting, and every later call", async () => {
    const d = dispatcher({ maxInFlight: 1 });
    const a = track(d, "a");
    const b = track(d, "b");
    d.close(new Error("closed"));
    await vi.advanceTimersByTimeAsync(0);
    expect([a.error?.message, b.error?.message]).toEqual(["closed", "closed"]);
    await expect(d.run(command("c"))).rejects.toThrow("closed");
  });
});
