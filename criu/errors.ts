import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// CRIU's own log kept with an error, at most this much of its end: enough for the
// failing step and what led to it, small enough to carry around and upload.
const LOG_LIMIT = 1024 * 1024;

// Every code CriuError can carry; docs/errors.md and docs/snapshot-engine.md document
// them (test/docs/error-codes.test.ts checks that every code used is documented).
export const CRIU_ERROR_CODES = [
  "CRIU_NOT_INSTALLED",
  "CRIU_FAILED",
  "CRIU_ABORTED",
  "CRIU_BUSY",
  "CRIU_INVALID_OPTION",
  "CRIU_START_FAILED",
  "CRIU_NO_TASK",
  "CRIU_DUMP_FAILED",
  "CRIU_SOCKETS_UNSUPPORTED",
  "CRIU_OPEN_FILE_CAPTURE_FAILED",
  "CRIU_OPEN_FILE_RESTORE_FAILED",
  "CRIU_NO_SNAPSHOT",
  "CRIU_NO_USABLE_SNAPSHOT",
  "CRIU_SNAPSHOT_TOO_NEW",
  "CRIU_PREFLIGHT_FAILED",
  "CRIU_RESTORE_FAILED",
] as const;
export type CriuErrorCode = (typeof CRIU_ERROR_CODES)[number];

export interface CriuErrorOptions extends SnapErrorOptions {
  // CRIU's log of the failed dump or restore (its end), for the task's work dir.
  log?: string;
}

// Failures of the snapshot engine and of CRIU itself.
export class CriuError extends SnapError {
  declare readonly code: CriuErrorCode;
  readonly log?: string;

  constructor(code: CriuErrorCode, message: string, options: CriuErrorOptions = {}) {
    super(code, message, options);
    if (options.log) this.log = options.log.length > LOG_LIMIT ? options.log.slice(-LOG_LIMIT) : options.log;
  }
}

// The CRIU log carried by `err` or by one of its causes, if any.
export function criuLogOf(err: unknown): string | undefined {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e instanceof CriuError && e.log) return e.log;
  }
  return undefined;
}
