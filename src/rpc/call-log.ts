import { randomBytes } from "node:crypto";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { NO_TRACING, type Tracing } from "../tracing.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * One log line per call (request id, method, code, duration), and request ids:
 * the caller's x-request-id when it is sane, else a cheap process-unique one.
 */
export interface CallLog {
  requestId(fromHeader: string | undefined): string;
  /**
   * Records a finished call: metrics always, the log line when info is on
   * (the request id is only made then), a trace span when tracing is on.
   */
  done(path: string, requestId: string | (() => string), code: string, startedNs: bigint, header?: (name: string) => string | undefined): void;
}

export function createCallLog(logger: Logger, metrics?: Metrics, tracing: Tracing = NO_TRACING): CallLog {
  const prefix = randomBytes(4).toString("hex");
  let seq = 0;
  const enabled = logger.isLevelEnabled("info");
  return {
    requestId(fromHeader) {
      if (fromHeader !== undefined && REQUEST_ID.test(fromHeader)) return fromHeader;
      seq = (seq + 1) % Number.MAX_SAFE_INTEGER;
      return `${prefix}-${seq.toString(36)}`;
    },
    done(path, requestId, code, startedNs, header) {
      const ms = Number(process.hrtime.bigint() - startedNs) / 1e6;
      metrics?.rpc(path, code, ms / 1000);
      if (tracing.enabled) tracing.callSpan(path, code, Date.now() - ms, ms, header ?? (() => undefined));
      if (!enabled) return;
      const rid = typeof requestId === "function" ? requestId() : requestId;
      logger.info({ rid, method: path, code, ms: Math.round(ms * 1000) / 1000 }, "rpc");
    },
  };
}
