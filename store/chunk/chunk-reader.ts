import { SnapshotError, SnapshotErrorCode } from "../errors.js";
import type { ChunkedFile, ChunkOpOptions, ChunkReader, ChunkRef } from "../types.js";
import { refLength, refStart } from "./chunk-ref.js";
import type { ChunkStore } from "./chunk-store.js";

export interface ChunkReaderOptions {
  // Chunks fetched ahead when reads are sequential. Default: the store's readAheadChunks.
  readAheadChunks?: number;
}

// Serves reads at any offset of a chunked file: the chunks a read spans are fetched in
// parallel (bounded by the store's download limit), verified and cached by the store.
export class ChunkReaderImpl implements ChunkReader {
  readonly size: number;
  // starts[i] is the file offset of chunk i.
  private readonly starts: number[];
  private readonly readAhead: number;
  private nextSequential = -1;
  // Chunks before this index have been asked for by read-ahead.
  private prefetchedUntil = 0;
  private closed = false;

  constructor(
    private readonly store: ChunkStore,
    private readonly file: ChunkedFile,
    options: ChunkReaderOptions,
  ) {
    this.readAhead = options.readAheadChunks ?? store.readAheadChunks;
    this.starts = new Array(file.chunks.length);
    let offset = 0;
    for (let i = 0; i < file.chunks.length; i++) {
      this.starts[i] = offset;
      offset += refLength(file.chunks[i] as ChunkRef);
    }
    if (offset !== file.size) {
      throw new SnapshotError(
        SnapshotErrorCode.ManifestCorrupt,
        `Chunked file lists ${offset} bytes of chunks but a size of ${file.size}`,
      );
    }
    this.size = file.size;
  }

  // Reads up to `length` bytes at `offset` (fewer only at the end of the file).
  async read(offset: number, length: number, options: ChunkOpOptions = {}): Promise<Buffer> {
    if (this.closed) throw new SnapshotError(SnapshotErrorCode.Closed, "The chunk reader is closed");
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new SnapshotError(
        SnapshotErrorCode.InvalidArgument,
        `read(offset ${offset}, length ${length}) needs non-negative integers`,
      );
    }
    const end = Math.min(this.size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    const first = this.chunkAt(offset);
    const last = this.chunkAt(end - 1);
    const sequential = offset === this.nextSequential;
    this.nextSequential = end;
    const loads: Promise<Buffer>[] = [];
    for (let i = first; i <= last; i++) {
      loads.push(
        this.store.loadChunk(this.file.chunks[i] as (typeof this.file.chunks)[number], options.signal),
      );
    }
    // Read-ahead in batches (a new one when half the window is consumed), so that chunks
    // lying next to each other in a pack come in one ranged GET.
    if ((sequential || offset === 0) && this.prefetchedUntil <= last + Math.ceil(this.readAhead / 2)) {
      const from = Math.max(this.prefetchedUntil, last + 1);
      const to = Math.min(last + 1 + this.readAhead, this.file.chunks.length);
      if (from < to) this.store.prefetchRun(this.file.chunks.slice(from, to));
      this.prefetchedUntil = Math.max(this.prefetchedUntil, to);
    }
    // At most last-first+1 promises, and the store's download limit bounds the GETs.
    const chunks = await Promise.all(loads);
    const out = Buffer.allocUnsafe(end - offset);
    let written = 0;
    for (let i = first; i <= last; i++) {
      const ref = this.file.chunks[i] as ChunkRef;
      const data = chunks[i - first] as Buffer;
      // The reference's bytes: [skip, skip + its length) of the chunk.
      const skip = refStart(ref);
      const start = this.starts[i] as number;
      const from = Math.max(offset, start) - start;
      const to = Math.min(end, start + refLength(ref)) - start;
      written += data.copy(out, written, skip + from, skip + to);
    }
    return out;
  }

  // The file from `start` to the end as a stream of chunk-sized pieces (sequential, so
  // read-ahead applies); for materializing an image file on local disk.
  async *stream(options: ChunkOpOptions & { start?: number } = {}): AsyncGenerator<Buffer> {
    const step = this.file.chunks.reduce((m, c) => Math.max(m, c.size), 1);
    for (let offset = options.start ?? 0; offset < this.size; offset += step) {
      yield await this.read(offset, step, options);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // The index of the chunk holding byte `offset` (binary search over chunk starts).
  private chunkAt(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if ((this.starts[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
