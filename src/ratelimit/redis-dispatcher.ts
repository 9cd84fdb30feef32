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
  return new SlotDispatcher(opts);
}

/** A job is settled once: by its answer, its deadline or close. Returns whether this call settled it. */
function settle(j: Job, err: Error | undefined, value?: unknown): boolean {
  if (j.done) return false;
  j.done = true;
  if (err) j.reject(err);
  else j.resolve(value);
  return true;
}

class SlotDispatcher implements Dispatcher {
  readonly #opts: DispatcherOptions;
  readonly #now: () => number;
  readonly #sent = new Fifo();
  readonly #waiting = new Fifo();
  #inFlight = 0;
  #queued = 0;
  #sentTotal = 0;
  /** A command went unanswered for the timeout, and Redis has answered nothing since. */
  #stalled = false;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = 0;
  #judging = false;
  #closed: Error | undefined;

  constructor(opts: DispatcherOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
  }

  run<T>(send: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<T>((resolve, reject) => {
      const j: Job = { send, resolve: resolve as (v: unknown) => void, reject, queuedAt: this.#now(), sentAt: 0, done: false };
      if (this.#inFlight < this.#opts.maxInFlight && this.#queued === 0) this.#start(j);
      else {
        this.#waiting.push(j);
        this.#queued++;
      }
      this.#arm();
    });
  }

  stats(): DispatcherStats {
    return { inFlight: this.#inFlight, queued: this.#queued, sent: this.#sentTotal };
  }

  close(err: Error): void {
    this.#closed = err;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const j of this.#sent.drain()) if (settle(j, err)) this.#inFlight--;
    for (const j of this.#waiting.drain()) if (settle(j, err)) this.#queued--;
  }

  #start(j: Job): void {
    j.sentAt = this.#now();
    this.#inFlight++;
    this.#sentTotal++;
    this.#sent.push(j);
    let p: Promise<unknown>;
    try {
      p = j.send();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => this.#answered(j, undefined, v),
      (e: unknown) => this.#answered(j, e instanceof Error ? e : new Error(String(e))),
    );
  }

  #answered(j: Job, err: Error | undefined, value?: unknown): void {
    // An answer, even a late one to a command already failed, shows that Redis is back.
    if (!err) this.#stalled = false;
    // A command already failed by its deadline has released its slot.
    if (settle(j, err, value)) this.#inFlight--;
    this.#pump();
  }

  /** Sends waiting calls while slots are free, unless Redis is stalled. */
  #pump(): void {
    while (!this.#stalled && this.#inFlight < this.#opts.maxInFlight) {
      const j = this.#waiting.shift();
      if (!j) break;
      this.#queued--;
      this.#start(j);
    }
    this.#arm();
  }

  /** How long a call may wait for a slot: the timeout while Redis is stalled, else the queue budget. */
  #waitBudget(): number {
    return this.#stalled ? Math.min(this.#opts.timeoutMs, this.#opts.queueTimeoutMs) : this.#opts.queueTimeoutMs;
  }

  /** Keeps one timer on the earliest deadline: the oldest command sent, or the oldest call waiting. */
  #arm(): void {
    if (this.#judging || this.#closed) return;
    const oldestSent = this.#sent.peek();
    const oldestWaiting = this.#waiting.peek();
    const at = Math.min(
      oldestSent ? oldestSent.sentAt + this.#opts.timeoutMs : Infinity,
      oldestWaiting ? oldestWaiting.queuedAt + this.#waitBudget() : Infinity,
    );
    if (this.#timer && this.#timerAt <= at) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (at === Infinity) return;
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#judging = true;
        // One poll phase later: replies already in the socket are read first.
        // Only deadlines passed by now are judged then: a command sent during
        // that poll phase has not had a poll phase of its own yet.
        const firedAt = this.#now();
        setImmediate(() => this.#judge(firedAt));
      },
      Math.max(0, at - this.#now()),
    );
    this.#timer.unref();
  }

  #judge(t: number): void {
    this.#judging = false;
    if (this.#closed) return;
    const { timeoutMs, queueTimeoutMs } = this.#opts;
    // Commands are sent in order, so their deadlines expire in order.
    for (let j = this.#sent.peek(); j && j.sentAt + timeoutMs <= t; j = this.#sent.peek()) {
      this.#sent.shift();
      this.#inFlight--;
      this.#stalled = true;
      settle(j, new RedisTimeout(timeoutMs));
    }
    for (let j = this.#waiting.peek(); j && j.queuedAt + this.#waitBudget() <= t; j = this.#waiting.peek()) {
      this.#waiting.shift();
      this.#queued--;
      settle(j, this.#stalled ? new RedisTimeout(timeoutMs) : new QueueTimeout(queueTimeoutMs));
    }
    this.#pump();
  }
}
