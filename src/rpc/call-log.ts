import { randomBytes } from "node:crypto";
import type { Logger } from "../logger.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * One log line per call (request id, method, code, duration), and request ids:
 * the caller's x-request-id when it is sane, else a cheap process-unique one.
 */
export interface CallLog {
  /** False when the per-call line is off (log level above info): callers skip the timing. */
  readonly enabled: boolean;
  requestId(fromHeader: string | undefined): string;
  done(path: string, requestId: string, code: string, startedNs: bigint): void;
}

export function createCallLog(logger: Logger): CallLog {
  const prefix = randomBytes(4).toString("hex");
  let seq = 0;
  const enabled = logger.isLevelEnabled("info");
  return {
    enabled,
    requestId(fromHeader) {
      if (fromHeader !== undefined && REQUEST_ID.test(fromHeader)) return fromHeader;
      seq = (seq + 1) % Number.MAX_SAFE_INTEGER;
      return `${prefix}-${seq.toString(36)}`;
    },
    done(path, requestId, code, startedNs) {
      if (!enabled) return;
      const ms = Number(process.hrtime.bigint() - startedNs) / 1e6;
      logger.info({ rid: requestId, method: path, code, ms: Math.round(ms * 1000) / 1000 }, "rpc");
    },
  };
}
