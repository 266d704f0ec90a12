import { DriverError, Errno } from "../errors.js";
import type { FileMeta } from "../s3/metadata.js";
import { toDriverError } from "../s3/retry.js";
import type { UploadContext } from "./upload-context.js";

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

// A new file streamed to S3 while it is being written: parts go up as they fill (bounded by
// the shared slots and memory), a file that never fills one part becomes a single PutObject.
export class MultipartStream {
  size = 0;
  private buffer: Buffer | undefined;
  private fill = 0;
  private uploadId: Promise<string> | undefined;
  private partCount = 0;
  private readonly parts: Array<{ PartNumber: number; ETag: string }> = [];
  private readonly uploads = new Set<Promise<void>>();
  private failure: DriverError | undefined;
  private done = false;

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

  // Appends `data` (copied) at `offset`, which must be the current end.
  async write(data: Buffer, offset: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.done)
      throw new DriverError("DRIVER_UPLOAD_FAILED", `Upload of s3://${this.bucket}/${this.key} is finished`);
    if (offset !== this.size) throw new NotSequentialError(offset, this.size);
    const partSize = this.ctx.partSize;
    let pos = 0;
    while (pos < data.length) {
      if (!this.buffer) {
        await this.ctx.uploadMemory.acquire(partSize, { urgent: true });
        this.buffer = Buffer.allocUnsafe(partSize);
        this.fill = 0;
      }
      const n = Math.min(data.length - pos, partSize - this.fill);
      data.copy(this.buffer, this.fill, pos, pos + n);
      this.fill += n;
      pos += n;
      this.size += n;
      if (this.fill === partSize) this.ship();
    }
  }

  // Discards everything not yet sent (only before the first part went up).
  reset(): void {
    if (this.partCount > 0) throw new Error("cannot reset a started upload");
    this.fill = 0;
    this.size = 0;
  }

  private ensureUpload(): Promise<string> {
    this.uploadId ??= this.ctx.s3.createMultipart(this.bucket, this.key, this.meta());
    return this.uploadId;
  }

  // Sends the current buffer as the next part in the background.
  private ship(): void {
    const body = (this.buffer as Buffer).subarray(0, this.fill);
    this.buffer = undefined;
    this.fill = 0;
    const partNumber = ++this.partCount;
    const work = (async () => {
      try {
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
        this.ctx.uploadMemory.release(this.ctx.partSize);
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
      const body = this.buffer ? this.buffer.subarray(0, this.fill) : Buffer.alloc(0);
      try {
        return await this.ctx.s3.put(this.bucket, this.key, body, { meta: this.meta() });
      } catch (err) {
        throw new DriverError(
          "DRIVER_UPLOAD_FAILED",
          `Upload of s3://${this.bucket}/${this.key} failed: ${(err as Error).message}`,
          {
            cause: err,
            errno: Errno.EIO,
          },
        );
      } finally {
        this.dropBuffer();
      }
    }
    if (this.fill > 0) this.ship();
    else this.dropBuffer();
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
    this.dropBuffer();
    while (this.uploads.size > 0) await Promise.allSettled([...this.uploads]);
    const uploadId = await this.uploadId?.catch(() => undefined);
    if (uploadId) await this.ctx.s3.abortMultipart({ bucket: this.bucket, key: this.key, uploadId });
  }

  private dropBuffer(): void {
    if (this.buffer) {
      this.buffer = undefined;
      this.ctx.uploadMemory.release(this.ctx.partSize);
    }
    this.fill = 0;
  }
}
