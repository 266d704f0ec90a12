import { randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { LRUCache } from "lru-cache";
import pLimit, { type LimitFunction } from "p-limit";
import type { Logger } from "../../common/log.js";
import { silentLogger } from "../../common/log.js";
import { SnapshotError, SnapshotErrorCode, throwIfAborted } from "../errors.js";
import {
  isNotFound,
  type ListedObject,
  listObjects,
  s3Error,
  withRetries,
  withUnsignedPayload,
} from "../s3/s3-util.js";
import type { ChunkedFile, ChunkRef, ChunkStoreLike, QuickHashedFile } from "../types.js";
import { raceSignal } from "../util/race-signal.js";
import {
  CHUNK_HEADER_BYTES,
  ChunkCodec,
  chunkKey,
  hashFromKey,
  readChunkHeader,
  writeChunkHeader,
} from "./chunk-format.js";
import { ChunkIndex } from "./chunk-index.js";
import { ChunkReaderImpl, type ChunkReaderOptions } from "./chunk-reader.js";
import { type ChunkStats, emptyStats } from "./chunk-stats.js";
import { ChunkWriterImpl, type ChunkWriterOptions } from "./chunk-writer.js";
import { CodecJobError, CodecPool, type EncodedChunk, PAGE_BYTES } from "./codec-pool.js";
import { SharedBufferPool } from "./shared-buffers.js";

// 256 KiB: measured by store/bench-chunk-size.ts (see docs/snapshot-format.md). With
// ~10% of a memory image's pages changed in scattered runs, 1 MiB and 4 MiB chunks
// re-upload most of the image; 256 KiB re-uploads ~15% at an acceptable request count,
// and a lazy-restore page fault fetches 256 KiB instead of megabytes.
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

export interface ChunkStoreOptions {
  client: S3Client;
  bucket: string;
  // Key prefix of the chunk objects, e.g. "<workdir>/.snapshots/chunks/" (ends with "/").
  prefix: string;
  // Uncompressed bytes per chunk, a multiple of 4096 (pages). Default DEFAULT_CHUNK_SIZE.
  chunkSize?: number;
  // zstd level. Default 3.
  compressionLevel?: number;
  // Hashing and compression worker threads. Default: the cores, at most 4 (see CodecPool).
  codecThreads?: number;
  // PUTs in flight across all writers of this store. Default 8.
  uploadConcurrency?: number;
  // GETs in flight across all readers of this store. Default 16.
  downloadConcurrency?: number;
  // Per writer: uncompressed bytes accepted but not yet uploaded. write() waits above it.
  // A writer holds at most maxBufferedBytes + chunkSize. Default 64 MiB.
  maxBufferedBytes?: number;
  // Decompressed chunks kept for readers (LRU, shared by all readers). Default 64 MiB.
  cacheBytes?: number;
  // Chunks fetched ahead of a sequential reader. Default 16 (4 MiB at 256 KiB chunks):
  // with ~20 ms per GET, fewer leave a sequential restore latency-bound.
  readAheadChunks?: number;
  // Pack new chunks into objects of about this many stored bytes instead of one object per
  // chunk (0: one object per chunk, the schema-1 layout). A request per chunk is what
  // limits an S3 endpoint (and what S3 bills); packs turn thousands of small PUTs into a
  // few large ones. Default 0 here; createSnapshotStore (criu/) uses 8 MiB.
  packSize?: number;
  // Packs sealed and not yet uploaded, at most (writers wait above it). Default:
  // uploadConcurrency + 2.
  maxPacksInFlight?: number;
  // Cancels every operation of the store (each call may also take its own signal).
  signal?: AbortSignal;
  logger?: Logger;
}

// Where a chunk staged into a pack lives, and when that pack is durable in S3.
interface PackedChunk {
  pack: string;
  offset: number;
  stored: number;
  durable: Promise<void>;
}

// The pack being filled: stored chunk bytes appended in order.
interface OpenPack {
  id: string;
  // The pack's bytes: each chunk's stored object is copied in as it is staged.
  body: Buffer<SharedArrayBuffer>;
  bytes: number;
  durable: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
  hashes: string[];
}

// One chunk of a batch: one the store already has, or its encoded form for putIfAbsent.
export type BatchChunk = { known: StagedChunk } | { encoded: EncodedChunk };

// What encodeBatch made of one piece (chunkSize bytes) of a batch:
// - "same": unchanged since the previous generation (its quick hashes): reuse what was there;
// - "chunk": the whole piece as one chunk;
// - "split": only the runs of pages that changed, each as a chunk (start and length in the
//   piece); the rest is the previous generation's bytes there.
export type BatchPiece =
  | { kind: "same" }
  | { kind: "chunk"; result: BatchChunk }
  | { kind: "split"; runs: { start: number; length: number; result: BatchChunk }[] };

// What putIfAbsent did with a chunk, and where the chunk now is.
export interface StagedChunk {
  uploaded: boolean;
  ref: ChunkRef;
  // Resolves when the chunk is durable in S3 (at once for a chunk the store already had).
  durable: Promise<void>;
}

// The content-addressed chunk store: writers cut files into chunks, hash and compress them
// off the main thread and upload only chunks the store does not have; readers fetch,
// verify and decompress chunks at any offset.
export class ChunkStore implements ChunkStoreLike {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly chunkSize: number;
  readonly maxBufferedBytes: number;
  readonly readAheadChunks: number;
  readonly signal?: AbortSignal;
  readonly logger: Logger;
  readonly stats: ChunkStats = emptyStats();
  private readonly pool: CodecPool;
  private readonly index: ChunkIndex;
  private readonly uploadLimit: LimitFunction;
  private readonly downloadLimit: LimitFunction;
  private readonly cache: LRUCache<string, Buffer>;
  private readonly loading = new Map<string, Promise<Buffer>>();
  private readonly uploading = new Map<string, Promise<void>>();
  // Chunks this process uploaded or saw with HEAD (as opposed to known only from the listing).
  private readonly confirmed = new Set<string>();
  readonly packSize: number;
  private readonly maxPacksInFlight: number;
  // Chunks known to be in packs (written by this process, or learnt from manifests).
  private readonly packed = new Map<string, PackedChunk>();
  private open: OpenPack | undefined;
  private packsInFlight = 0;
  private packWaiters: (() => void)[] = [];
  // Bodies of uploaded packs (see packBody), writers' batch buffers (see takeBatchBuffer),
  // and the bodies and decoded bytes of fetchRunLent's GETs, reused.
  private readonly packBodies: SharedBufferPool;
  private readonly batchBuffers: SharedBufferPool;
  private readonly runBuffers = new SharedBufferPool(16);
  private closed = false;

  constructor(options: ChunkStoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 4096 || this.chunkSize % 4096 !== 0) {
      throw new SnapshotError(
        SnapshotErrorCode.InvalidArgument,
        `chunkSize must be a positive multiple of 4096, got ${options.chunkSize}`,
      );
    }
    if (this.chunkSize > 64 * 1024 * 1024) {
      throw new SnapshotError(
        SnapshotErrorCode.InvalidArgument,
        `chunkSize must be <= 64 MiB, got ${this.chunkSize}`,
      );
    }
    this.maxBufferedBytes = Math.max(options.maxBufferedBytes ?? 64 * 1024 * 1024, this.chunkSize);
    this.readAheadChunks = options.readAheadChunks ?? 16;
    if (options.signal) this.signal = options.signal;
    this.logger = options.logger ?? silentLogger;
    this.pool = new CodecPool({
      threads: options.codecThreads,
      compressionLevel: options.compressionLevel ?? 3,
    });
    this.index = new ChunkIndex(this.client, this.bucket, this.prefix);
    this.uploadLimit = pLimit(options.uploadConcurrency ?? 8);
    this.packSize = options.packSize ?? 0;
    this.maxPacksInFlight = options.maxPacksInFlight ?? (options.uploadConcurrency ?? 8) + 2;
    this.downloadLimit = pLimit(options.downloadConcurrency ?? 16);
    this.packBodies = new SharedBufferPool(this.maxPacksInFlight);
    // As many as a writer can have in flight (maxBufferedBytes), plus one.
    this.batchBuffers = new SharedBufferPool(
      Math.ceil(this.maxBufferedBytes / (this.chunkSize * this.batchChunks)) + 1,
    );
    this.cache = new LRUCache<string, Buffer>({
      maxSize: options.cacheBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (b) => Math.max(1, b.length),
    });
  }

  // A new writer for one file. Write sequentially, then finish() for its chunk list.
  createWriter(options: ChunkWriterOptions = {}): ChunkWriterImpl {
    this.assertOpen();
    return new ChunkWriterImpl(this, options);
  }

  // Writes a whole stream (a file's read stream, a CRIU image) as one chunked file.
  async writeFrom(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: ChunkWriterOptions = {},
  ): Promise<{ file: ChunkedFile; stats: ChunkStats }> {
    const writer = this.createWriter(options);
    try {
      for await (const data of source) await writer.write(data, options);
      return { file: await writer.finish(options), stats: { ...writer.stats } };
    } catch (err) {
      await writer.abort(err);
      throw err;
    }
  }

  // Chunks the file at `path`, read straight into the writer's chunk buffers.
  async writeFile(
    path: string,
    options: ChunkWriterOptions = {},
  ): Promise<{ file: ChunkedFile; stats: ChunkStats; quickHashed?: QuickHashedFile }> {
    const writer = this.createWriter(options);
    try {
      const handle = await open(path, "r");
      try {
        await writer.fill(
          async (target) => (await handle.read(target, 0, target.length, null)).bytesRead,
          options,
        );
      } finally {
        await handle.close();
      }
      const file = await writer.finish(options);
      const quickHashed = writer.quickHashed;
      return { file, stats: { ...writer.stats }, ...(quickHashed ? { quickHashed } : {}) };
    } catch (err) {
      await writer.abort(err);
      throw err;
    }
  }

  // A reader of `file` at any offset.
  openReader(file: ChunkedFile, options: ChunkReaderOptions = {}): ChunkReaderImpl {
    this.assertOpen();
    return new ChunkReaderImpl(this, file, options);
  }

  // The S3 key of chunk `hash`.
  keyOf(hash: string): string {
    return chunkKey(this.prefix, hash);
  }

  // Hashes and compresses one chunk in the worker pool (`buffer` read in place).
  encode(buffer: SharedArrayBuffer, length: number, signal?: AbortSignal): Promise<EncodedChunk> {
    return this.pool.encode(buffer, length, this.combine(signal));
  }

  // Chunks per writer dispatch: with packs, 4 MiB of chunks travel to a worker in one
  // message. Each message costs the main thread a thread wake-up (0.1-0.2 ms on 2 shared
  // cores): at 1 MiB, postMessage was 11% of the main thread of a 4 GiB incremental.
  get batchChunks(): number {
    return this.packSize > 0 ? Math.max(1, Math.floor((4 * 1024 * 1024) / this.chunkSize)) : 1;
  }

  // With packs, for a batch of chunks cut from `buffer` (read in place by the workers):
  // hashes them all in one worker message, then compresses (in one more) only those the
  // store does not know. Returns, per piece of the batch, what became of it (see
  // BatchPiece), and `release()`, to call once every new chunk is staged (their objects'
  // buffer then serves another batch).
  // With `quick`, also the batch's quick hashes (one per page); pieces are compared with
  // `quick.previous` as CodecPool.hashMany says.
  async encodeBatch(
    buffer: SharedArrayBuffer,
    length: number,
    signal?: AbortSignal,
    quick?: { previous?: Buffer; usable?: boolean[]; split?: boolean[] },
  ): Promise<{ pieces: BatchPiece[]; release: () => void; quick?: Buffer }> {
    const s = this.combine(signal);
    const {
      hashes,
      splits,
      quick: quickHashes,
    } = await this.pool.hashMany(buffer, length, this.chunkSize, s, quick);
    const pieces: BatchPiece[] = [];
    // Chunks to compress: where they are in the buffer, and where their result goes.
    const ranges: [number, number][] = [];
    const targets: { hash: string; set: (result: BatchChunk) => void }[] = [];
    const place = (hash: string, start: number, size: number, set: (result: BatchChunk) => void) => {
      const known = this.packed.get(hash);
      if (known) set({ known: fromPack(hash, size, known) });
      else {
        ranges.push([start, size]);
        targets.push({ hash, set });
      }
    };
    for (const [i, hash] of hashes.entries()) {
      const at = i * this.chunkSize;
      const size = Math.min(this.chunkSize, length - at);
      const runs = splits[i];
      if (runs) {
        const piece: BatchPiece & { kind: "split" } = { kind: "split", runs: [] };
        for (const [page, pages, runHash] of runs) {
          const start = page * PAGE_BYTES;
          const run = { start, length: Math.min(size, start + pages * PAGE_BYTES) - start } as {
            start: number;
            length: number;
            result: BatchChunk;
          };
          piece.runs.push(run);
          place(runHash, at + start, run.length, (result) => {
            run.result = result;
          });
        }
        pieces.push(piece);
      } else if (hash === "") pieces.push({ kind: "same" });
      else {
        const piece = { kind: "chunk" } as BatchPiece & { kind: "chunk" };
        pieces.push(piece);
        place(hash, at, size, (result) => {
          piece.result = result;
        });
      }
    }
    let release = () => {};
    if (ranges.length > 0) {
      const compressed = await this.pool.compressMany(buffer, ranges, s);
      release = compressed.release;
      for (const [k, target] of targets.entries()) {
        const e = compressed.encoded[k] as { codec: EncodedChunk["codec"]; object: Buffer };
        target.set({ encoded: { hash: target.hash, codec: e.codec, object: e.object } });
      }
    }
    return { pieces, release, ...(quickHashes ? { quick: quickHashes } : {}) };
  }

  // Stores an encoded chunk unless the store has it: as an object of its own, or appended
  // to the open pack (durable once that pack is uploaded; flush() seals it early).
  async putIfAbsent(chunk: EncodedChunk, size: number, signal?: AbortSignal): Promise<StagedChunk> {
    const s = this.combine(signal);
    await this.index.ready({ signal: s });
    const plain = { hash: chunk.hash, size, stored: chunk.object.length };
    const known = this.packed.get(chunk.hash);
    if (known) return fromPack(chunk.hash, size, known);
    if (this.index.has(chunk.hash) || this.uploading.has(chunk.hash) || this.packSize <= 0) {
      const uploaded = await this.putObject(chunk, size, s);
      return { uploaded, ref: plain, durable: Promise.resolve() };
    }
    writeChunkHeader(chunk.object, { codec: chunk.codec, size });
    let open = this.open;
    // (Never at the defaults: a pack is sealed once it holds packSize bytes, and an object
    // is at most a chunk and its header, which packBody leaves room for.)
    if (open && open.bytes + chunk.object.length > open.body.length) {
      this.seal();
      open = undefined;
    }
    if (!open) {
      await this.waitForPackRoom(s);
      // Another writer may have opened a pack, or staged this chunk, while we waited.
      const again = this.packed.get(chunk.hash);
      if (again) return fromPack(chunk.hash, size, again);
      open = this.open ?? this.openPack();
    }
    if (open.bytes + chunk.object.length > open.body.length)
      throw new Error(`BUG: a ${chunk.object.length}-byte object does not fit in an empty pack`);
    const offset = open.bytes;
    chunk.object.copy(open.body, offset);
    open.bytes += chunk.object.length;
    open.hashes.push(chunk.hash);
    const entry = { pack: open.id, offset, stored: chunk.object.length, durable: open.durable };
    this.packed.set(chunk.hash, entry);
    if (open.bytes >= this.packSize) this.seal();
    return { uploaded: true, ref: { ...plain, pack: open.id, offset }, durable: open.durable };
  }

  // Seals the open pack (if any) so that it uploads now rather than when full.
  flush(): void {
    if (this.open && this.open.bytes > 0) this.seal();
  }

  // Records where the chunks of `files` are stored (a parent snapshot's manifest), so that
  // writers deduplicate against chunks in packs, which the chunk listing cannot name.
  learn(files: Iterable<{ chunks: ChunkRef[] }>): void {
    for (const file of files) {
      for (const ref of file.chunks) {
        if (ref.pack === undefined || ref.offset === undefined || this.packed.has(ref.hash)) continue;
        this.packed.set(ref.hash, {
          pack: ref.pack,
          offset: ref.offset,
          stored: ref.stored,
          durable: Promise.resolve(),
        });
      }
    }
  }

  // Chunks known to be in packs.
  get knownPackedChunks(): number {
    return this.packed.size;
  }

  private openPack(): OpenPack {
    let resolve = () => {};
    let reject: (err: unknown) => void = () => {};
    const durable = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Writers await it; a failure nobody awaits must not be an unhandled rejection.
    durable.catch(() => {});
    const pack: OpenPack = {
      id: randomBytes(32).toString("hex"),
      body: this.packBody(),
      bytes: 0,
      durable,
      resolve,
      reject,
      hashes: [],
    };
    this.open = pack;
    return pack;
  }

  private seal(): void {
    const pack = this.open;
    if (!pack) return;
    this.open = undefined;
    this.packsInFlight++;
    const body = pack.body.subarray(0, pack.bytes);
    const key = this.keyOf(pack.id);
    this.uploadLimit(async () => {
      throwIfAborted(this.signal, `Upload of pack ${pack.id}`);
      try {
        // The body's CRC-32, computed by a codec worker, goes as x-amz-checksum-crc32 (S3
        // refuses a pack damaged on the way: BadDigest), and the request is signed without
        // its payload: a SigV4 payload hash was one more SHA-256 of every uploaded byte
        // (1.5 GB/s here, against 4 GB/s for CRC-32), and the SDK would compute it on the
        // event loop. Chunks are verified by their SHA-256 whenever they are read anyway.
        const crc = Buffer.alloc(4);
        crc.writeUInt32BE(await this.pool.crc32(body.buffer, body.length, this.signal));
        await withRetries(
          () => {
            const put = new PutObjectCommand({
              Bucket: this.bucket,
              Key: key,
              Body: body,
              ContentLength: body.length,
              ContentType: "application/octet-stream",
              ChecksumCRC32: crc.toString("base64"),
              Metadata: { "snap-pack": String(pack.hashes.length) },
            });
            put.middlewareStack.add(withUnsignedPayload(), { step: "build", name: "snapUnsignedPayload" });
            return this.client.send(put, this.signal ? { abortSignal: this.signal } : {});
          },
          this.signal ? { signal: this.signal } : {},
        );
      } catch (err) {
        throw s3Error(
          err,
          `Upload of pack ${pack.id} (${pack.hashes.length} chunks) to s3://${this.bucket}/${key}`,
          this.signal,
        );
      }
    }).then(
      () => {
        // A failed request may still hold its body: only a successful one is reused.
        this.packBodies.give(body.buffer);
        this.index.add(pack.id);
        this.confirmed.add(pack.id);
        pack.resolve();
        this.packDone();
      },
      (err: unknown) => {
        // Its chunks are not in S3: forget them so that the next writer uploads them again.
        for (const h of pack.hashes) if (this.packed.get(h)?.pack === pack.id) this.packed.delete(h);
        pack.reject(err);
        this.packDone();
      },
    );
  }

  // A buffer for a writer's batch (batchChunks chunks, `batchBytes`), shared with the codec
  // workers rather than transferred: each transferred buffer that came back counted as new
  // external memory, and the main thread's garbage collector ran for every few tens of MiB
  // of image. Reused across writers: a fresh one page-faults in every byte (zeroing the 17
  // buffers a checkpoint starts with showed as about 85 ms of the main thread in one CPU
  // profile of a 1 GiB incremental; no difference in time was measured).
  takeBatchBuffer(): SharedArrayBuffer {
    return this.batchBuffers.take(this.batchBytes);
  }

  // Gives back a batch buffer no job uses any more.
  giveBatchBuffer(buffer: SharedArrayBuffer): void {
    this.batchBuffers.give(buffer);
  }

  get batchBytes(): number {
    return this.chunkSize * this.batchChunks;
  }

  // A pack's body, room for packSize bytes and one more chunk: from the bodies of packs
  // already uploaded when there is one. A fresh 8 MiB body per pack, handed to a worker for
  // its CRC-32, counted as new external memory each time, and the main thread's garbage
  // collector ran for every few tens of MiB uploaded (see docs/snapshot-format.md). Shared,
  // so the worker reads it in place.
  private packBody(): Buffer<SharedArrayBuffer> {
    const capacity = this.packSize + this.chunkSize + CHUNK_HEADER_BYTES;
    return Buffer.from(this.packBodies.take(capacity), 0, capacity);
  }

  private packDone(): void {
    this.packsInFlight--;
    const waiters = this.packWaiters;
    this.packWaiters = [];
    for (const w of waiters) w();
  }

  // Waits until a new pack may be opened (sealed packs in flight under the bound).
  private async waitForPackRoom(signal?: AbortSignal): Promise<void> {
    while (this.packsInFlight >= this.maxPacksInFlight) {
      throwIfAborted(signal, "Chunk upload");
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener("abort", done);
          resolve();
        };
        this.packWaiters.push(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  // Uploads a chunk as an object of its own unless the store has it; whether it uploaded.
  private async putObject(chunk: EncodedChunk, size: number, s?: AbortSignal): Promise<boolean> {
    if (this.index.has(chunk.hash)) return false;
    const pending = this.uploading.get(chunk.hash);
    if (pending) {
      await pending;
      return false;
    }
    writeChunkHeader(chunk.object, { codec: chunk.codec, size });
    const upload = this.uploadLimit(async () => {
      throwIfAborted(s, `Upload of chunk ${chunk.hash}`);
      try {
        await withRetries(
          () =>
            this.client.send(
              new PutObjectCommand({
                Bucket: this.bucket,
                Key: this.keyOf(chunk.hash),
                Body: chunk.object,
                ContentLength: chunk.object.length,
                ContentType: "application/octet-stream",
                Metadata: { "snap-codec": chunk.codec === 1 ? "zstd" : "none", "snap-size": String(size) },
              }),
              { abortSignal: s },
            ),
          s ? { signal: s } : {},
        );
      } catch (err) {
        throw s3Error(
          err,
          `Upload of chunk ${chunk.hash} to s3://${this.bucket}/${this.keyOf(chunk.hash)}`,
          s,
        );
      }
      this.index.add(chunk.hash);
      this.confirmed.add(chunk.hash);
    });
    this.uploading.set(chunk.hash, upload);
    try {
      await upload;
    } finally {
      this.uploading.delete(chunk.hash);
    }
    return true;
  }

  // The decompressed, verified bytes of chunk `ref`, from the cache or S3.
  // Concurrent callers share one download, which only the store's signal cancels; a
  // caller's own signal stops that caller waiting.
  loadChunk(ref: ChunkRef, signal?: AbortSignal): Promise<Buffer> {
    const cached = this.cache.get(ref.hash);
    if (cached) return Promise.resolve(cached);
    let pending = this.loading.get(ref.hash);
    if (!pending) {
      pending = this.fetchChunk(ref).then((data) => {
        this.cache.set(ref.hash, data);
        return data;
      });
      const p = pending;
      this.loading.set(ref.hash, p);
      // The map entry's owner: it only clears the entry; callers see the error.
      p.then(
        () => this.loading.delete(ref.hash),
        () => this.loading.delete(ref.hash),
      );
    }
    return raceSignal(pending, signal, `Read of chunk ${ref.hash}`);
  }

  // Lists the chunk prefix now (memoized) rather than at the first upload: an agent calls
  // it at start so that the first snapshot after a spot notice does not wait for it.
  ready(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.index.ready({ signal: this.combine(options.signal) });
  }

  // Number of chunks known to be in the store.
  get knownChunks(): number {
    return this.index.size;
  }

  // Loads a chunk into the cache in the background; a failure is left for the real read.
  prefetch(ref: ChunkRef): void {
    if (this.cache.has(ref.hash) || this.loading.has(ref.hash) || this.closed) return;
    this.loadChunk(ref).catch((err: unknown) => {
      this.logger.debug({ hash: ref.hash, err }, "chunk read-ahead failed");
    });
  }

  // Loads chunks into the cache in the background in few ranged GETs: chunks stored back
  // to back in one pack come in one request of up to `maxRunBytes` (several requests in
  // parallel for a long window). A failure is left for the real read.
  prefetchRun(refs: ChunkRef[], maxRunBytes = 1024 * 1024): void {
    if (this.closed) return;
    // Once per chunk: slices of one chunk may follow each other.
    const wanted = [...new Map(refs.map((r) => [r.hash, r])).values()].filter(
      (r) => !this.cache.has(r.hash) && !this.loading.has(r.hash),
    );
    for (const run of spanRuns(wanted, maxRunBytes, 0)) {
      if (run.length === 1) this.prefetch(run[0] as ChunkRef);
      else this.loadRun(run);
    }
  }

  // Fetches, decodes and verifies a run of chunks (one ranged GET when they lie back to
  // back in a pack, see spanRuns); without the cache, for bulk downloads.
  async fetchRun(run: ChunkRef[], signal?: AbortSignal): Promise<Buffer[]> {
    return await this.fetchRunInto(run, (bytes) => new SharedArrayBuffer(bytes), signal);
  }

  // fetchRun with the run's bytes in buffers lent by the store: `release()` gives them back
  // once the caller is done with `data` (which must not be used after). For bulk downloads
  // that write each run out and forget it (downloadImageDir).
  async fetchRunLent(
    run: ChunkRef[],
    signal?: AbortSignal,
  ): Promise<{ data: Buffer[]; release: () => void }> {
    const taken: SharedArrayBuffer[] = [];
    const take = (bytes: number) => {
      const buffer = this.runBuffers.take(bytes);
      taken.push(buffer);
      return buffer;
    };
    // On a failure the buffers are not given back: a worker may still read them.
    const data = await this.fetchRunInto(run, take, signal);
    let released = false;
    return {
      data,
      release: () => {
        if (released) return;
        released = true;
        for (const buffer of taken) this.runBuffers.give(buffer);
      },
    };
  }

  private async fetchRunInto(
    run: ChunkRef[],
    take: (bytes: number) => SharedArrayBuffer,
    signal?: AbortSignal,
  ): Promise<Buffer[]> {
    const first = run[0];
    if (!first) return [];
    if (run.length === 1) return [await this.fetchChunk(first, signal)];
    const s = this.combine(signal);
    const start = Math.min(...run.map((r) => r.offset as number));
    const end = Math.max(...run.map((r) => (r.offset as number) + r.stored));
    const span = { ...first, size: 0, offset: start, stored: end - start };
    // The GET's body goes straight into a shared buffer, which the worker reads in place.
    const body = take(span.stored);
    const all = await this.downloadLimit(() => this.download(span, s, Buffer.from(body, 0, span.stored)));
    // Headers checked here, payloads decoded and hashed by a worker in one message; the
    // compressed ones decompressed into `out`, with room for each one's size.
    const offsets: number[] = [];
    let outBytes = 0;
    const entries = run.map((ref) => {
      const from = (ref.offset as number) - start;
      const header = readChunkHeader(all.subarray(from, from + ref.stored), ref.hash);
      const length = Math.max(0, Math.min(ref.stored, all.length - from) - CHUNK_HEADER_BYTES);
      offsets.push(outBytes);
      if (header.codec === ChunkCodec.Zstd) outBytes += ref.size;
      return {
        start: from + CHUNK_HEADER_BYTES,
        length,
        codec: header.codec,
        size: ref.size,
        header: header.size,
      };
    });
    const out = outBytes > 0 ? take(outBytes) : new SharedArrayBuffer(0);
    const decoded = await this.pool.decodeMany(body, entries, out, offsets, s);
    return run.map((ref, i) => {
      const d = decoded[i] as { hash: string; size: number; data: Buffer; error: string | null };
      if (d.error !== null) {
        throw new SnapshotError(
          SnapshotErrorCode.CorruptChunk,
          `Chunk ${ref.hash} is damaged: it does not decompress (${d.error})`,
          { hash: ref.hash },
        );
      }
      if (
        d.hash !== ref.hash ||
        d.size !== ref.size ||
        (entries[i] as { header: number }).header !== ref.size
      ) {
        throw new SnapshotError(
          SnapshotErrorCode.CorruptChunk,
          `Chunk ${ref.hash} failed its checksum: its ${d.size} bytes hash to ${d.hash}`,
          { hash: ref.hash },
        );
      }
      return d.data;
    });
  }

  // One ranged GET for a run of adjacent chunks in a pack; each chunk decoded and verified
  // on its own, and shared with concurrent readers through `loading`.
  private loadRun(run: ChunkRef[]): void {
    const all = this.fetchRun(run, this.signal);
    all.catch(() => {});
    for (const [i, ref] of run.entries()) {
      const p = all.then((list) => {
        const data = list[i] as Buffer;
        this.cache.set(ref.hash, data);
        return data;
      });
      this.loading.set(ref.hash, p);
      p.then(
        () => this.loading.delete(ref.hash),
        (err: unknown) => {
          this.loading.delete(ref.hash);
          this.logger.debug({ hash: ref.hash, err }, "chunk read-ahead failed");
        },
      );
    }
  }

  // Downloads, decodes and verifies chunk `ref` without the cache (used to verify snapshots).
  async fetchChunk(ref: ChunkRef, signal?: AbortSignal): Promise<Buffer> {
    const s = this.combine(signal);
    const object = await this.downloadLimit(() => this.download(ref, s));
    return await this.decodeVerified(ref, object, s);
  }

  // Decodes a chunk's stored bytes and checks them against its hash and size.
  private async decodeVerified(ref: ChunkRef, object: Uint8Array, s?: AbortSignal): Promise<Buffer> {
    const header = readChunkHeader(object, ref.hash);
    let decoded: { hash: string; data: Buffer };
    try {
      decoded = await this.pool.decode(object.subarray(CHUNK_HEADER_BYTES), header.codec, s);
    } catch (err) {
      if (!(err instanceof CodecJobError)) throw err;
      throw new SnapshotError(
        SnapshotErrorCode.CorruptChunk,
        `Chunk ${ref.hash} is damaged: it does not decompress (${(err as Error).message})`,
        { hash: ref.hash, cause: err },
      );
    }
    if (decoded.hash !== ref.hash || decoded.data.length !== ref.size || header.size !== ref.size) {
      throw new SnapshotError(
        SnapshotErrorCode.CorruptChunk,
        `Chunk ${ref.hash} failed its checksum: its ${decoded.data.length} bytes hash to ${decoded.hash}`,
        { hash: ref.hash },
      );
    }
    return decoded.data;
  }

  // HEADs chunk `hash`: its stored size, or undefined when it is not in S3.
  async headChunk(hash: string, signal?: AbortSignal): Promise<number | undefined> {
    const s = this.combine(signal);
    return this.downloadLimit(async () => {
      try {
        const r = await withRetries(
          () =>
            this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(hash) }), {
              abortSignal: s,
            }),
          s ? { signal: s } : {},
        );
        this.index.add(hash);
        this.confirmed.add(hash);
        return r.ContentLength ?? 0;
      } catch (err) {
        if (isNotFound(err)) {
          this.index.delete(hash);
          return undefined;
        }
        throw s3Error(err, `HEAD of chunk ${hash}`, s);
      }
    });
  }

  // Whether the store has chunk `hash`: the known set, else a HEAD. With `confirm`,
  // a chunk known only from the listing at start is HEADed again.
  async has(hash: string, options: { signal?: AbortSignal; confirm?: boolean } = {}): Promise<boolean> {
    await this.index.ready({ signal: this.combine(options.signal) });
    if (this.confirmed.has(hash)) return true;
    if (this.index.has(hash) && !options.confirm) return true;
    return (await this.headChunk(hash, options.signal)) !== undefined;
  }

  // Every chunk object in S3 (for GC), with its hash.
  async *listChunks(options: { signal?: AbortSignal } = {}): AsyncGenerator<ListedObject & { hash: string }> {
    for await (const object of listObjects(this.client, this.bucket, this.prefix, {
      signal: this.combine(options.signal),
    })) {
      const hash = hashFromKey(this.prefix, object.key);
      if (hash) yield { ...object, hash };
    }
  }

  // Deletes chunks (up to 1000 per request) and forgets them.
  async deleteChunks(hashes: string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    const s = this.combine(options.signal);
    for (let i = 0; i < hashes.length; i += 1000) {
      const batch = hashes.slice(i, i + 1000);
      let result: { Errors?: { Key?: string; Message?: string }[] };
      try {
        result = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((h) => ({ Key: this.keyOf(h) })), Quiet: true },
          }),
          { abortSignal: s },
        );
      } catch (err) {
        throw s3Error(err, `Deleting ${batch.length} chunks under s3://${this.bucket}/${this.prefix}`, s);
      }
      for (const h of batch) {
        this.index.delete(h);
        this.confirmed.delete(h);
        this.cache.delete(h);
      }
      const first = result.Errors?.[0];
      if (first) {
        throw new SnapshotError(
          SnapshotErrorCode.S3Failed,
          `Deleting chunk ${first.Key} failed: ${first.Message} (${result.Errors?.length} errors)`,
          { retryable: true },
        );
      }
    }
  }

  // Stops the worker threads; readers and writers fail afterwards. Idempotent.
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cache.clear();
    for (const buffers of [this.packBodies, this.batchBuffers, this.runBuffers]) buffers.clear();
    await this.pool.close();
  }

  // The store-wide signal combined with a call's own.
  combine(signal?: AbortSignal): AbortSignal | undefined {
    if (!signal) return this.signal;
    if (!this.signal) return signal;
    return AbortSignal.any([this.signal, signal]);
  }

  private assertOpen(): void {
    if (this.closed) throw new SnapshotError(SnapshotErrorCode.Closed, "The chunk store is closed");
  }

  // The chunk's stored bytes (or a pack's, for a span of it); with `into`, read into it
  // (which must be big enough) and returned as a view of it.
  private async download(ref: ChunkRef, signal?: AbortSignal, into?: Buffer): Promise<Uint8Array> {
    const { hash } = ref;
    const packed = ref.pack !== undefined && ref.offset !== undefined;
    const key = this.keyOf(packed ? (ref.pack as string) : hash);
    const where = packed ? `pack s3://${this.bucket}/${key} at ${ref.offset}` : `s3://${this.bucket}/${key}`;
    try {
      // The body is read inside the retried function: a connection that breaks mid-body
      // is retried as well.
      return await withRetries(
        async () => {
          const r = await this.client.send(
            new GetObjectCommand({
              Bucket: this.bucket,
              Key: key,
              ...(packed
                ? { Range: `bytes=${ref.offset}-${(ref.offset as number) + Math.max(ref.stored, 1) - 1}` }
                : {}),
            }),
            { abortSignal: signal },
          );
          if (!r.Body) throw new Error("empty response body");
          if (!into) return await r.Body.transformToByteArray();
          let at = 0;
          for await (const piece of r.Body as AsyncIterable<Uint8Array>) {
            if (at + piece.length > into.length)
              throw new Error(`the response body is longer than the ${into.length} bytes asked for`);
            into.set(piece, at);
            at += piece.length;
          }
          return into.subarray(0, at);
        },
        signal ? { signal } : {},
      );
    } catch (err) {
      if (isNotFound(err) || (packed && isRangeNotSatisfiable(err))) {
        if (!packed) this.index.delete(hash);
        throw new SnapshotError(SnapshotErrorCode.MissingChunk, `Chunk ${hash} is missing from ${where}`, {
          hash,
          cause: err,
        });
      }
      throw s3Error(err, `Download of chunk ${hash} from ${where}`, signal);
    }
  }
}

// S3's answer to a range past the end of an object (a pack shorter than its manifest says).
function isRangeNotSatisfiable(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "InvalidRange" || e.$metadata?.httpStatusCode === 416;
}

// Groups chunk references, in any order, into runs that one ranged GET each can fetch:
// chunks of the same pack sorted by offset, with gaps of at most `maxGapBytes` between
// them (fetched and thrown away: cheaper than another request) and at most `maxRunBytes`
// per request. A chunk stored as its own object is a run by itself.
export function spanRuns<T extends ChunkRef>(refs: T[], maxRunBytes: number, maxGapBytes: number): T[][] {
  const runs: T[][] = [];
  const byPack = new Map<string, T[]>();
  for (const ref of refs) {
    if (ref.pack === undefined || ref.offset === undefined) runs.push([ref]);
    else {
      const list = byPack.get(ref.pack) ?? [];
      list.push(ref);
      byPack.set(ref.pack, list);
    }
  }
  for (const list of byPack.values()) {
    list.sort((a, b) => (a.offset as number) - (b.offset as number));
    let run: T[] = [];
    let start = 0;
    let end = 0;
    for (const ref of list) {
      const offset = ref.offset as number;
      const fits =
        run.length > 0 && offset - end <= maxGapBytes && offset + ref.stored - start <= maxRunBytes;
      if (!fits) {
        if (run.length > 0) runs.push(run);
        run = [];
        start = offset;
        end = offset;
      }
      run.push(ref);
      end = Math.max(end, offset + ref.stored);
    }
    if (run.length > 0) runs.push(run);
  }
  return runs;
}

// A chunk the store already holds in a pack: nothing to upload, durable with that pack.
function fromPack(hash: string, size: number, at: PackedChunk): StagedChunk {
  return {
    uploaded: false,
    ref: { hash, size, stored: at.stored, pack: at.pack, offset: at.offset },
    durable: at.durable,
  };
}
