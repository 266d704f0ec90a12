import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Failures of the embedded local cloud (s3rver, redis-server, the IMDS emulator).
export class CloudError extends SnapError {
  constructor(code: `CLOUD_${string}`, message: string, options?: SnapErrorOptions) {
    super(code, message, options);
  }
}
