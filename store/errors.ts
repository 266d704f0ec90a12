import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Every code the store throws. docs/snapshot-format.md lists each one (a test checks it).
export const SnapshotErrorCode = {
  // A chunk's bytes do not decode or do not hash to its name.
  CorruptChunk: "SNAPSHOT_CORRUPT_CHUNK",
  // A chunk a manifest references is not in S3.
  MissingChunk: "SNAPSHOT_MISSING_CHUNK",
  // A chunk object has a header version or codec this build cannot read.
  ChunkFormatUnsupported: "SNAPSHOT_CHUNK_FORMAT_UNSUPPORTED",
  // A manifest is not valid JSON or does not match the schema (truncated, damaged).
  ManifestCorrupt: "SNAPSHOT_MANIFEST_CORRUPT",
  // A manifest was written by a newer schema than this build reads.
  SchemaTooNew: "SNAPSHOT_SCHEMA_TOO_NEW",
  // The requested generation has no manifest.
  NotFound: "SNAPSHOT_NOT_FOUND",
  // commit() of a generation whose manifest already exists.
  GenerationExists: "SNAPSHOT_GENERATION_EXISTS",
  // commit() of a manifest that references chunks not in the store.
  CommitIncomplete: "SNAPSHOT_COMMIT_INCOMPLETE",
  // An S3 request failed for a reason other than a missing object (retryable).
  S3Failed: "SNAPSHOT_S3_FAILED",
  // The operation was cancelled through its AbortSignal or abort().
  Aborted: "SNAPSHOT_ABORTED",
  // write()/finish() after finish() or abort(), or use of a closed store/reader.
  Closed: "SNAPSHOT_CLOSED",
  // A compression worker thread died.
  WorkerFailed: "SNAPSHOT_WORKER_FAILED",
  // An option or argument is out of range.
  InvalidArgument: "SNAPSHOT_INVALID_ARGUMENT",
} as const;

export type SnapshotErrorCodeValue = (typeof SnapshotErrorCode)[keyof typeof SnapshotErrorCode];

export interface SnapshotErrorOptions extends SnapErrorOptions {
  // The chunk hash involved, when there is one (for callers that report or retry per chunk).
  hash?: string;
  // The generation involved, when there is one.
  generation?: number;
}

// The store's one error class: `code` is one of SnapshotErrorCode.
export class SnapshotError extends SnapError {
  readonly hash?: string;
  readonly generation?: number;

  constructor(code: SnapshotErrorCodeValue, message: string, options: SnapshotErrorOptions = {}) {
    super(code, message, options);
    if (options.hash !== undefined) this.hash = options.hash;
    if (options.generation !== undefined) this.generation = options.generation;
  }
}

// Turns an abort into SNAPSHOT_ABORTED, keeping the signal's reason as cause.
export function abortError(signal: AbortSignal | undefined, what: string): SnapshotError {
  return new SnapshotError(SnapshotErrorCode.Aborted, `${what} was aborted`, { cause: signal?.reason });
}

// Throws SNAPSHOT_ABORTED if `signal` has fired.
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

// forEachBounded's options for a store operation: an abort ends it with SNAPSHOT_ABORTED.
export function boundedOptions(
  signal: AbortSignal | undefined,
  what = "Bounded operation",
): { signal?: AbortSignal; abortError: () => SnapshotError } {
  return { ...(signal ? { signal } : {}), abortError: () => abortError(signal, what) };
}
