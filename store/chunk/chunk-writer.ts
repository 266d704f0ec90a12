import { setMaxListeners } from "node:events";
import { abortError, SnapshotError, SnapshotErrorCode } from "../errors.js";
import type {
  ChunkedFile,
  ChunkOpOptions,
  ChunkRef,
  CountingChunkWriter,
  QuickHashedFile,
} from "../types.js";
import { refLength, sliceRefs } from "./chunk-ref.js";
import type { ChunkStats } from "./chunk-stats.js";
import { emptyStats } from "./chunk-stats.js";
import type { BatchChunk, ChunkStore, StagedChunk } from "./chunk-store.js";
import { PAGE_BYTES } from "./codec-pool.js";

// A changed piece made of more references than this is stored whole again (see processBatch).
const MAX_PIECE_REFS_TO_SPLIT = 4;

export interface ChunkWriterOptions {
  // Cancels this writer's work (as abort()).
  signal?: AbortSignal;
  // Collect the chunks' quick hashes (see quickHashed), and where `previous` (this file as
  // the same store wrote it last time) has an equal one at the same index and size, reuse
  // its chunk without hashing it. Stores with packs only.
  quick?: { previous?: QuickHashedFile };
}

// Cuts one file into fixed-size chunks and hands each to the store's pool and uploader.
// Memory: the chunk being filled plus at most store.maxBufferedBytes of chunks in flight.
export class ChunkWriterImpl implements CountingChunkWriter {
  readonly stats: ChunkStats = emptyStats();
  private current: Buffer<SharedArrayBuffer>;
  private filled = 0;
  private total = 0;
  // The references of each piece (chunkSize bytes) of the file, in file order: one chunk,
  // or slices of the previous generation's chunks and new chunks for its changed pages.
  private readonly pieces: ChunkRef[][] = [];
  private readonly jobs = new Set<Promise<void>>();
  // Packs holding this file's chunks, until they are durable in S3.
  private readonly durable = new Set<Promise<void>>();
  private inFlightBytes = 0;
  private waiters: (() => void)[] = [];
  private failure?: unknown;
  private state: "open" | "finishing" | "finished" | "aborted" = "open";
  private readonly controller = new AbortController();
  private readonly signal: AbortSignal;
  // Quick hashes by the piece index their batch starts at (batches finish out of order),
  // and the previous generation's references grouped by piece (null: not comparable).
  private readonly quick?: {
    previous?: QuickHashedFile;
    parts: Map<number, Buffer>;
    previousPieces?: (ChunkRef[] | null)[];
  };

  constructor(
    private readonly store: ChunkStore,
    options: ChunkWriterOptions,
  ) {
    const signals = [this.controller.signal];
    const outer = store.combine(options.signal);
    if (outer) signals.push(outer);
    this.signal = AbortSignal.any(signals);
    // Every chunk in flight listens on it (pool job, S3 request): bounded by maxBufferedBytes.
    setMaxListeners(0, this.signal);
    this.current = this.newBuffer();
    if (options.quick && store.packSize > 0) {
      const previous = options.quick.previous;
      this.quick = {
        ...options.quick,
        parts: new Map(),
        ...(previous ? { previousPieces: piecesOf(previous, store.chunkSize) } : {}),
      };
    }
  }

  // The finished file with its chunks' quick hashes (undefined without the quick option).
  get quickHashed(): QuickHashedFile | undefined {
    if (!this.quick || this.state !== "finished") return undefined;
    const parts = [...this.quick.parts.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b);
    return { size: this.total, chunks: this.pieces.flat(), quick: Buffer.concat(parts) };
  }

  private newBuffer(): Buffer<SharedArrayBuffer> {
    return Buffer.from(this.store.takeBatchBuffer(), 0, this.store.batchBytes);
  }

  private recycle(buffer: SharedArrayBuffer): void {
    this.store.giveBatchBuffer(buffer);
  }

  get size(): number {
    return this.total;
  }

  // Uncompressed bytes handed to the pool or uploader and not yet uploaded (the memory
  // bound is this plus the chunk being filled).
  get bufferedBytes(): number {
    return this.inFlightBytes;
  }

  // Copies `data` into chunks; waits while too many bytes are being compressed or uploaded.
  async write(data: Uint8Array, options: ChunkOpOptions = {}): Promise<void> {
    this.assertWritable();
    let offset = 0;
    while (offset < data.length) {
      const n = Math.min(data.length - offset, this.current.length - this.filled);
      this.current.set(data.subarray(offset, offset + n), this.filled);
      offset += n;
      await this.filledBy(n, options.signal);
    }
  }

  // Like write(), with the bytes read straight into the chunk buffers: `read` fills up to
  // target.length bytes of `target` and returns how many (0 at the end of the source).
  async fill(read: (target: Buffer) => Promise<number>, options: ChunkOpOptions = {}): Promise<void> {
    this.assertWritable();
    for (;;) {
      const n = await read(this.current.subarray(this.filled));
      if (n === 0) return;
      await this.filledBy(n, options.signal);
    }
  }

  // Counts `n` more bytes in the chunk buffer; a full buffer goes to the pool.
  private async filledBy(n: number, signal?: AbortSignal): Promise<void> {
    this.filled += n;
    this.total += n;
    this.stats.bytesWritten += n;
    this.store.stats.bytesWritten += n;
    if (this.filled === this.current.length) {
      await this.waitForRoom(signal);
      this.dispatch();
    }
  }

  // Cuts the last chunk, waits for all uploads, and returns the chunk list.
  async finish(options: ChunkOpOptions = {}): Promise<ChunkedFile> {
    this.assertWritable();
    this.state = "finishing";
    if (this.filled > 0) {
      await this.waitForRoom(options.signal);
      this.dispatch();
    }
    await this.settleAll();
    if (this.failure === undefined && this.durable.size > 0) {
      // Chunks staged in the open pack go up now, not when it fills.
      this.store.flush();
      try {
        await Promise.all(this.durable);
      } catch (err) {
        this.failure ??= err;
      }
    }
    if (this.failure !== undefined) {
      this.state = "aborted";
      throw this.failure;
    }
    this.state = "finished";
    // The buffer the next write would have filled: unused, for the next writer.
    this.recycle(this.current.buffer);
    return { size: this.total, chunks: this.pieces.flat() };
  }

  // Stops all work; uploads already done stay in S3 until GC removes them.
  async abort(reason?: unknown): Promise<void> {
    if (this.state === "finished" || this.state === "aborted") return;
    this.state = "aborted";
    this.failure ??= abortError(undefined, "Chunk writer");
    this.controller.abort(reason);
    this.wake();
    await this.settleAll();
  }

  // Hands the filled buffer (one chunk, or a batch of chunks with packs) to the pool.
  private dispatch(): void {
    const index = this.pieces.length;
    const length = this.filled;
    const buffer = this.current.buffer;
    const count = Math.ceil(length / this.store.chunkSize);
    // Placeholders keep the list in file order while pieces complete out of order.
    for (let i = 0; i < count; i++) this.pieces.push([]);
    this.current = this.newBuffer();
    this.filled = 0;
    this.inFlightBytes += length;
    this.stats.chunksTotal += count;
    this.store.stats.chunksTotal += count;
    // The job is owned by `jobs`: it never rejects (its failure is recorded) and removes itself.
    const job: Promise<void> = (
      this.store.packSize > 0 ? this.processBatch(index, buffer, length) : this.process(index, buffer, length)
    )
      .then(
        () => this.release(length),
        (err: unknown) => {
          this.failure ??= err;
          this.release(length);
          this.controller.abort(err);
        },
      )
      .finally(() => this.jobs.delete(job));
    this.jobs.add(job);
  }

  private async processBatch(index: number, buffer: SharedArrayBuffer, length: number): Promise<void> {
    const chunkSize = this.store.chunkSize;
    const count = Math.ceil(length / chunkSize);
    const sizeOf = (i: number) => Math.min(chunkSize, length - i * chunkSize);
    // The previous generation's references of each piece, where they can stand in for it.
    const before: (ChunkRef[] | undefined)[] = [];
    let quick: Parameters<ChunkStore["encodeBatch"]>[3];
    if (this.quick) {
      const previous = this.quick.previous;
      const firstPage = (index * chunkSize) / PAGE_BYTES;
      const pages = Math.ceil(length / PAGE_BYTES);
      for (let i = 0; i < count; i++) {
        const refs = this.quick.previousPieces?.[index + i];
        const lastPage = firstPage + Math.ceil((i * chunkSize + sizeOf(i)) / PAGE_BYTES);
        const ok =
          refs != null &&
          refs.reduce((n, r) => n + refLength(r), 0) === sizeOf(i) &&
          previous !== undefined &&
          previous.quick.length >= lastPage * 16;
        before.push(ok ? refs : undefined);
      }
      if (previous && before.some(Boolean)) {
        const hashes = Buffer.alloc(16 * pages);
        previous.quick.copy(
          hashes,
          0,
          firstPage * 16,
          Math.min(previous.quick.length, (firstPage + pages) * 16),
        );
        quick = {
          previous: hashes,
          usable: before.map(Boolean),
          // A piece already made of many references is stored whole again when it changes,
          // which bounds the references per piece (and the chunks a read of it needs).
          split: before.map((refs) => refs !== undefined && refs.length <= MAX_PIECE_REFS_TO_SPLIT),
        };
      } else quick = {};
    }
    const {
      pieces,
      release,
      quick: quickHashes,
    } = await this.store.encodeBatch(buffer, length, this.signal, quick);
    if (this.quick && quickHashes) this.quick.parts.set(index, quickHashes);
    this.recycle(buffer);
    for (const [i, piece] of pieces.entries()) {
      const size = sizeOf(i);
      if (piece.kind === "chunk") {
        this.pieces[index + i] = [await this.stage(piece.result, size)];
        continue;
      }
      const refs = before[i];
      if (!refs) throw new Error(`BUG: piece ${index + i} compared with no previous references`);
      if (piece.kind === "same") {
        this.pieces[index + i] = refs;
        this.count({ chunksUnchanged: 1, chunksDeduplicated: 1, bytesDeduplicated: size });
        continue;
      }
      // Changed in part: the previous bytes around each changed run, then the run.
      const out: ChunkRef[] = [];
      let at = 0;
      for (const run of piece.runs) {
        out.push(...sliceRefs(refs, at, run.start));
        out.push(await this.stage(run.result, run.length));
        at = run.start + run.length;
      }
      out.push(...sliceRefs(refs, at, size));
      this.pieces[index + i] = out;
      const changed = piece.runs.reduce((n, r) => n + r.length, 0);
      this.count({ chunksPatched: 1, bytesDeduplicated: size - changed });
    }
    // Every new chunk is staged (copied into its pack, or uploaded on its own): their
    // objects' buffer can serve another batch. (On a failure above it is dropped instead.)
    release();
  }

  private async process(index: number, buffer: SharedArrayBuffer, length: number): Promise<void> {
    const encoded = await this.store.encode(buffer, length, this.signal);
    this.recycle(buffer);
    this.pieces[index] = [this.record(await this.store.putIfAbsent(encoded, length, this.signal), length)];
  }

  // A chunk of a batch stored (if the store did not have it): its reference.
  private async stage(result: BatchChunk, size: number): Promise<ChunkRef> {
    const staged =
      "known" in result ? result.known : await this.store.putIfAbsent(result.encoded, size, this.signal);
    return this.record(staged, size);
  }

  private record(staged: StagedChunk, length: number): ChunkRef {
    const { uploaded, ref, durable } = staged;
    if (ref.pack !== undefined) this.durable.add(durable);
    if (uploaded) this.count({ chunksUploaded: 1, bytesUploaded: ref.stored });
    else this.count({ chunksDeduplicated: 1, bytesDeduplicated: length });
    return ref;
  }

  // Adds to this writer's counters and the store's.
  private count(add: Partial<ChunkStats>): void {
    for (const stats of [this.stats, this.store.stats]) {
      for (const [key, n] of Object.entries(add) as [keyof ChunkStats, number][]) stats[key] += n;
    }
  }

  private release(length: number): void {
    this.inFlightBytes -= length;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  // Resolves once another chunk fits under maxBufferedBytes; throws the first failure.
  private async waitForRoom(signal?: AbortSignal): Promise<void> {
    while (true) {
      if (this.failure !== undefined) throw this.failure;
      if (signal?.aborted) throw abortError(signal, "Chunk write");
      if (this.inFlightBytes + this.store.chunkSize <= this.store.maxBufferedBytes) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener("abort", done);
          resolve();
        };
        this.waiters.push(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  private async settleAll(): Promise<void> {
    // Jobs never reject (dispatch records their failure), so this waits for all of them.
    while (this.jobs.size > 0) await Promise.all([...this.jobs]);
  }

  private assertWritable(): void {
    if (this.state !== "open") {
      throw new SnapshotError(SnapshotErrorCode.Closed, `Chunk writer is ${this.state}: no more writes`);
    }
    if (this.failure !== undefined) throw this.failure;
  }
}

// `file`'s references grouped by piece of `chunkSize` bytes (null for a piece that a
// reference straddles: written with another chunk size, it cannot be compared).
function piecesOf(file: ChunkedFile, chunkSize: number): (ChunkRef[] | null)[] {
  const pieces: (ChunkRef[] | null)[] = [];
  let at = 0;
  for (const ref of file.chunks) {
    const length = refLength(ref);
    const piece = Math.floor(at / chunkSize);
    while (pieces.length <= piece) pieces.push([]);
    if (Math.floor((at + length - 1) / chunkSize) !== piece) {
      for (let p = piece; p <= Math.floor((at + length - 1) / chunkSize); p++) pieces[p] = null;
    } else pieces[piece]?.push(ref);
    at += length;
  }
  return pieces;
}
