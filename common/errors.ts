// The base of every error this project throws: a stable string `code` that callers and
// the docs rely on, `retryable` where a caller must decide whether to try again, and
// the underlying error kept as `cause`. Each component subclasses it once.
export interface SnapErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

export class SnapError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: SnapErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

// Whether `err` is one of ours with the given code.
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof SnapError && err.code === code;
}
