import type { Logger } from "../../common/log.js";
import type { S3Ops } from "../s3/s3-ops.js";
import type { Semaphore } from "../util/semaphore.js";

// What every upload shares: the S3 requests, the part size, and the global bounds on parts in
// flight (uploadSlots) and on buffered bytes (uploadMemory, in bytes).
export interface UploadContext {
  s3: S3Ops;
  partSize: number;
  uploadConcurrency: number;
  uploadSlots: Semaphore;
  uploadMemory: Semaphore;
  logger: Logger;
  // Where a stream's part goes when uploadMemory is used up (undefined: the writer waits).
  spillDir?: string;
}
