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
import { isNotFound, type ListedObject, listObjects, s3Error } from "../s3/s3-util.js";
import type { ChunkedFile, ChunkRef, ChunkStoreLike } from "../types.js";
import { raceSignal } from "../util/race-signal.js";
import {
  CHUNK_HEADER_BYTES,
  chunkKey,
  hashFromKey,
  readChunkHeader,
  writeChunkHeader,
} from "./chunk-format.js";
import { ChunkIndex } from "./chunk-index.js";
import { ChunkReaderImpl, type ChunkReaderOptions } from "./chunk-reader.js";
import { type ChunkStats, emptyStats } from "./chunk-stats.js";
import { ChunkWriterImpl, type ChunkWriterOptions } from "./chunk-writer.js";
import { CodecJobError, CodecPool, type EncodedChunk } from "./codec-pool.js";

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
  // Compression worker threads. Default: cores - 1, between 1 and 4.
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
  // Cancels every operation of the store (each call may also take its own signal).
  signal?: AbortSignal;
  logger?: Logger;
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
    this.downloadLimit = pLimit(options.downloadConcurrency ?? 16);
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

  // A reader of `file` at any offset.
  openReader(file: ChunkedFile, options: ChunkReaderOptions = {}): ChunkReaderImpl {
    this.assertOpen();
    return new ChunkReaderImpl(this, file, options);
  }

  // The S3 key of chunk `hash`.
  keyOf(hash: string): string {
    return chunkKey(this.prefix, hash);
  }

  // Hashes and compresses one chunk in the worker pool; `buffer` is transferred.
  encode(buffer: ArrayBuffer, length: number, signal?: AbortSignal): Promise<EncodedChunk> {
    return this.pool.encode(buffer, length, this.combine(signal));
  }

  // Uploads an encoded chunk unless the store has it. Returns whether it was uploaded.
  async putIfAbsent(chunk: EncodedChunk, size: number, signal?: AbortSignal): Promise<boolean> {
    const s = this.combine(signal);
    await this.index.ready({ signal: s });
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
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.keyOf(chunk.hash),
            Body: chunk.object,
            ContentLength: chunk.object.length,
            ContentType: "application/octet-stream",
            Metadata: { "snap-codec": chunk.codec === 1 ? "zstd" : "none", "snap-size": String(size) },
          }),
          { abortSignal: s },
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

  // Downloads, decodes and verifies chunk `ref` without the cache (used to verify snapshots).
  async fetchChunk(ref: ChunkRef, signal?: AbortSignal): Promise<Buffer> {
    const s = this.combine(signal);
    const object = await this.downloadLimit(() => this.download(ref.hash, s));
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
        const r = await this.client.send(
          new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(hash) }),
          {
            abortSignal: s,
          },
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

  private async download(hash: string, signal?: AbortSignal): Promise<Uint8Array> {
    const key = this.keyOf(hash);
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      if (!r.Body) throw new Error("empty response body");
      return await r.Body.transformToByteArray();
    } catch (err) {
      if (isNotFound(err)) {
        this.index.delete(hash);
        throw new SnapshotError(
          SnapshotErrorCode.MissingChunk,
          `Chunk ${hash} is missing from s3://${this.bucket}/${key}`,
          { hash, cause: err },
        );
      }
      throw s3Error(err, `Download of chunk ${hash} from s3://${this.bucket}/${key}`, signal);
    }
  }
}
