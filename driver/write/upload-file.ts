import type { FileHandle } from "node:fs/promises";
import { forEachBounded } from "../../common/for-each-bounded.js";
import { DriverError, Errno } from "../errors.js";
import type { FileMeta } from "../s3/metadata.js";
import type { UploadContext } from "./upload-context.js";

// Uploads a local staging file as the object: one PutObject below one part, otherwise a
// multipart upload with parts read and sent in parallel (bounded like every upload).
export async function uploadFile(
  ctx: UploadContext,
  file: FileHandle,
  size: number,
  target: { bucket: string; key: string; meta: FileMeta },
): Promise<string> {
  const what = `s3://${target.bucket}/${target.key}`;
  const fail = (err: unknown) =>
    new DriverError("DRIVER_UPLOAD_FAILED", `Upload of ${what} failed: ${(err as Error).message}`, {
      cause: err,
      errno: Errno.EIO,
    });
  const partSize = ctx.partSize;
  if (size <= partSize) {
    const body = Buffer.allocUnsafe(size);
    await readFully(file, body, 0);
    try {
      return await ctx.s3.put(target.bucket, target.key, body, { meta: target.meta });
    } catch (err) {
      throw fail(err);
    }
  }
  const uploadId = await ctx.s3.createMultipart(target.bucket, target.key, target.meta).catch((err) => {
    throw fail(err);
  });
  const dest = { bucket: target.bucket, key: target.key, uploadId };
  const count = Math.ceil(size / partSize);
  const parts: Array<{ PartNumber: number; ETag: string }> = [];
  try {
    const numbers = Array.from({ length: count }, (_, i) => i + 1);
    await forEachBounded(numbers, ctx.uploadConcurrency, async (n) => {
      const start = (n - 1) * partSize;
      const length = Math.min(partSize, size - start);
      await ctx.uploadMemory.acquire(partSize, { urgent: true });
      try {
        const body = Buffer.allocUnsafe(length);
        await readFully(file, body, start);
        const etag = await ctx.uploadSlots.run(() => ctx.s3.uploadPart(dest, n, body), 1, { urgent: true });
        parts.push({ PartNumber: n, ETag: etag });
      } finally {
        ctx.uploadMemory.release(partSize);
      }
    });
    parts.sort((a, b) => a.PartNumber - b.PartNumber);
    return await ctx.s3.completeMultipart(dest, parts);
  } catch (err) {
    await ctx.s3.abortMultipart(dest);
    throw fail(err);
  }
}

// Fills `target` from `file` at `position` (a short read means the file shrank: zeros).
export async function readFully(file: FileHandle, target: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await file.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) {
      target.fill(0, done);
      return;
    }
    done += bytesRead;
  }
}
