import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Failures of the snapshot engine and of CRIU itself.
export class CriuError extends SnapError {
  constructor(code: `CRIU_${string}`, message: string, options?: SnapErrorOptions) {
    super(code, message, options);
  }
}
