import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// CRIU's own log kept with an error, at most this much of its end: enough for the
// failing step and what led to it, small enough to carry around and upload.
const LOG_LIMIT = 1024 * 1024;

export interface CriuErrorOptions extends SnapErrorOptions {
  // CRIU's log of the failed dump or restore (its end), for the task's work dir.
  log?: string;
}

// Failures of the snapshot engine and of CRIU itself.
export class CriuError extends SnapError {
  readonly log?: string;

  constructor(code: `CRIU_${string}`, message: string, options: CriuErrorOptions = {}) {
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
