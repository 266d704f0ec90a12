import type { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "../../common/log.js";
import type { ChunkedArea } from "../../driver/index.js";
import { ChunkStore } from "../../store/index.js";

// Where one workdir's snapshots live in S3 and on the mount:
//   <workPrefix>/.snapshots/                       repository root (manifests per task)
//   <workPrefix>/.snapshots/chunks/                chunk store (shared by the workdir's tasks)
//   <workPrefix>/.snapshots/<task>/files/gen-N/    server-side copies of open files
//   <workPrefix>/.snapshots/.images/<task>/gen-N/  CRIU images dir on the mount (a chunked
//                                                  area: files there become chunks as written)
// ".images" cannot be a task id (ids start with a letter or digit), so it never collides.
export interface SnapshotLayout {
  bucket: string;
  root: string;
  chunkPrefix: string;
  imagesPrefix: string;
}

export function snapshotLayout(bucket: string, workPrefix: string): SnapshotLayout {
  const base = workPrefix === "" || workPrefix.endsWith("/") ? workPrefix : `${workPrefix}/`;
  const root = `${base}.snapshots/`;
  return { bucket, root, chunkPrefix: `${root}chunks/`, imagesPrefix: `${root}.images/` };
}

// The key prefix of one generation's images directory.
export function imagesKeyPrefix(layout: SnapshotLayout, task: string, generation: number): string {
  return `${layout.imagesPrefix}${task}/gen-${String(generation).padStart(6, "0")}/`;
}

// The key of an open file's server-side copy taken at a freeze.
export function openFileCopyKey(
  layout: SnapshotLayout,
  task: string,
  generation: number,
  index: number,
): string {
  return `${layout.root}${task}/files/gen-${String(generation).padStart(6, "0")}/${index}`;
}

// 8 MiB packs: an S3 request per 8 MiB instead of one per chunk (measured on s3rver here:
// 136 PUTs/s of 128 KiB = 17 MiB/s, 22 PUTs/s of 8 MiB = 178 MiB/s; see
// docs/snapshot-format.md), and a failed pack costs one retry of 8 MiB.
export const SNAPSHOT_PACK_SIZE = 8 * 1024 * 1024;

// 64 KiB chunks: with packs, a smaller chunk costs no request, only manifest size (about
// 3 MB of JSON per GiB of images) and dedups finer: after 10% of a 256 MiB task's pages
// changed in runs of 10 pages every 100 (bench/checkpoint/hog.c), the next checkpoint
// uploaded 45.8 MB at 64 KiB against 110 MB at 256 KiB (bench run of 2026-12-01).
export const SNAPSHOT_CHUNK_SIZE = 64 * 1024;

export interface SnapshotStoreOptions {
  client: S3Client;
  bucket: string;
  // Key prefix of the task work dir ("" for the bucket's root).
  workPrefix: string;
  // zstd level of chunks. Default 3.
  compressionLevel?: number;
  // Chunk size. Default SNAPSHOT_CHUNK_SIZE (64 KiB).
  chunkSize?: number;
  // New chunks go up in pack objects of about this size (0: one object per chunk).
  // Default SNAPSHOT_PACK_SIZE.
  packSize?: number;
  logger?: Logger;
}

// The chunk store of a workdir's snapshots; the same instance must back the mount's
// chunked area and the engine (the engine reads its counters and its set of known chunks).
export function createSnapshotStore(options: SnapshotStoreOptions): ChunkStore {
  const layout = snapshotLayout(options.bucket, options.workPrefix);
  return new ChunkStore({
    client: options.client,
    bucket: options.bucket,
    prefix: layout.chunkPrefix,
    ...(options.compressionLevel === undefined ? {} : { compressionLevel: options.compressionLevel }),
    chunkSize: options.chunkSize ?? SNAPSHOT_CHUNK_SIZE,
    // 4 MiB ahead of a sequential reader (lazy pages read through the mount).
    readAheadChunks: Math.max(16, Math.ceil((4 * 1024 * 1024) / (options.chunkSize ?? SNAPSHOT_CHUNK_SIZE))),
    packSize: options.packSize ?? SNAPSHOT_PACK_SIZE,
    ...(options.logger ? { logger: options.logger } : {}),
  });
}

// What to pass as `chunkedAreas` to mountFusion so that CRIU's image writes under the
// snapshot area become chunks as they are written (the driver takes areas at mount time).
export function snapshotMountAreas(options: { store: ChunkStore; workPrefix: string }): ChunkedArea[] {
  const layout = snapshotLayout(options.store.bucket, options.workPrefix);
  return [{ bucket: layout.bucket, prefix: layout.imagesPrefix, store: options.store }];
}
