import postgres from "postgres";
import type { Logger } from "../logger.js";
import type { Reachability } from "./reachability.js";
import type { SqlClient } from "./sql.js";

interface Subscriber {
  onNotify(payload: string): void;
  onListen(): void;
  onLost?: () => void;
}

/** First and longest wait between attempts to LISTEN again after the connection was lost. */
const RELISTEN_MIN_MS = 50;
const RELISTEN_MAX_MS = 1000;

const quote = (channel: string) => `"${channel.replace(/"/g, '""')}"`;

/**
 * LISTEN on one dedicated connection, supervised here rather than by
 * postgres.js' sql.listen (whose re-listen after a lost connection swallows
 * its failure and may never try again). When the connection closes every
 * subscriber hears onLost at once; the channels are listened to again with
 * backoff until it works, and each subscriber then hears onListen: the hook
 * for a catch-up read of what was missed meanwhile.
 */
export function createPostgresListener(
  url: string,
  options: postgres.Options<Record<string, postgres.PostgresType>>,
  reach: Reachability,
  logger: Logger,
): { listen: SqlClient["listen"]; close(): Promise<void> } {
  const listener = new SupervisedListener(url, options, reach, logger);
  return {
    listen: (channel, onNotify, onListen, onLost) => listener.listen(channel, onNotify, onListen, onLost),
    close: () => listener.close(),
  };
}

class SupervisedListener {
  readonly #channels = new Map<string, Set<Subscriber>>();
  readonly #conn: postgres.Sql;
  readonly #reach: Reachability;
  readonly #logger: Logger;
  #listening = false;
  #closed = false;
  #attempt: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #failures = 0;

  constructor(url: string, options: postgres.Options<Record<string, postgres.PostgresType>>, reach: Reachability, logger: Logger) {
    this.#reach = reach;
    this.#logger = logger;
    // onnotify is a documented postgres.js option its type definitions lack.
    const connOptions = {
      ...options,
      max: 1,
      // Never closed for idleness or age: only a lost connection ends a LISTEN.
      idle_timeout: 0,
      max_lifetime: 0,
      fetch_types: false,
      onnotify: (channel: string, payload: string) => {
        for (const s of this.#channels.get(channel) ?? []) s.onNotify(payload);
      },
      onclose: () => this.#lost(),
    };
    this.#conn = postgres(url, connOptions);
  }

  async listen(channel: string, onNotify: (payload: string) => void, onListen: () => void, onLost?: () => void): Promise<{ unlisten(): Promise<void> }> {
    const sub: Subscriber = { onNotify, onListen, ...(onLost ? { onLost } : {}) };
    const subs = this.#channels.get(channel) ?? new Set<Subscriber>();
    const isNew = !this.#channels.has(channel);
    this.#channels.set(channel, subs);
    subs.add(sub);
    let tell: boolean;
    try {
      tell = await this.#start(channel, isNew);
    } catch (err) {
      // This LISTEN failed: the subscriber is not kept.
      subs.delete(sub);
      if (subs.size === 0 && this.#channels.get(channel) === subs) this.#channels.delete(channel);
      throw err;
    }
    if (tell) sub.onListen();
    return { unlisten: () => this.#unlisten(channel, subs, sub) };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    await this.#conn.end({ timeout: 1 });
  }

  /** Makes sure `channel` is listened to; true when its new subscriber must be told here (subscribeAll told it otherwise). */
  async #start(channel: string, isNew: boolean): Promise<boolean> {
    if (!this.#listening && this.#attempt) await this.#attempt.catch(() => {});
    if (!this.#listening) {
      // LISTEN on every channel, this one included; the first one must work (start-up
      // waits for it), later losses are retried in the background.
      await this.#subscribeAll();
      return false;
    }
    // Already listening on other channels: add this one, and tell only its subscriber.
    if (isNew) await this.#conn.unsafe(`listen ${quote(channel)}`).simple();
    return true;
  }

  async #unlisten(channel: string, subs: Set<Subscriber>, sub: Subscriber): Promise<void> {
    subs.delete(sub);
    if (subs.size > 0 || this.#channels.get(channel) !== subs) return;
    this.#channels.delete(channel);
    if (this.#listening)
      await this.#conn
        .unsafe(`unlisten ${quote(channel)}`)
        .simple()
        .catch(() => {});
  }

  #lost(): void {
    if (this.#closed || !this.#listening) return;
    this.#listening = false;
    this.#logger.warn("change listener connection lost; listening again");
    for (const subs of this.#channels.values()) for (const s of subs) s.onLost?.();
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#subscribeAll().catch(() => {});
    }, ms);
    this.#retry.unref();
  }

  /** LISTENs on every channel; on success tells every subscriber, on failure retries with backoff. */
  #subscribeAll(): Promise<void> {
    this.#attempt ??= (async () => {
      try {
        const names = [...this.#channels.keys()];
        // Those who join meanwhile are told by listen() itself.
        const told = [...this.#channels.values()].flatMap((subs) => [...subs]);
        if (names.length) await this.#conn.unsafe(names.map((c) => `listen ${quote(c)}`).join("; ")).simple();
        this.#failures = 0;
        this.#listening = true;
        for (const s of told) s.onListen();
      } catch (err) {
        this.#reach.report(err);
        this.#failures++;
        this.#schedule(Math.min(RELISTEN_MAX_MS, RELISTEN_MIN_MS * 2 ** this.#failures));
        throw err;
      } finally {
        this.#attempt = undefined;
      }
    })();
    return this.#attempt;
  }
}
