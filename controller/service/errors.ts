import type { SnapErrorOptions } from "../../common/errors.js";
import { ControllerError } from "../errors.js";

// Codes of the controller service and of the snapctl commands that talk to it;
// docs/cli.md lists each one (test/controller/service/docs.test.ts checks it).
export const SERVICE_ERROR_CODES = [
  "CONTROLLER_NOT_RUNNING",
  "CONTROLLER_REQUEST_FAILED",
  "CONTROLLER_NOT_RESTORABLE",
  "CONTROLLER_NO_SNAPSHOT",
  "CONTROLLER_NO_INSTANCE",
  "CONTROLLER_ENV_MISSING",
  "CONTROLLER_UNSUPPORTED",
] as const;

export type ServiceErrorCode = (typeof SERVICE_ERROR_CODES)[number];

// A controller service operation, or a request to it, that failed.
export class ServiceError extends ControllerError {
  constructor(code: ServiceErrorCode, message: string, options?: SnapErrorOptions) {
    super(code, message, options);
  }
}
