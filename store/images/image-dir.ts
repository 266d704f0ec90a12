import { type FileHandle, mkdir, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { forEachBounded } from "../../common/for-each-bounded.js";
import { refLength, refStart, sliceRef } from "../chunk/chunk-ref.js";
import { emptyStats } from "../chunk/chunk-stats.js";
import { type ChunkStore, spanRuns } from "../chunk/chunk-store.js";
import { boundedOptions, SnapshotError, SnapshotErrorCode } from "../errors.js";
import type { ChunkedFile, ChunkRef, ChunkStats, QuickHashedFile } from "../types.js";

export interface ImageDirOptions {
  // Files processed in parallel. Default 4 (each writer holds up to the store's
  // maxBufferedBytes, so memory is about files * maxBufferedBytes).
  concurrency?: number;
  signal?: AbortSignal;
}

export interface UploadImageDirOptions extends ImageDirOptions {
  // Collect each file's quick hashes (returned as `quickHashed`), and skip the SHA-256 of
  // chunks equal to `previous`'s file of the same name at the same place (the last upload
  // of this directory's generation by the same store; see ChunkWriterOptions.quick).
  quick?: { previous?: Record<string, QuickHashedFile> };
}

// Stores every regular file of a local CRIU images directory (not recursive) as chunks.
// Returns the manifest's `images` map and the summed counters (for `bytes`).
export async function uploadImageDir(
  store: ChunkStore,
  dir: string,
  options: UploadImageDirOptions = {},
): Promise<{
  images: Record<string, ChunkedFile>;
  stats: ChunkStats;
  quickHashed?: Record<string, QuickHashedFile>;
}> {
  const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  const images: Record<string, ChunkedFile> = {};
  const quickHashed: Record<string, QuickHashedFile> = {};
  const stats = emptyStats();
  await forEachBounded(
    entries.sort(),
    options.concurrency ?? 4,
    async (name) => {
      const previous = options.quick?.previous?.[name];
      const result = await store.writeFile(join(dir, name), {
        signal: options.signal,
        ...(options.quick ? { quick: previous ? { previous } : {} } : {}),
      });
      images[name] = result.file;
      if (result.quickHashed) quickHashed[name] = result.quickHashed;
      for (const key of Object.keys(stats) as (keyof ChunkStats)[]) stats[key] += result.stats[key];
    },
    boundedOptions(options.signal),
  );
  return { images, stats, ...(options.quick ? { quickHashed } : {}) };
}

// Writes image files back into a local directory (created if needed), every chunk verified.
// Chunks lying back to back in a pack come in one ranged GET of up to 4 MiB; those GETs
// run in parallel across all the files (`concurrency` of them, default 8) and each chunk
// is written at its place in its file.
export async function downloadImageDir(
  store: ChunkStore,
  images: Record<string, ChunkedFile>,
  dir: string,
  options: ImageDirOptions = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const handles: FileHandle[] = [];
  try {
    // Every chunk once, with each file and position it (or a slice of it) goes to; then
    // grouped by pack so that a snapshot whose chunks come from several generations' packs
    // still reads each pack in a few large requests.
    const chunks = new Map<
      string,
      ChunkRef & { places: { handle: FileHandle; position: number; ref: ChunkRef }[] }
    >();
    for (const [name, file] of Object.entries(images)) {
      if (name.includes("/") || name === "." || name === "..") {
        throw new SnapshotError(
          SnapshotErrorCode.ManifestCorrupt,
          `Image file name "${name}" is not a plain file name`,
        );
      }
      const handle = await open(join(dir, name), "w");
      handles.push(handle);
      let position = 0;
      for (const ref of file.chunks) {
        let entry = chunks.get(ref.hash);
        if (!entry) {
          entry = { ...sliceRef(ref, 0, ref.size), places: [] };
          chunks.set(ref.hash, entry);
        }
        entry.places.push({ handle, position, ref });
        position += refLength(ref);
      }
      if (position !== file.size) {
        throw new SnapshotError(
          SnapshotErrorCode.ManifestCorrupt,
          `Image ${name} lists chunks that add up to ${position} bytes, not its size ${file.size}`,
        );
      }
    }
    await forEachBounded(
      spanRuns([...chunks.values()], 4 * 1024 * 1024, 256 * 1024),
      options.concurrency ?? 8,
      async (run) => {
        const { data, release } = await store.fetchRunLent(run, options.signal);
        const pieces: Piece[] = [];
        for (const [i, chunk] of run.entries()) {
          for (const place of chunk.places) {
            const start = refStart(place.ref);
            const buffer = (data[i] as Buffer).subarray(start, start + refLength(place.ref));
            pieces.push({ handle: place.handle, position: place.position, buffer });
          }
        }
        await writePieces(pieces);
        release();
      },
      boundedOptions(options.signal),
    );
  } finally {
    for (const handle of handles) await handle.close();
  }
}

// Bytes to write at a position of an open file.
interface Piece {
  handle: FileHandle;
  position: number;
  buffer: Buffer;
}

// The most buffers one writev takes (Linux's IOV_MAX).
const MAX_IOVECS = 1024;

// Writes `pieces`, those that follow each other in one file with one writev: a write per
// chunk queued one request per 64 KiB on libuv's thread pool, and submitting them was a
// fifth of the main thread of an eager download (`bench/probes/incremental-upload.ts
// --download`, docs/snapshot-format.md).
async function writePieces(pieces: Piece[]): Promise<void> {
  const handles = new Map<FileHandle, number>();
  const order = (p: Piece) => handles.get(p.handle) ?? handles.set(p.handle, handles.size).size - 1;
  pieces.sort((a, b) => order(a) - order(b) || a.position - b.position);
  for (let i = 0; i < pieces.length; ) {
    const first = pieces[i] as Piece;
    const buffers = [first.buffer];
    let end = first.position + first.buffer.length;
    let j = i + 1;
    for (; j < pieces.length && buffers.length < MAX_IOVECS; j++) {
      const next = pieces[j] as Piece;
      if (next.handle !== first.handle || next.position !== end) break;
      buffers.push(next.buffer);
      end += next.buffer.length;
    }
    await writeAllAt(first.handle, buffers, first.position);
    i = j;
  }
}

// writev of `buffers` at `position`, finishing a short write from where it stopped.
async function writeAllAt(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  const total = buffers.reduce((n, b) => n + b.length, 0);
  let written = (await handle.writev(buffers, position)).bytesWritten;
  if (written >= total) return;
  const rest = Buffer.concat(buffers).subarray(written);
  while (written < total) {
    const r = await handle.write(rest, written - (total - rest.length), total - written, position + written);
    written += r.bytesWritten;
  }
}
