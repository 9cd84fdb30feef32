import type { Logger } from "../logger.js";
import type { SqlClient } from "../store/sql.js";
import { type ApiKeyRecord, ApiKeyRing, readApiKeyFile, readApiKeyTable } from "./api-keys.js";

/** First and longest wait before a failed reload is tried again. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

export interface KeySourceStats {
  /** Reloads that ran (reads of the sources). */
  reads: number;
  failures: number;
}

/**
 * Keeps an ApiKeyRing filled from the key file and the api_keys table:
 * reloaded when the table notifies a change (a revocation takes effect at
 * once on every replica), on a slow poll (file rotation, missed notices),
 * and with backoff after a failed read. Reloads run one at a time, and a
 * request during a run is served by one more run that starts after it, so
 * an older read can never overwrite a newer one (a revoked key never comes
 * back). Until the table has been read once the ring is not complete: a key
 * it does not know is answered UNAVAILABLE, never UNAUTHENTICATED.
 */
export class KeySource {
  readonly ring = new ApiKeyRing();
  readonly stats: KeySourceStats = { reads: 0, failures: 0 };
  #db: SqlClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;
  #unlisten: (() => Promise<void>) | undefined;
  #tail: Promise<void> = Promise.resolve();
  #queued: Promise<void> | undefined;
  #loaded = false;
  readonly #whenLoaded: Promise<void>;
  #resolveLoaded: () => void = () => {};

  constructor(
    private readonly file: string | undefined,
    private readonly logger: Logger,
  ) {
    this.#whenLoaded = new Promise((resolve) => {
      this.#resolveLoaded = resolve;
    });
  }

  /** Whether every source (the file, and the table once attached) has been read. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** Resolves once every source has been read (retries run until then). */
  whenLoaded(): Promise<void> {
    return this.#whenLoaded;
  }

  /** Loads the key file (start-up fails on a broken file). */
  async start(pollMs = 30_000): Promise<void> {
    if (this.file) this.ring.replace(await this.#readFile(true));
    this.#timer = setInterval(() => void this.reload().catch(() => {}), pollMs);
    this.#timer.unref();
  }

  /** Adds the api_keys table: listens for changes and loads it, retrying in the background until it works. */
  attach(db: SqlClient): void {
    this.#db = db;
    db.listen(
      "authz_api_keys",
      () => void this.reload().catch(() => {}),
      () => void this.reload().catch(() => {}),
    ).then(
      (sub) => {
        if (this.#stopped) void sub.unlisten().catch(() => {});
        else this.#unlisten = sub.unlisten;
      },
      (err: unknown) => this.logger.warn({ err: (err as Error).message }, "cannot listen for API key changes; the poll and retries still reload them"),
    );
    void this.reload().catch(() => {});
  }

  /** Reads every source once more; resolves when a read that started after this call has finished. */
  reload(): Promise<void> {
    if (this.#queued) return this.#queued;
    const run = this.#tail.then(() => {
      this.#queued = undefined;
      return this.#readOnce();
    });
    this.#queued = run;
    this.#tail = run.catch(() => {});
    return run;
  }

  async #readOnce(): Promise<void> {
    if (this.#stopped) return;
    this.stats.reads++;
    try {
      const records = this.file ? await this.#readFile(false) : [];
      if (this.#db) records.push(...(await readApiKeyTable(this.#db)));
      const before = this.ring.size;
      this.ring.replace(records);
      this.#failures = 0;
      if (this.#db && !this.#loaded) {
        this.#loaded = true;
        this.ring.markComplete();
        this.#resolveLoaded();
        this.logger.info({ keys: this.ring.size }, "API keys loaded");
      } else if (this.ring.size !== before) this.logger.info({ keys: this.ring.size }, "API keys reloaded");
    } catch (err) {
      this.stats.failures++;
      this.#failures++;
      const wait = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.#failures - 1));
      this.logger.warn(
        { err: (err as Error).message, retryInMs: wait, loaded: this.#loaded },
        this.#loaded ? "API keys unreadable; keeping the keys loaded before" : "API keys unreadable; not ready until they load",
      );
      if (!this.#retry && !this.#stopped) {
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          void this.reload().catch(() => {});
        }, wait);
        this.#retry.unref();
      }
      throw err;
    }
  }

  async #readFile(strict: boolean): Promise<ApiKeyRecord[]> {
    const file = this.file as string;
    try {
      return await readApiKeyFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      // An optional Secret that is not there (yet): no file keys.
      if (strict) this.logger.warn({ file }, "API key file not found; only keys in the api_keys table are accepted");
      return [];
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retry);
    await this.#unlisten?.().catch(() => {});
  }
}
