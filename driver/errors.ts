import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Every code DriverError can carry; docs/driver.md lists each one (a test checks it).
export const DriverErrorCodes = [
  "DRIVER_MOUNT_FAILED",
  "DRIVER_UNMOUNT_FAILED",
  "DRIVER_NOT_MOUNTED",
  "DRIVER_INVALID_OPTION",
  "DRIVER_S3_REQUEST_FAILED",
  "DRIVER_S3_TIMEOUT",
  "DRIVER_NOT_FOUND",
  "DRIVER_ACCESS_DENIED",
  "DRIVER_OBJECT_CHANGED",
  "DRIVER_UPLOAD_FAILED",
  "DRIVER_CACHE_FAILED",
  "DRIVER_CHUNKED_NOT_APPEND",
  "DRIVER_NOT_SUPPORTED",
  "DRIVER_ABORTED",
] as const;
export type DriverErrorCode = (typeof DriverErrorCodes)[number];

export interface DriverErrorOptions extends SnapErrorOptions {
  // The errno (negative, as FUSE wants it) the operation answers with; EIO when absent.
  errno?: number;
}

// Failures of the Fusion filesystem. `errno` says what the kernel is told.
export class DriverError extends SnapError {
  readonly errno: number;

  constructor(code: DriverErrorCode, message: string, options: DriverErrorOptions = {}) {
    super(code, message, options);
    this.errno = options.errno ?? Errno.EIO;
  }
}

// The errnos the filesystem answers with (negative, the way fuse-native expects them).
export const Errno = {
  EPERM: -1,
  ENOENT: -2,
  EIO: -5,
  EBADF: -9,
  EACCES: -13,
  EEXIST: -17,
  EXDEV: -18,
  ENOTDIR: -20,
  EISDIR: -21,
  EINVAL: -22,
  EFBIG: -27,
  EROFS: -30,
  ENOSYS: -38,
  ENOTEMPTY: -39,
  ENODATA: -61,
  ENOTSUP: -95,
  ETIMEDOUT: -110,
  ESTALE: -116,
} as const;

// The errno for any error thrown inside an operation: ours carry one, S3 errors are mapped.
export function errnoOf(err: unknown): number {
  if (err instanceof DriverError) return err.errno;
  return Errno.EIO;
}
