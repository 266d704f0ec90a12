import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "../common/log.js";
import type { ChunkStoreLike } from "../store/index.js";
import { DriverError } from "./errors.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// A key prefix whose new files are written through a chunk store instead of becoming objects.
export interface ChunkedArea {
  bucket: string;
  // Key prefix, e.g. "snapshots/t-42/" (a trailing "/" is added when missing).
  prefix: string;
  store: ChunkStoreLike;
}

// Everything `mountFusion` accepts. Each field's default is in DEFAULT_FUSION_OPTIONS.
export interface FusionOptions {
  // Directory to mount on; created when missing. Required.
  mountpoint: string;
  // Buckets shown under `s3/` (ListBuckets adds the rest when the credentials allow it).
  buckets?: string[];
  // An S3 client to use instead of building one from the standard AWS configuration chain.
  client?: S3Client;
  // Overrides for the client built here (also AWS_ENDPOINT_URL_S3, SNAPCTL_S3_FORCE_PATH_STYLE=1).
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  // Disk block cache directory. Default: a fresh directory under the OS temp dir, removed on close.
  cacheDir?: string;
  // Disk block cache size limit in bytes (LRU eviction). Default 10 GiB.
  cacheSize?: number;
  // Cache block size in bytes: the unit of caching and of random reads. Default 1 MiB.
  blockSize?: number;
  // Read part size: one sequential ranged GET. Default 8 MiB (a multiple of blockSize).
  partSize?: number;
  // First prefetch window for a sequential reader; it doubles up to prefetchMax. Default 8 MiB.
  prefetchInitial?: number;
  // Largest prefetch window of one open file. Default 128 MiB.
  prefetchMax?: number;
  // Bytes of read data held in memory (prefetched and recently read blocks), all files. Default 512 MiB.
  readMemory?: number;
  // Concurrent ranged GETs, all files. Default 16.
  maxConcurrentGets?: number;
  // Multipart upload part size in bytes (>= 5 MiB). Files smaller than this are one PutObject. Default 16 MiB.
  uploadPartSize?: number;
  // Parts being uploaded at once, all files. Default 8.
  uploadConcurrency?: number;
  // Bytes of written data buffered in memory waiting for upload, all files; writers wait beyond it. Default 256 MiB.
  uploadMemory?: number;
  // Concurrent S3 requests of namespace work (rename of a directory, listing). Default 16.
  namespaceConcurrency?: number;
  // Objects larger than this are copied (rename, metadata change) by multipart copy
  // (UploadPartCopy) instead of one CopyObject, which S3 refuses above 5 GiB. At most 5 GiB.
  // Default 5 GiB.
  copyThreshold?: number;
  // Part size of a multipart copy, 5 MiB..5 GiB (raised for an object that would need more than
  // 10,000 parts). Server-side: no local memory per part. Default 512 MiB.
  copyPartSize?: number;
  // UploadPartCopy requests in flight, all files. Default 8.
  copyConcurrency?: number;
  // How long a stat result is trusted, in ms. Default 5000.
  statTtlMs?: number;
  // Per-attempt S3 request bound in ms (for bodies: longest stall between bytes). Default 30000.
  requestTimeoutMs?: number;
  // Attempts of one S3 request (throttling, 5xx and network errors are retried). Default 4.
  maxAttempts?: number;
  // First retry backoff in ms (doubles, full jitter, capped at 2 s). Default 200.
  retryBaseMs?: number;
  // Kernel readahead in bytes (passed as max_readahead). Default 8 MiB.
  maxReadahead?: number;
  // Owner of files without uid/gid metadata. Default: this process's uid/gid.
  uid?: number;
  gid?: number;
  // Files created under these prefixes go to a chunk store (snapshots).
  chunkedAreas?: ChunkedArea[];
  logger?: Logger;
}

export const DEFAULT_FUSION_OPTIONS = {
  buckets: [] as string[],
  cacheSize: 10 * GiB,
  blockSize: 1 * MiB,
  partSize: 8 * MiB,
  prefetchInitial: 8 * MiB,
  prefetchMax: 128 * MiB,
  readMemory: 512 * MiB,
  maxConcurrentGets: 16,
  uploadPartSize: 16 * MiB,
  uploadConcurrency: 8,
  uploadMemory: 256 * MiB,
  namespaceConcurrency: 16,
  copyThreshold: 5 * GiB,
  copyPartSize: 512 * MiB,
  copyConcurrency: 8,
  statTtlMs: 5000,
  requestTimeoutMs: 30_000,
  maxAttempts: 4,
  retryBaseMs: 200,
  maxReadahead: 8 * MiB,
} as const;

export type ResolvedFusionOptions = Required<
  Omit<FusionOptions, "client" | "endpoint" | "region" | "forcePathStyle" | "logger" | "cacheDir">
> &
  Pick<FusionOptions, "client" | "endpoint" | "region" | "forcePathStyle"> & {
    cacheDir: string;
    // Whether cacheDir was made here (and is removed on close).
    ownCacheDir: boolean;
    logger: Logger;
  };

// Fills in defaults and checks the values that would otherwise fail deep inside.
export function resolveOptions(options: FusionOptions, logger: Logger): ResolvedFusionOptions {
  const d = DEFAULT_FUSION_OPTIONS;
  const resolved: ResolvedFusionOptions = {
    mountpoint: options.mountpoint,
    buckets: options.buckets ?? [...d.buckets],
    client: options.client,
    endpoint: options.endpoint,
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    cacheDir: options.cacheDir ?? join(tmpdir(), `snapctl-fusion-${process.pid}-${Date.now().toString(36)}`),
    ownCacheDir: options.cacheDir === undefined,
    cacheSize: options.cacheSize ?? d.cacheSize,
    blockSize: options.blockSize ?? d.blockSize,
    partSize: options.partSize ?? d.partSize,
    prefetchInitial: options.prefetchInitial ?? d.prefetchInitial,
    prefetchMax: options.prefetchMax ?? d.prefetchMax,
    readMemory: options.readMemory ?? d.readMemory,
    maxConcurrentGets: options.maxConcurrentGets ?? d.maxConcurrentGets,
    uploadPartSize: options.uploadPartSize ?? d.uploadPartSize,
    uploadConcurrency: options.uploadConcurrency ?? d.uploadConcurrency,
    uploadMemory: options.uploadMemory ?? d.uploadMemory,
    namespaceConcurrency: options.namespaceConcurrency ?? d.namespaceConcurrency,
    copyThreshold: options.copyThreshold ?? d.copyThreshold,
    copyPartSize: options.copyPartSize ?? d.copyPartSize,
    copyConcurrency: options.copyConcurrency ?? d.copyConcurrency,
    statTtlMs: options.statTtlMs ?? d.statTtlMs,
    requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
    maxAttempts: options.maxAttempts ?? d.maxAttempts,
    retryBaseMs: options.retryBaseMs ?? d.retryBaseMs,
    maxReadahead: options.maxReadahead ?? d.maxReadahead,
    uid: options.uid ?? process.getuid?.() ?? 0,
    gid: options.gid ?? process.getgid?.() ?? 0,
    chunkedAreas: (options.chunkedAreas ?? []).map((a) => ({
      ...a,
      prefix: a.prefix.endsWith("/") || a.prefix === "" ? a.prefix : `${a.prefix}/`,
    })),
    logger,
  };
  const bad = (name: string, value: unknown, why: string) =>
    new DriverError("DRIVER_INVALID_OPTION", `Option ${name}=${String(value)} is invalid: ${why}`);
  if (!resolved.mountpoint) throw bad("mountpoint", resolved.mountpoint, "a directory is required");
  for (const name of [
    "blockSize",
    "partSize",
    "prefetchInitial",
    "prefetchMax",
    "readMemory",
    "maxConcurrentGets",
    "uploadConcurrency",
    "uploadMemory",
    "namespaceConcurrency",
    "copyThreshold",
    "copyPartSize",
    "copyConcurrency",
    "maxAttempts",
    "cacheSize",
    "requestTimeoutMs",
  ] as const) {
    const v = resolved[name];
    if (!Number.isInteger(v) || v <= 0) throw bad(name, v, "must be a positive integer");
  }
  if (resolved.partSize % resolved.blockSize !== 0)
    throw bad("partSize", resolved.partSize, "must be a multiple of blockSize");
  if (resolved.uploadPartSize < 5 * MiB)
    throw bad("uploadPartSize", resolved.uploadPartSize, "S3 parts are at least 5 MiB");
  if (resolved.copyThreshold > 5 * GiB)
    throw bad("copyThreshold", resolved.copyThreshold, "S3 refuses CopyObject above 5 GiB");
  if (resolved.copyPartSize < 5 * MiB || resolved.copyPartSize > 5 * GiB)
    throw bad("copyPartSize", resolved.copyPartSize, "S3 parts are 5 MiB to 5 GiB");
  if (resolved.uploadMemory < resolved.uploadPartSize)
    throw bad("uploadMemory", resolved.uploadMemory, "must hold at least one upload part");
  return resolved;
}
