import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { emptyStats } from "../chunk/chunk-stats.js";
import type { ChunkStore } from "../chunk/chunk-store.js";
import { SnapshotError, SnapshotErrorCode } from "../errors.js";
import type { ChunkedFile, ChunkStats } from "../types.js";
import { forEachBounded } from "../util/for-each-bounded.js";

export interface ImageDirOptions {
  // Files processed in parallel. Default 4 (each writer holds up to the store's
  // maxBufferedBytes, so memory is about files * maxBufferedBytes).
  concurrency?: number;
  signal?: AbortSignal;
}

// Stores every regular file of a local CRIU images directory (not recursive) as chunks.
// Returns the manifest's `images` map and the summed counters (for `bytes`).
export async function uploadImageDir(
  store: ChunkStore,
  dir: string,
  options: ImageDirOptions = {},
): Promise<{ images: Record<string, ChunkedFile>; stats: ChunkStats }> {
  const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  const images: Record<string, ChunkedFile> = {};
  const stats = emptyStats();
  await forEachBounded(
    entries.sort(),
    options.concurrency ?? 4,
    async (name) => {
      const result = await store.writeFrom(
        createReadStream(join(dir, name), { highWaterMark: 1024 * 1024 }),
        {
          signal: options.signal,
        },
      );
      images[name] = result.file;
      for (const key of Object.keys(stats) as (keyof ChunkStats)[]) stats[key] += result.stats[key];
    },
    options.signal,
  );
  return { images, stats };
}

// Writes image files back into a local directory (created if needed), every chunk verified.
export async function downloadImageDir(
  store: ChunkStore,
  images: Record<string, ChunkedFile>,
  dir: string,
  options: ImageDirOptions = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await forEachBounded(
    Object.entries(images),
    options.concurrency ?? 4,
    async ([name, file]) => {
      if (name.includes("/") || name === "." || name === "..") {
        throw new SnapshotError(
          SnapshotErrorCode.ManifestCorrupt,
          `Image file name "${name}" is not a plain file name`,
        );
      }
      const reader = store.openReader(file);
      try {
        await pipeline(reader.stream({ signal: options.signal }), createWriteStream(join(dir, name)), {
          signal: options.signal,
        });
      } finally {
        await reader.close();
      }
    },
    options.signal,
  );
}
