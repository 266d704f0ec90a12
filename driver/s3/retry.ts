import type { Logger } from "../../common/log.js";
import { DriverError, Errno } from "../errors.js";

export interface RetryPolicy {
  maxAttempts: number;
  baseMs: number;
  // Bound of one attempt in ms; 0 leaves the bound to the caller (streams use an idle timer).
  timeoutMs: number;
  logger: Logger;
}

const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ECONNABORTED",
  "ERR_STREAM_PREMATURE_CLOSE",
]);
const RETRY_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "TimeoutError",
  "AttemptTimeout",
]);

interface AwsLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
}

// The HTTP status of an SDK error, when there was a response.
export function statusOf(err: unknown): number | undefined {
  return (err as AwsLikeError | undefined)?.$metadata?.httpStatusCode;
}

// Throttling, 5xx, timeouts and network failures are worth another attempt; 4xx are not.
export function isRetryable(err: unknown): boolean {
  if (err instanceof DriverError) return err.retryable;
  const e = err as AwsLikeError;
  const status = statusOf(err);
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  if (e?.name && RETRY_NAMES.has(e.name)) return true;
  if (e?.code && NETWORK_CODES.has(e.code)) return true;
  if (e?.$retryable) return true;
  const cause = e?.cause as AwsLikeError | undefined;
  if (cause?.code && NETWORK_CODES.has(cause.code)) return true;
  if (
    status === undefined &&
    /socket hang up|ECONNRESET|ECONNREFUSED|premature close|aborted/i.test(e?.message ?? "")
  )
    return true;
  return false;
}

// Maps an S3 failure to our error with the errno the kernel should see.
export function toDriverError(err: unknown, what: string): DriverError {
  if (err instanceof DriverError) return err;
  const e = err as AwsLikeError;
  const status = statusOf(err);
  const name = e?.name ?? "Error";
  const detail = `${name}${status ? ` (HTTP ${status})` : ""}: ${e?.message ?? String(err)}`;
  if (name === "NoSuchKey" || name === "NotFound" || name === "NoSuchBucket" || status === 404)
    return new DriverError("DRIVER_NOT_FOUND", `${what}: not found (${detail})`, {
      cause: err,
      errno: Errno.ENOENT,
    });
  if (name === "AccessDenied" || name === "Forbidden" || status === 403)
    return new DriverError("DRIVER_ACCESS_DENIED", `${what}: access denied (${detail})`, {
      cause: err,
      errno: Errno.EACCES,
    });
  // ESTALE ("Stale file handle"), not EIO: the server is fine, the open file's version is
  // gone, and opening the file again reads the new one.
  if (name === "PreconditionFailed" || status === 412)
    return new DriverError("DRIVER_OBJECT_CHANGED", `${what}: the object changed while open (${detail})`, {
      cause: err,
      errno: Errno.ESTALE,
    });
  if (name === "AttemptTimeout" || name === "TimeoutError")
    return new DriverError("DRIVER_S3_TIMEOUT", `${what}: timed out (${detail})`, {
      cause: err,
      retryable: true,
    });
  if (name === "AbortError" || name === "DriverAborted")
    return new DriverError("DRIVER_ABORTED", `${what}: aborted`, { cause: err, errno: Errno.EIO });
  return new DriverError("DRIVER_S3_REQUEST_FAILED", `${what}: ${detail}`, {
    cause: err,
    retryable: isRetryable(err),
  });
}

// Resolves after `ms`, or rejects when `signal` aborts.
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// Delay before attempt `attempt` (1-based retry count): full jitter over a doubling base.
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  const cap = Math.min(2000, policy.baseMs * 2 ** (attempt - 1));
  return Math.random() * cap;
}

function attemptTimeoutError(ms: number): Error {
  const err = new Error(`no answer within ${ms} ms`);
  err.name = "AttemptTimeout";
  return err;
}

// Runs `fn` with bounded attempts: each attempt gets a signal that fires on its own timeout or
// when `signal` aborts; only retryable failures are tried again. Never waits forever.
export async function withRetry<T>(
  what: string,
  policy: RetryPolicy,
  fn: (signal: AbortSignal, attempt: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted)
      throw toDriverError(Object.assign(new Error("aborted"), { name: "AbortError" }), what);
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer =
      policy.timeoutMs > 0
        ? setTimeout(() => controller.abort(attemptTimeoutError(policy.timeoutMs)), policy.timeoutMs)
        : undefined;
    try {
      return await fn(controller.signal, attempt);
    } catch (raw) {
      const err = controller.signal.aborted && !signal?.aborted ? (controller.signal.reason ?? raw) : raw;
      if (signal?.aborted || attempt >= policy.maxAttempts || !isRetryable(err))
        throw toDriverError(err, what);
      const delay = backoffMs(policy, attempt);
      policy.logger.debug({ what, attempt, delay, err: (err as Error).message }, "retrying S3 request");
      await sleep(delay, signal);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}
