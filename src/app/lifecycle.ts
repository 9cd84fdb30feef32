// The service's lifecycle: named components, each with start and stop,
// started in the order given and stopped in the reverse order, every stop
// bounded in time. A failed start fails the whole start (the process exits);
// stop() then stops what had started, the failed component included.

import type { Logger } from "../logger.js";

export interface Component {
  readonly name: string;
  start(): Promise<void>;
  /** Releases what start acquired; must be safe after a failed or partial start. */
  stop(): Promise<void>;
}

/** A component from two functions (stop defaults to nothing). */
export const component = (name: string, start: () => Promise<void> | void, stop: () => Promise<void> | void = () => {}): Component => ({
  name,
  start: async () => start(),
  stop: async () => stop(),
});

/** At least this much of the shutdown bound goes to each component still to stop. */
const MIN_STOP_MS = 200;

export class Lifecycle {
  readonly #components: readonly Component[];
  readonly #logger: Logger;
  #next = 0;
  #stopping = false;

  constructor(components: readonly Component[], logger: Logger) {
    this.#components = components;
    this.#logger = logger;
  }

  /** The components, in start order (for logs and tests). */
  get names(): string[] {
    return this.#components.map((c) => c.name);
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Starts the next `count` components (all the rest by default), in order. */
  async start(count = this.#components.length - this.#next): Promise<void> {
    const end = Math.min(this.#components.length, this.#next + count);
    while (this.#next < end) {
      if (this.#stopping) throw new Error("the service is stopping");
      const c = this.#components[this.#next] as Component;
      const t0 = Date.now();
      await c.start();
      this.#next++;
      this.#logger.debug({ component: c.name, ms: Date.now() - t0 }, "started");
    }
  }

  /** Stops every started component in reverse order, within boundMs in all; a stop that overruns is left behind, logged. */
  async stop(boundMs: number): Promise<void> {
    this.#stopping = true;
    const deadline = Date.now() + boundMs;
    // The component whose start was under way when stop came is stopped too: stop must be safe after a partial start.
    const started = this.#components.slice(0, Math.min(this.#components.length, this.#next + 1));
    for (let i = started.length - 1; i >= 0; i--) {
      const c = started[i] as Component;
      const left = Math.max(MIN_STOP_MS, Math.floor((deadline - Date.now()) / (i + 1)));
      await this.#stopOne(c, left);
    }
    this.#next = 0;
  }

  async #stopOne(c: Component, boundMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const overrun = new Promise<"overrun">((resolve) => {
      timer = setTimeout(() => resolve("overrun"), boundMs);
      timer.unref();
    });
    try {
      const outcome = await Promise.race([c.stop().then(() => "stopped" as const), overrun]);
      if (outcome === "overrun") this.#logger.warn({ component: c.name, boundMs }, "component did not stop within its share of the shutdown bound");
    } catch (err) {
      this.#logger.warn({ component: c.name, err }, "component failed to stop cleanly");
    } finally {
      clearTimeout(timer);
    }
  }
}
