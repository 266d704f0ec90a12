import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Every code CloudError can carry; docs/errors.md lists each one (a test checks that every
// code used is documented).
export const CLOUD_ERROR_CODES = [
  "CLOUD_START_FAILED",
  "CLOUD_START_TIMEOUT",
  "CLOUD_REDIS_MISSING",
] as const;
export type CloudErrorCode = (typeof CLOUD_ERROR_CODES)[number];

// Failures of the embedded local cloud (s3rver, redis-server, the IMDS emulator).
export class CloudError extends SnapError {
  declare readonly code: CloudErrorCode;

  constructor(code: CloudErrorCode, message: string, options?: SnapErrorOptions) {
    super(code, message, options);
  }
}
