// A consecutive-failure circuit breaker. Closed: calls pass. After
// `failureThreshold` failures in a row it opens: calls are refused at once,
// without touching the network, for `cooldownMs`. Then it is half open: one
// call (a probe) passes; its success closes the breaker, its failure opens it
// for another cool-down.

export type BreakerState = "closed" | "open" | "half_open";

export interface CircuitBreakerOptions {
  failureThreshold: number;
  cooldownMs: number;
  nowMs?: () => number;
  /** Called on every state change (closed → open, open → half_open, ...). */
  onChange?: (to: BreakerState, from: BreakerState) => void;
}

export class CircuitBreaker {
  readonly #threshold: number;
  readonly #cooldownMs: number;
  readonly #now: () => number;
  readonly #onChange: (to: BreakerState, from: BreakerState) => void;
  #state: BreakerState = "closed";
  #failures = 0;
  #openedAt = 0;
  #probing = false;

  constructor(opts: CircuitBreakerOptions) {
    this.#threshold = opts.failureThreshold;
    this.#cooldownMs = opts.cooldownMs;
    this.#now = opts.nowMs ?? Date.now;
    this.#onChange = opts.onChange ?? (() => {});
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Milliseconds until an open breaker lets a probe through (0 when not open). */
  msUntilProbe(): number {
    return this.#state === "open" ? Math.max(0, this.#openedAt + this.#cooldownMs - this.#now()) : 0;
  }

  /** Whether a call may go out now; a true from a half-open breaker makes the caller the probe. */
  tryPass(): boolean {
    if (this.#state === "closed") return true;
    if (this.#state === "open") {
      if (this.#now() < this.#openedAt + this.#cooldownMs) return false;
      this.#set("half_open");
    }
    if (this.#probing) return false;
    this.#probing = true;
    return true;
  }

  /**
   * A call that passed but neither reached Redis nor failed because of it
   * (it waited too long for a local slot): counts for nothing, but a probe
   * gives its turn to the next call.
   */
  release(): void {
    this.#probing = false;
  }

  success(): void {
    this.#failures = 0;
    this.#probing = false;
    if (this.#state !== "closed") this.#set("closed");
  }

  failure(): void {
    this.#failures++;
    if (this.#state === "half_open") {
      this.#probing = false;
      this.#open();
    } else if (this.#state === "closed" && this.#failures >= this.#threshold) {
      this.#open();
    }
  }

  #open(): void {
    this.#openedAt = this.#now();
    this.#set("open");
  }

  #set(to: BreakerState): void {
    const from = this.#state;
    this.#state = to;
    this.#onChange(to, from);
  }
}
