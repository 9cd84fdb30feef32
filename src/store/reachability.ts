import type { Logger } from "../logger.js";
import { databaseUnavailable, isConnectionFailure, isUnreachable, toStoreError } from "./sql.js";

/** How often a database known to be down is probed. */
export const PROBE_INTERVAL_MS = 250;
/** A probe (or a statement that reports a timeout) slower than this counts as no answer. */
export const PROBE_TIMEOUT_MS = 2000;

/**
 * Whether the database answers. While it is known to be down, statements
 * are refused at once (UNAVAILABLE) instead of queueing behind postgres.js'
 * reconnect backoff and connect timeout; a background probe brings it back.
 * A statement that fails as unreachable (refused, connect timeout) marks it
 * down; one that loses its connection (terminated, reset) triggers a probe.
 */
export class Reachability {
  #up = true;
  #cause: unknown;
  #probing: Promise<void> | undefined;
  #closed = false;
  readonly #subscribers = new Set<(up: boolean) => void>();

  constructor(
    private readonly probe: () => Promise<unknown>,
    private readonly logger: Logger,
    private readonly probeMs = PROBE_INTERVAL_MS,
  ) {}

  get up(): boolean {
    return this.#up;
  }

  subscribe(fn: (up: boolean) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  /** Runs one database operation: refused at once while down; failures mapped and reported. */
  async guard<T>(op: () => Promise<T>): Promise<T> {
    if (!this.#up) throw databaseUnavailable(this.#cause);
    try {
      return await op();
    } catch (err) {
      const mapped = toStoreError(err);
      this.report(err);
      throw mapped;
    }
  }

  /** Feeds a failure seen outside guard() (the listener, a timed-out poll). */
  report(err: unknown): void {
    if (this.#closed || !this.#up) return;
    if (isUnreachable(err)) this.#markDown(err);
    else if (isConnectionFailure(err)) void this.#checkOnce(err);
  }

  /** The database did not answer within a bound: treat it as down until a probe answers. */
  reportTimeout(what: string): void {
    if (this.#closed || !this.#up) return;
    this.#markDown(Object.assign(new Error(`${what} timed out`), { code: "ETIMEDOUT" }));
  }

  close(): void {
    this.#closed = true;
  }

  #set(up: boolean): void {
    if (this.#up === up) return;
    this.#up = up;
    for (const fn of [...this.#subscribers]) {
      try {
        fn(up);
      } catch (err) {
        this.logger.error({ err }, "reachability subscriber failed");
      }
    }
  }

  #markDown(cause: unknown): void {
    this.#cause = cause;
    if (this.#up) this.logger.error({ err: describe(cause) }, "database unreachable: refusing statements at once (UNAVAILABLE) and probing");
    this.#set(false);
    this.#probing ??= this.#probeUntilUp().finally(() => {
      this.#probing = undefined;
    });
  }

  /** One probe after a lost connection: only a failure to reach the server marks it down. */
  async #checkOnce(cause: unknown): Promise<void> {
    if (this.#probing) return;
    try {
      await this.#probeBounded();
    } catch (err) {
      if (isUnreachable(err) || isTimeout(err)) this.#markDown(err);
      else this.logger.debug({ err: describe(err), after: describe(cause) }, "probe after a lost connection failed");
    }
  }

  async #probeUntilUp(): Promise<void> {
    let attempts = 0;
    while (!this.#closed && !this.#up) {
      await new Promise((r) => setTimeout(r, this.probeMs).unref());
      if (this.#closed) return;
      attempts++;
      try {
        await this.#probeBounded();
        this.logger.warn({ attempts }, "database reachable again");
        this.#set(true);
      } catch (err) {
        this.#cause = err;
      }
    }
  }

  async #probeBounded(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error("database probe timed out"), { code: "ETIMEDOUT" })), PROBE_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.probe(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function isTimeout(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "ETIMEDOUT";
}

/** A loggable summary of a failure: never the SQL text or parameters. */
function describe(err: unknown): { message: string; code: unknown } | string {
  if (typeof err === "object" && err !== null) return { message: String((err as Error).message), code: (err as { code?: unknown }).code };
  return String(err);
}
