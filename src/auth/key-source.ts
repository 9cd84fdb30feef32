import type { Logger } from "../logger.js";
import type { SqlClient } from "../store/sql.js";
import { type ApiKeyRecord, ApiKeyRing, readApiKeyFile, readApiKeyTable } from "./api-keys.js";

/**
 * Keeps an ApiKeyRing filled from the key file and the api_keys table:
 * reloaded when the table notifies a change (a revocation takes effect at
 * once on every replica) and on a slow poll (file rotation, missed notices).
 */
export class KeySource {
  readonly ring = new ApiKeyRing();
  #db: SqlClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #unlisten: (() => Promise<void>) | undefined;

  constructor(
    private readonly file: string | undefined,
    private readonly logger: Logger,
  ) {}

  /** Loads the key file (start-up fails on a broken file). */
  async start(pollMs = 30_000): Promise<void> {
    await this.reload(true);
    this.#timer = setInterval(() => void this.reload(false), pollMs);
    this.#timer.unref();
  }

  /** Adds the api_keys table once the database is ready. */
  async attach(db: SqlClient): Promise<void> {
    this.#db = db;
    const sub = await db.listen("authz_api_keys", () => void this.reload(false), () => void this.reload(false));
    this.#unlisten = sub.unlisten;
    await this.reload(false);
  }

  async reload(strict: boolean): Promise<void> {
    const records: ApiKeyRecord[] = [];
    if (this.file) {
      try {
        records.push(...(await readApiKeyFile(this.file)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          // An optional Secret that is not there (yet): no file keys.
          if (strict) this.logger.warn({ file: this.file }, "API key file not found; only keys in the api_keys table are accepted");
        } else if (strict) throw err;
        else {
          this.logger.error({ err: (err as Error).message }, "API key file unreadable; keeping the keys loaded before");
          return;
        }
      }
    }
    if (this.#db) {
      try {
        records.push(...(await readApiKeyTable(this.#db)));
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "api_keys table unreadable; keeping the keys loaded before");
        return;
      }
    }
    const before = this.ring.size;
    this.ring.replace(records);
    if (this.ring.size !== before) this.logger.info({ keys: this.ring.size }, "API keys loaded");
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#unlisten?.().catch(() => {});
  }
}
