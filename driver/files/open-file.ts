import { type FileHandle, open, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../common/log.js";
import type { ChunkedFile, ChunkReader, ChunkStoreLike, ChunkWriter } from "../../store/index.js";
import { DriverError, Errno } from "../errors.js";
import type { BlockSource, ObjectVersion } from "../read/block-source.js";
import { FileReader, type FileReaderOptions } from "../read/file-reader.js";
import type { FileMeta } from "../s3/metadata.js";
import { Mutex } from "../util/semaphore.js";
import { MultipartStream, NotSequentialError } from "../write/multipart-stream.js";
import type { UploadContext } from "../write/upload-context.js";
import { uploadFile } from "../write/upload-file.js";

export interface FileContext {
  upload: UploadContext;
  source: BlockSource;
  reader: FileReaderOptions;
  stagingDir: string;
  logger: Logger;
}

// What a flush leaves in S3 (or in the chunk store) for one file.
export interface FileState {
  bucket: string;
  key: string;
  size: number;
  etag: string;
  chunks?: ChunkedFile;
}

let stagingCounter = 0;

// One file while it is open (shared by all its handles). Modes:
// - clean: reads come from the object version `base` through the block cache;
// - stream: a new file being written sequentially, uploaded as it goes;
// - staging: a local copy (read-modify-write), uploaded whole on flush;
// - chunked: written through a chunk store (snapshot areas), or a read-only chunked file.
export class OpenFile {
  refs = 0;
  mode: "clean" | "stream" | "staging" | "chunked" = "clean";
  dirty = false;
  unlinked = false;
  // A GET found the object replaced (412): this version is no longer in S3. Its handles keep
  // it (reads beyond what is cached answer ESTALE); the next open starts a new OpenFile.
  changed = false;
  readonly lock = new Mutex();
  private stream: MultipartStream | undefined;
  private staging: { handle: FileHandle; path: string } | undefined;
  private writer: ChunkWriter | undefined;
  private chunkReader: ChunkReader | undefined;
  chunked: ChunkedFile | undefined;
  private stagedSize = 0;
  mtimeMs = Date.now();
  metaChanged = false;

  constructor(
    private readonly ctx: FileContext,
    public bucket: string,
    public key: string,
    public base: ObjectVersion | undefined,
    public meta: FileMeta,
    readonly chunkStore?: ChunkStoreLike,
    readonly readOnly = false,
  ) {}

  get what(): string {
    return `s3://${this.bucket}/${this.key}`;
  }

  get size(): number {
    switch (this.mode) {
      case "stream":
        return this.stream?.size ?? 0;
      case "staging":
        return this.stagedSize;
      case "chunked":
        return this.writer ? this.writer.size : (this.chunked?.size ?? 0);
      default:
        return this.base?.size ?? 0;
    }
  }

  // A new, empty file: streamed (or chunked) from its first write.
  startNew(): void {
    if (this.chunkStore) {
      this.mode = "chunked";
      this.writer = this.chunkStore.createWriter();
      this.chunked = undefined;
    } else {
      this.mode = "stream";
      this.stream = new MultipartStream(this.ctx.upload, this.bucket, this.key, () => this.meta);
    }
    this.dirty = true;
    this.mtimeMs = Date.now();
  }

  // A handle's reader for the current clean version (made again when the version changed).
  readerFor(current: FileReader | undefined): FileReader | undefined {
    if (!this.base) return undefined;
    if (current && current.object.etag === this.base.etag && current.object.size === this.base.size)
      return current;
    return new FileReader(this.ctx.source, this.base, this.ctx.reader);
  }

  async read(
    handleReader: { reader?: FileReader },
    target: Buffer,
    length: number,
    offset: number,
  ): Promise<number> {
    if (this.mode === "clean") {
      handleReader.reader = this.readerFor(handleReader.reader);
      return handleReader.reader ? await handleReader.reader.read(target, length, offset) : 0;
    }
    return await this.lock.run(async () => {
      if (this.mode === "chunked") return await this.readChunked(target, length, offset);
      if (this.mode === "stream") await this.toStaging();
      if (this.mode === "clean") {
        handleReader.reader = this.readerFor(handleReader.reader);
        return handleReader.reader ? await handleReader.reader.read(target, length, offset) : 0;
      }
      const staging = this.staging as { handle: FileHandle };
      const n = Math.max(0, Math.min(length, this.stagedSize - offset));
      if (n === 0) return 0;
      const { bytesRead } = await staging.handle.read(target, 0, n, offset);
      return bytesRead;
    });
  }

  private async readChunked(target: Buffer, length: number, offset: number): Promise<number> {
    if (this.writer || !this.chunked || !this.chunkStore)
      throw new DriverError(
        "DRIVER_NOT_SUPPORTED",
        `${this.what} is being written as chunks and cannot be read yet`,
      );
    this.chunkReader ??= this.chunkStore.openReader(this.chunked);
    if (offset >= this.chunked.size) return 0;
    const data = await this.chunkReader.read(offset, Math.min(length, this.chunked.size - offset));
    data.copy(target, 0, 0, data.length);
    return data.length;
  }

  // Writes `data` (libfuse memory: copied before this returns) at `offset`.
  async write(data: Buffer, offset: number): Promise<void> {
    await this.lock.run(async () => {
      if (this.readOnly)
        throw new DriverError("DRIVER_NOT_SUPPORTED", `${this.what} is read-only`, { errno: Errno.EROFS });
      this.mtimeMs = Date.now();
      if (this.mode === "chunked") {
        if (!this.writer) this.startNew();
        const writer = this.writer as ChunkWriter;
        if (offset !== writer.size) {
          this.ctx.logger.error(
            { path: this.what, offset, size: writer.size },
            "a file in a chunked area can only be appended to; answering EIO",
          );
          throw new DriverError(
            "DRIVER_CHUNKED_NOT_APPEND",
            `${this.what} is in a chunked area: write at ${offset} is not an append at ${writer.size}`,
          );
        }
        this.dirty = true;
        await writer.write(Buffer.from(data));
        return;
      }
      if (this.mode === "clean" && this.size === 0 && offset === 0) this.startNew();
      if (this.mode === "stream") {
        try {
          await (this.stream as MultipartStream).write(data, offset);
          return;
        } catch (err) {
          if (!(err instanceof NotSequentialError)) throw err;
        }
      }
      if (this.mode !== "staging") await this.toStaging();
      const staging = this.staging as { handle: FileHandle };
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await staging.handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
      this.stagedSize = Math.max(this.stagedSize, offset + data.length);
      this.dirty = true;
    });
  }

  async truncate(size: number): Promise<void> {
    await this.lock.run(async () => {
      if (this.readOnly)
        throw new DriverError("DRIVER_NOT_SUPPORTED", `${this.what} is read-only`, { errno: Errno.EROFS });
      if (size === this.size && (this.mode !== "chunked" || this.writer)) return;
      this.mtimeMs = Date.now();
      if (this.mode === "chunked") {
        if (size !== 0)
          throw new DriverError(
            "DRIVER_CHUNKED_NOT_APPEND",
            `${this.what}: a chunked file can only be truncated to 0`,
          );
        await this.writer?.abort("truncated");
        this.startNew();
        return;
      }
      if (size === 0 && (this.mode === "clean" || (this.mode === "stream" && !this.stream?.started))) {
        await this.stream?.abort();
        this.startNew();
        return;
      }
      if (this.mode !== "staging") await this.toStaging();
      await (this.staging as { handle: FileHandle }).handle.truncate(size);
      this.stagedSize = size;
      this.dirty = true;
    });
  }

  // Moves to a local copy: finishes a stream (so its bytes are in S3), then downloads the object.
  private async toStaging(): Promise<void> {
    if (this.mode === "stream") {
      await this.flushLocked();
    }
    const path = join(this.ctx.stagingDir, `${process.pid}-${++stagingCounter}`);
    const handle = await open(path, "w+");
    this.staging = { handle, path };
    this.stagedSize = 0;
    if (this.base && this.base.size > 0) {
      const reader = new FileReader(this.ctx.source, this.base, this.ctx.reader);
      const step = this.ctx.source.blockSize;
      const buffer = Buffer.allocUnsafe(step);
      for (let offset = 0; offset < this.base.size; ) {
        const n = await reader.read(buffer, step, offset);
        if (n === 0) break;
        await handle.write(buffer, 0, n, offset);
        offset += n;
      }
      this.stagedSize = this.base.size;
    }
    this.mode = "staging";
  }

  // Makes S3 (or the chunk store) hold what the file holds now. Throws EIO on failure.
  // With `deferEmpty`, a new file nothing was written to yet stays pending: a shell's
  // `echo x > f` closes a dup of the descriptor before writing, and uploading an empty object
  // there would double the requests of every small file. The last release uploads it.
  // Never for an existing object emptied by a truncation: close() must not return before S3
  // holds the empty file, and release runs after close() has returned.
  async flush(options: { deferEmpty?: boolean } = {}): Promise<FileState | undefined> {
    return await this.lock.run(async () => {
      if (options.deferEmpty && this.mode === "stream" && this.size === 0 && this.refs > 0 && !this.base)
        return undefined;
      return await this.flushLocked();
    });
  }

  private async flushLocked(): Promise<FileState | undefined> {
    if (this.unlinked) {
      await this.stream?.abort();
      this.stream = undefined;
      if (this.mode === "stream") this.mode = "clean";
      this.dirty = false;
      return undefined;
    }
    if (this.mode === "chunked") {
      if (this.writer) {
        const writer = this.writer;
        this.writer = undefined;
        this.chunked = await writer.finish();
        this.dirty = false;
      }
      return this.chunked
        ? { bucket: this.bucket, key: this.key, size: this.chunked.size, etag: "", chunks: this.chunked }
        : undefined;
    }
    if (!this.dirty) return this.base ? this.state() : undefined;
    if (this.mode === "stream") {
      const stream = this.stream as MultipartStream;
      this.stream = undefined;
      this.mode = "clean";
      this.dirty = false;
      try {
        let etag = await stream.finish();
        // A multipart upload took the metadata at its start: apply a later chmod/utimens now.
        if (stream.started && this.metaChanged) {
          etag = await this.ctx.upload.s3.copy(
            { bucket: this.bucket, key: this.key, size: stream.size },
            { bucket: this.bucket, key: this.key },
            { meta: this.meta },
          );
        }
        this.base = { bucket: this.bucket, key: this.key, etag, size: stream.size };
      } catch (err) {
        // The bytes are gone with the failed upload; the file now reads as it was before.
        this.ctx.logger.error({ err, path: this.what }, "upload failed");
        throw err;
      }
    } else if (this.mode === "staging") {
      const staging = this.staging as { handle: FileHandle };
      const size = this.stagedSize;
      const etag = await uploadFile(this.ctx.upload, staging.handle, size, {
        bucket: this.bucket,
        key: this.key,
        meta: this.meta,
      });
      this.base = { bucket: this.bucket, key: this.key, etag, size };
      this.dirty = false;
    }
    this.metaChanged = false;
    return this.state();
  }

  state(): FileState {
    return { bucket: this.bucket, key: this.key, size: this.size, etag: this.base?.etag ?? "" };
  }

  // Releases local resources (after the last handle closed and the final flush).
  async dispose(): Promise<void> {
    await this.lock.run(async () => {
      await this.stream?.abort();
      this.stream = undefined;
      if (this.writer) await this.writer.abort("closed without flush");
      this.writer = undefined;
      await this.chunkReader?.close();
      this.chunkReader = undefined;
      if (this.staging) {
        await this.staging.handle.close().catch(() => {});
        await rm(this.staging.path, { force: true });
        this.staging = undefined;
      }
    });
  }
}
