import { type FileHandle, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { DriverError, Errno } from "../errors.js";
import type { FileMeta } from "../s3/metadata.js";
import { toDriverError } from "../s3/retry.js";
import type { UploadContext } from "./upload-context.js";
import { readFully } from "./upload-file.js";

// Thrown when a write does not continue where the stream ends; the caller switches to
// read-modify-write.
export class NotSequentialError extends Error {
  constructor(
    readonly offset: number,
    readonly size: number,
  ) {
    super(`write at ${offset} does not continue the stream at ${size}`);
  }
}

// The part being filled: in memory (holding partSize of uploadMemory), or, when that budget
// is used up, in a spill file so the writer does not wait for uploads to catch up.
type Part = { kind: "memory"; buffer: Buffer } | { kind: "spill"; handle: FileHandle; path: string };

let spillCounter = 0;

// A new file streamed to S3 while it is being written: parts go up as they fill (bounded by
// the shared slots and memory; overflow spills to disk), a file that never fills one part
// becomes a single PutObject.
export class MultipartStream {
  size = 0;
  private current: Part | undefined;
  private fill = 0;
  private uploadId: Promise<string> | undefined;
  private partCount = 0;
  private readonly parts: Array<{ PartNumber: number; ETag: string }> = [];
  private readonly uploads = new Set<Promise<void>>();
  private failure: DriverError | undefined;
  private done = false;
  private spilled = false;

  constructor(
    private readonly ctx: UploadContext,
    readonly bucket: string,
    readonly key: string,
    private readonly meta: () => FileMeta,
  ) {}

  // Whether a part has gone up already (so the data is no longer all in memory).
  get started(): boolean {
    return this.partCount > 0;
  }

  private async newPart(): Promise<Part> {
    const partSize = this.ctx.partSize;
    if (this.ctx.uploadMemory.tryAcquire(partSize))
      return { kind: "memory", buffer: Buffer.allocUnsafe(partSize) };
    if (this.ctx.spillDir) {
      if (!this.spilled)
        this.ctx.logger.info(
          { bucket: this.bucket, key: this.key },
          "upload memory is full: spilling parts to disk",
        );
      this.spilled = true;
      const path = join(this.ctx.spillDir, `spill-${process.pid}-${++spillCounter}`);
      return { kind: "spill", handle: await open(path, "w+"), path };
    }
    await this.ctx.uploadMemory.acquire(partSize, { urgent: true });
    return { kind: "memory", buffer: Buffer.allocUnsafe(partSize) };
  }

  // Appends `data` (copied) at `offset`, which must be the current end.
  async write(data: Buffer, offset: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.done)
      throw new DriverError("DRIVER_UPLOAD_FAILED", `Upload of s3://${this.bucket}/${this.key} is finished`);
    if (offset !== this.size) throw new NotSequentialError(offset, this.size);
    const partSize = this.ctx.partSize;
    let pos = 0;
    while (pos < data.length) {
      if (!this.current) {
        this.current = await this.newPart();
        this.fill = 0;
      }
      const part = this.current;
      const n = Math.min(data.length - pos, partSize - this.fill);
      if (part.kind === "memory") data.copy(part.buffer, this.fill, pos, pos + n);
      else {
        for (let done = 0; done < n; ) {
          const { bytesWritten } = await part.handle.write(data, pos + done, n - done, this.fill + done);
          done += bytesWritten;
        }
      }
      this.fill += n;
      pos += n;
      this.size += n;
      if (this.fill === partSize) this.ship();
    }
  }

  private ensureUpload(): Promise<string> {
    this.uploadId ??= this.ctx.s3.createMultipart(this.bucket, this.key, this.meta());
    return this.uploadId;
  }

  // The bytes of a filled part, in memory; a spilled part takes its memory now (waiting).
  private async bodyOf(part: Part, length: number): Promise<Buffer> {
    if (part.kind === "memory") return part.buffer.subarray(0, length);
    await this.ctx.uploadMemory.acquire(this.ctx.partSize);
    const body = Buffer.allocUnsafe(length);
    try {
      await readFully(part.handle, body, 0);
    } catch (err) {
      this.ctx.uploadMemory.release(this.ctx.partSize);
      throw err;
    }
    return body;
  }

  private async discard(part: Part, held: boolean): Promise<void> {
    if (part.kind === "spill") {
      await part.handle.close().catch(() => {});
      await rm(part.path, { force: true });
    }
    if (held) this.ctx.uploadMemory.release(this.ctx.partSize);
  }

  // Sends the current part as the next one in the background.
  private ship(): void {
    const part = this.current as Part;
    const length = this.fill;
    this.current = undefined;
    this.fill = 0;
    const partNumber = ++this.partCount;
    const work = (async () => {
      let held = part.kind === "memory";
      try {
        const body = await this.bodyOf(part, length);
        held = true;
        const uploadId = await this.ensureUpload();
        const etag = await this.ctx.uploadSlots.run(
          () => this.ctx.s3.uploadPart({ bucket: this.bucket, key: this.key, uploadId }, partNumber, body),
          1,
          { urgent: true },
        );
        this.parts.push({ PartNumber: partNumber, ETag: etag });
      } catch (err) {
        this.failure ??= new DriverError(
          "DRIVER_UPLOAD_FAILED",
          `Upload of part ${partNumber} of s3://${this.bucket}/${this.key} failed: ${(err as Error).message}`,
          { cause: err, errno: Errno.EIO },
        );
      } finally {
        await this.discard(part, held);
      }
    })();
    this.uploads.add(work);
    work.finally(() => this.uploads.delete(work)).catch(() => {});
  }

  // Sends what is left and completes the object; returns its ETag.
  async finish(): Promise<string> {
    if (this.done)
      throw new DriverError("DRIVER_UPLOAD_FAILED", `Upload of s3://${this.bucket}/${this.key} is finished`);
    this.done = true;
    if (this.partCount === 0) {
      const part = this.current;
      this.current = undefined;
      let held = part?.kind === "memory";
      try {
        const body = part ? await this.bodyOf(part, this.fill) : Buffer.alloc(0);
        held = part !== undefined;
        return await this.ctx.s3.put(this.bucket, this.key, body, { meta: this.meta() });
      } catch (err) {
        throw new DriverError(
          "DRIVER_UPLOAD_FAILED",
          `Upload of s3://${this.bucket}/${this.key} failed: ${(err as Error).message}`,
          { cause: err, errno: Errno.EIO },
        );
      } finally {
        if (part) await this.discard(part, held);
        this.fill = 0;
      }
    }
    if (this.fill > 0) this.ship();
    else await this.dropCurrent();
    while (this.uploads.size > 0) await Promise.allSettled([...this.uploads]);
    const uploadId = await this.uploadId?.catch(() => undefined);
    if (this.failure || !uploadId) {
      if (uploadId) await this.ctx.s3.abortMultipart({ bucket: this.bucket, key: this.key, uploadId });
      throw (
        this.failure ??
        new DriverError("DRIVER_UPLOAD_FAILED", `Upload of s3://${this.bucket}/${this.key} could not start`)
      );
    }
    try {
      const parts = [...this.parts].sort((a, b) => a.PartNumber - b.PartNumber);
      return await this.ctx.s3.completeMultipart({ bucket: this.bucket, key: this.key, uploadId }, parts);
    } catch (err) {
      await this.ctx.s3.abortMultipart({ bucket: this.bucket, key: this.key, uploadId });
      throw toDriverError(err, `CompleteMultipartUpload s3://${this.bucket}/${this.key}`);
    }
  }

  // Drops the upload: nothing becomes visible.
  async abort(): Promise<void> {
    this.done = true;
    await this.dropCurrent();
    while (this.uploads.size > 0) await Promise.allSettled([...this.uploads]);
    const uploadId = await this.uploadId?.catch(() => undefined);
    if (uploadId) await this.ctx.s3.abortMultipart({ bucket: this.bucket, key: this.key, uploadId });
  }

  private async dropCurrent(): Promise<void> {
    const part = this.current;
    this.current = undefined;
    this.fill = 0;
    if (part) await this.discard(part, part.kind === "memory");
  }
}
