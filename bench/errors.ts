import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Every error the benchmark harness throws; codes are listed in BENCHMARKS.md.
export type BenchErrorCode =
  | "BENCH_BAD_OPTION"
  | "BENCH_PROXY_TARGET"
  | "BENCH_TOOL_FAILED"
  | "BENCH_MOUNT_FAILED"
  | "BENCH_TIMEOUT"
  | "BENCH_VERIFY_FAILED";

export class BenchError extends SnapError {
  declare readonly code: BenchErrorCode;

  constructor(code: BenchErrorCode, message: string, options: SnapErrorOptions = {}) {
    super(code, message, options);
  }
}
