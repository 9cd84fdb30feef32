import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

/** Paths pino blanks out wherever they appear in a log object. */
export const REDACT_PATHS = [
  "password",
  "*.password",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "token",
  "*.token",
  "apiKey",
  "*.apiKey",
  "databaseUrl",
  "redisUrl",
  "*.databaseUrl",
  "*.redisUrl",
];

/** The one root logger; modules receive `logger.child({ module })`. */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "authz" },
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
