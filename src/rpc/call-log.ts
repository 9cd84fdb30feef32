import { randomBytes } from "node:crypto";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { NO_TRACING, type Tracing } from "../tracing.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * One log line per failed call (request id, method, code, duration), and
 * request ids: the caller's x-request-id when it is sane, else a cheap
 * process-unique one.
 */
export interface CallLog {
  requestId(fromHeader: string | undefined): string;
  /**
   * Records a finished call: metrics always, a trace span when tracing is on,
   * and the log line (the request id is only made then): at debug for every
   * call; at info for every failed call and a sample of the successful ones
   * (AUTHZ_RPC_LOG_SAMPLE). `started` is process.hrtime.bigint() or
   * performance.now() at the start of the call.
   */
  done(path: string, requestId: RequestIdSource, code: string, started: bigint | number, header?: HeaderSource): void;
}

/** The request id, or what makes it when asked (a call's context). */
export type RequestIdSource = string | (() => string) | { readonly requestId: string };
/** The request's headers, as a lookup function or a call's context. */
export type HeaderSource = ((name: string) => string | undefined) | { header(name: string): string | undefined };

const ridOf = (r: RequestIdSource): string => (typeof r === "string" ? r : typeof r === "function" ? r() : r.requestId);
const NO_HEADERS = () => undefined;

export interface CallLogOptions {
  /** Share of successful calls logged at info (default 0: only failed calls, unless debug is on). */
  okSample?: number;
  random?: () => number;
}

/** Milliseconds since `started` (either clock). */
const elapsedMs = (started: bigint | number): number =>
  typeof started === "number" ? performance.now() - started : Number(process.hrtime.bigint() - started) / 1e6;

export function createCallLog(logger: Logger, metrics?: Metrics, tracing: Tracing = NO_TRACING, opts: CallLogOptions = {}): CallLog {
  const prefix = randomBytes(4).toString("hex");
  let seq = 0;
  const info = logger.isLevelEnabled("info");
  // At debug every call is logged; at info a line per successful call costs more than a Check (docs/benchmarks.md).
  const everyCall = logger.isLevelEnabled("debug");
  const okSample = opts.okSample ?? 0;
  const random = opts.random ?? Math.random;
  const logged = (code: string): boolean => {
    if (everyCall) return true;
    if (!info) return false;
    if (code !== "OK") return true;
    return okSample > 0 && (okSample >= 1 || random() < okSample);
  };
  return {
    requestId(fromHeader) {
      if (fromHeader !== undefined && REQUEST_ID.test(fromHeader)) return fromHeader;
      seq = (seq + 1) % Number.MAX_SAFE_INTEGER;
      return `${prefix}-${seq.toString(36)}`;
    },
    done(path, requestId, code, started, header) {
      const ms = elapsedMs(started);
      metrics?.rpc(path, code, ms / 1000);
      if (tracing.enabled) {
        const h = header === undefined ? NO_HEADERS : typeof header === "function" ? header : (name: string) => header.header(name);
        tracing.callSpan(path, code, Date.now() - ms, ms, h);
      }
      if (!logged(code)) return;
      logger.info({ rid: ridOf(requestId), method: path, code, ms: Math.round(ms * 1000) / 1000 }, "rpc");
    },
  };
}
