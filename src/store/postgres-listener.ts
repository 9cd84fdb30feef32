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
  const channels = new Map<string, Set<Subscriber>>();
  let listening = false;
  let closed = false;
  let attempt: Promise<void> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let failures = 0;

  // onnotify is a documented postgres.js option its type definitions lack.
  const connOptions = {
    ...options,
    max: 1,
    // Never closed for idleness or age: only a lost connection ends a LISTEN.
    idle_timeout: 0,
    max_lifetime: 0,
    fetch_types: false,
    onnotify: (channel: string, payload: string) => {
      for (const s of channels.get(channel) ?? []) s.onNotify(payload);
    },
    onclose: () => lost(),
  };
  const conn = postgres(url, connOptions);

  const lost = (): void => {
    if (closed || !listening) return;
    listening = false;
    logger.warn("change listener connection lost; listening again");
    for (const subs of channels.values()) for (const s of subs) s.onLost?.();
    schedule(0);
  };

  const schedule = (ms: number): void => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      void subscribeAll().catch(() => {});
    }, ms);
    retry.unref();
  };

  /** LISTENs on every channel; on success tells every subscriber, on failure retries with backoff. */
  const subscribeAll = (): Promise<void> => {
    attempt ??= (async () => {
      try {
        const names = [...channels.keys()];
        // Those who join meanwhile are told by listen() itself.
        const told = [...channels.values()].flatMap((subs) => [...subs]);
        if (names.length) await conn.unsafe(names.map((c) => `listen ${quote(c)}`).join("; ")).simple();
        failures = 0;
        listening = true;
        for (const s of told) s.onListen();
      } catch (err) {
        reach.report(err);
        failures++;
        schedule(Math.min(RELISTEN_MAX_MS, RELISTEN_MIN_MS * 2 ** failures));
        throw err;
      } finally {
        attempt = undefined;
      }
    })();
    return attempt;
  };

  return {
    async listen(channel, onNotify, onListen, onLost) {
      const sub: Subscriber = { onNotify, onListen, ...(onLost ? { onLost } : {}) };
      const subs = channels.get(channel) ?? new Set<Subscriber>();
      const isNew = !channels.has(channel);
      channels.set(channel, subs);
      subs.add(sub);
      const forget = () => {
        subs.delete(sub);
        if (subs.size === 0 && channels.get(channel) === subs) channels.delete(channel);
      };
      if (!listening && attempt) await attempt.catch(() => {});
      if (!listening) {
        // LISTEN on every channel, this one included; the first one must work (start-up
        // waits for it), later losses are retried in the background.
        await subscribeAll().catch((err: unknown) => {
          forget();
          throw err;
        });
      } else if (isNew) {
        // Already listening on other channels: add this one, and tell only its subscriber.
        await conn
          .unsafe(`listen ${quote(channel)}`)
          .simple()
          .catch((err: unknown) => {
            forget();
            throw err;
          });
        sub.onListen();
      } else {
        sub.onListen();
      }
      return {
        async unlisten() {
          subs.delete(sub);
          if (subs.size > 0 || channels.get(channel) !== subs) return;
          channels.delete(channel);
          if (listening)
            await conn
              .unsafe(`unlisten ${quote(channel)}`)
              .simple()
              .catch(() => {});
        },
      };
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      await conn.end({ timeout: 1 });
    },
  };
}
