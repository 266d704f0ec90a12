// driver/: the Fusion filesystem, S3 buckets as <mountpoint>/s3/<bucket>/<key...> over FUSE.

export { DriverError, type DriverErrorCode, DriverErrorCodes } from "./errors.js";
export { type CommitOptions, type CommittedFile, FusionMount, mountFusion } from "./fusion-mount.js";
export { type ChunkedArea, DEFAULT_FUSION_OPTIONS, type FusionOptions } from "./options.js";
export { createS3Client } from "./s3/client.js";
