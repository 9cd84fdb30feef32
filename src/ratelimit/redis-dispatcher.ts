// How rate-limit commands reach Redis: at most `maxInFlight` sent and not yet
// answered, the rest waiting in order; and two clocks that measure two
// different things.
//
//   Redis responsiveness. A command's clock starts when it is sent (handed
//   to the client, which writes it to the socket at once), not when the call
//   was made: time spent waiting here for a slot is not Redis' fault. A
//   command unanswered for `timeoutMs` fails with RedisTimeout, and Redis is
//   then stalled until it answers anything again (a late answer to a failed
//   command counts): meanwhile the calls waiting for a slot are not sent
//   into it, and each fails with RedisTimeout once it has waited
//   `timeoutMs`. So every call answers within the timeout of when it was
//   made or sent, whatever Redis does.
//
//   Local queueing. A call that waits longer than `queueTimeoutMs` for a
//   slot (Redis not stalled) fails with QueueTimeout: the process is
//   overloaded, Redis is not known to be at fault, so the breaker must not
//   count it.
//
// Both are judged one poll phase after their timer fires (setImmediate from
// the timers phase runs after the poll phase of the same loop iteration),
// and only for deadlines that had passed when the timer fired: every reply
// Redis sent in time was in the socket when that poll phase began and has
// been read, so a busy event loop is never mistaken for a slow Redis. (A
// command sent during that poll phase, by a callback that then ran for
// 300 ms, waits for the next poll phase to be judged.)
//
// The cap keeps Redis' own backlog short (512 scripts are a few ms of Redis
// time), so a burst of any size cannot make a healthy Redis look stalled.

export class RedisTimeout extends Error {
  constructor(timeoutMs: number) {
    super(`Redis did not answer within ${timeoutMs} ms`);
    this.name = "RedisTimeout";
  }
}

export class QueueTimeout extends Error {
  constructor(queueTimeoutMs: number) {
    super(`no Redis slot became free within ${queueTimeoutMs} ms (this process is overloaded)`);
    this.name = "QueueTimeout";
  }
}

export interface DispatcherOptions {
  /** Longest Redis may take to answer a command, counted from when it is sent. */
  timeoutMs: number;
  /** Commands sent and not answered yet, at most; further calls wait in order. */
  maxInFlight: number;
  /** Longest a call may wait for a slot. */
  queueTimeoutMs: number;
  /** Milliseconds, monotonic (performance.now by default; tests inject one). */
  now?: () => number;
}

export interface DispatcherStats {
  inFlight: number;
  queued: number;
  /** Commands handed to Redis since the start. */
  sent: number;
}

export interface Dispatcher {
  /** Runs `send` when a slot is free; its promise, or a RedisTimeout / QueueTimeout rejection. */
  run<T>(send: () => Promise<T>): Promise<T>;
  stats(): DispatcherStats;
  /** Fails everything in flight or waiting with `err` and stops the timer. */
  close(err: Error): void;
}

interface Job {
  readonly send: () => Promise<unknown>;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly queuedAt: number;
  sentAt: number;
  done: boolean;
}

/** A FIFO with O(1) shift that skips jobs already settled. */
class Fifo {
  #items: Job[] = [];
  #head = 0;
  push(j: Job): void {
    this.#items.push(j);
  }
  /** The oldest job not done, or undefined. */
  peek(): Job | undefined {
    while (this.#head < this.#items.length && (this.#items[this.#head] as Job).done) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return this.#items[this.#head];
  }
  shift(): Job | undefined {
    const j = this.peek();
    if (j) this.#head++;
    return j;
  }
  /** Removes and returns every job not done. */
  drain(): Job[] {
    const out = this.#items.slice(this.#head).filter((j) => !j.done);
    this.#items = [];
    this.#head = 0;
    return out;
  }
}

export function createDispatcher(opts: DispatcherOptions): Dispatcher {
  const now = opts.now ?? (() => performance.now());
  const sent = new Fifo();
  const waiting = new Fifo();
  let inFlight = 0;
  let queued = 0;
  let sentTotal = 0;
  /** A command went unanswered for the timeout, and Redis has answered nothing since. */
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = 0;
  let judging = false;
  let closed: Error | undefined;

  const settle = (j: Job, err: Error | undefined, value?: unknown) => {
    if (j.done) return false;
    j.done = true;
    if (err) j.reject(err);
    else j.resolve(value);
    return true;
  };

  const start = (j: Job) => {
    j.sentAt = now();
    inFlight++;
    sentTotal++;
    sent.push(j);
    let p: Promise<unknown>;
    try {
      p = j.send();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => answered(j, undefined, v),
      (e: unknown) => answered(j, e instanceof Error ? e : new Error(String(e))),
    );
  };

  function answered(j: Job, err: Error | undefined, value?: unknown): void {
    // An answer, even a late one to a command already failed, shows that Redis is back.
    if (!err) stalled = false;
    // A command already failed by its deadline has released its slot.
    if (settle(j, err, value)) inFlight--;
    pump();
  }

  /** Sends waiting calls while slots are free, unless Redis is stalled. */
  function pump(): void {
    while (!stalled && inFlight < opts.maxInFlight) {
      const j = waiting.shift();
      if (!j) break;
      queued--;
      start(j);
    }
    arm();
  }

  /** How long a call may wait for a slot: the timeout while Redis is stalled, else the queue budget. */
  const waitBudget = () => (stalled ? Math.min(opts.timeoutMs, opts.queueTimeoutMs) : opts.queueTimeoutMs);

  /** Keeps one timer on the earliest deadline: the oldest command sent, or the oldest call waiting. */
  function arm(): void {
    if (judging || closed) return;
    const oldestSent = sent.peek();
    const oldestWaiting = waiting.peek();
    const at = Math.min(oldestSent ? oldestSent.sentAt + opts.timeoutMs : Infinity, oldestWaiting ? oldestWaiting.queuedAt + waitBudget() : Infinity);
    if (timer && timerAt <= at) return;
    clearTimeout(timer);
    timer = undefined;
    if (at === Infinity) return;
    timerAt = at;
    timer = setTimeout(
      () => {
        timer = undefined;
        judging = true;
        // One poll phase later: replies already in the socket are read first.
        // Only deadlines passed by now are judged then: a command sent during
        // that poll phase has not had a poll phase of its own yet.
        const firedAt = now();
        setImmediate(() => judge(firedAt));
      },
      Math.max(0, at - now()),
    );
    timer.unref();
  }

  function judge(t: number): void {
    judging = false;
    if (closed) return;
    // Commands are sent in order, so their deadlines expire in order.
    for (let j = sent.peek(); j && j.sentAt + opts.timeoutMs <= t; j = sent.peek()) {
      sent.shift();
      inFlight--;
      stalled = true;
      settle(j, new RedisTimeout(opts.timeoutMs));
    }
    for (let j = waiting.peek(); j && j.queuedAt + waitBudget() <= t; j = waiting.peek()) {
      waiting.shift();
      queued--;
      settle(j, stalled ? new RedisTimeout(opts.timeoutMs) : new QueueTimeout(opts.queueTimeoutMs));
    }
    pump();
  }

  return {
    run<T>(send: () => Promise<T>): Promise<T> {
      if (closed) return Promise.reject(closed);
      return new Promise<T>((resolve, reject) => {
        const j: Job = { send, resolve: resolve as (v: unknown) => void, reject, queuedAt: now(), sentAt: 0, done: false };
        if (inFlight < opts.maxInFlight && queued === 0) start(j);
        else {
          waiting.push(j);
          queued++;
        }
        arm();
      });
    },
    stats: () => ({ inFlight, queued, sent: sentTotal }),
    close(err) {
      closed = err;
      clearTimeout(timer);
      timer = undefined;
      for (const j of sent.drain()) if (settle(j, err)) inFlight--;
      for (const j of waiting.drain()) if (settle(j, err)) queued--;
    },
  };
}
