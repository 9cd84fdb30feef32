import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { pino } from "pino";

/** One authorization decision, as recorded. Never holds a credential: the caller is its id. */
export interface DecisionRecord {
  /** The request id of the call. */
  callId: string;
  /** The caller's id ("key:<id>", "jwt:<sub>", "anonymous"). */
  caller: string;
  method: string;
  subject: { type: string; id: string };
  permission: string;
  resource: { type: string; id: string };
  allowed: boolean;
  reason: string;
  revision: string;
}

export interface DecisionLog {
  readonly enabled: boolean;
  record(r: DecisionRecord): void;
  flush(): Promise<void>;
}

export const DISABLED_DECISION_LOG: DecisionLog = { enabled: false, record() {}, flush: async () => {} };

/**
 * Opens `path` for appending once, now: a file that cannot be written is refused at start-up (AUTHZ_DECISION_LOG
 * names it) instead of every decision being dropped later without a word (the writes are asynchronous).
 */
function writableFile(path: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    closeSync(openSync(path, "a"));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`AUTHZ_DECISION_LOG: cannot write the decision log ${JSON.stringify(path)} (${why})`);
  }
}

/**
 * The optional decision log: one JSON line per decision to stdout or a file,
 * every decision or a random sample (sampleRate in (0, 1]).
 */
export function createDecisionLog(opts: { destination: "stdout" | string; sampleRate: number; random?: () => number }): DecisionLog {
  if (opts.destination !== "stdout") writableFile(opts.destination);
  const dest =
    opts.destination === "stdout" ? pino.destination({ dest: 1, sync: false }) : pino.destination({ dest: opts.destination, mkdir: true, sync: false });
  const log = pino({ base: { log: "decision" }, timestamp: pino.stdTimeFunctions.isoTime, messageKey: "msg" }, dest);
  const random = opts.random ?? Math.random;
  return {
    enabled: true,
    record(r) {
      if (opts.sampleRate < 1 && random() >= opts.sampleRate) return;
      log.info(r);
    },
    flush: () =>
      new Promise<void>((resolve) => {
        log.flush(() => resolve());
      }),
  };
}
