import type { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { forEachBounded } from "../../common/for-each-bounded.js";
import { DriverError, Errno } from "../errors.js";
import { Semaphore } from "../util/semaphore.js";
import { decodeMeta, encodeMeta, type FileMeta } from "./metadata.js";
import { type RetryPolicy, statusOf, toDriverError, withRetry } from "./retry.js";

// What HEAD (or a listing) says about an object.
export interface ObjectInfo {
  size: number;
  etag: string;
  mtimeMs: number;
  meta: FileMeta;
  contentType?: string;
}

export interface ListPage {
  files: Array<{ key: string; size: number; etag: string; mtimeMs: number }>;
  prefixes: string[];
  next?: string;
}

const MiB = 1024 * 1024;
const MAX_PART = 5 * 1024 * MiB;
const MAX_PARTS = 10_000;

// When an object is copied by parts and how (see FusionOptions.copyThreshold and the next two).
export interface CopyLimits {
  threshold: number;
  partSize: number;
  concurrency: number;
}

const DEFAULT_COPY_LIMITS: CopyLimits = { threshold: MAX_PART, partSize: 512 * MiB, concurrency: 8 };

// The configured part size, raised (to whole MiB) when the object would need over 10,000 parts.
export function copyPartSizeFor(size: number, configured: number): number {
  const least = Math.ceil(size / MAX_PARTS / MiB) * MiB;
  return Math.max(configured, least);
}

// The object size in a Content-Range answer ("bytes 0-99/1234").
function totalOf(contentRange: string | undefined): number | undefined {
  const match = /\/(\d+)$/.exec(contentRange ?? "");
  return match ? Number(match[1]) : undefined;
}

// The S3 requests the driver makes, each with bounded, jittered retries and an errno-carrying
// DriverError on failure. Nothing else in driver/ talks to the SDK directly.
export class S3Ops {
  // UploadPartCopy requests in flight, over every multipart copy.
  private readonly copySlots: Semaphore;

  constructor(
    readonly client: S3Client,
    readonly policy: RetryPolicy,
    readonly copyLimits: CopyLimits = DEFAULT_COPY_LIMITS,
  ) {
    this.copySlots = new Semaphore(copyLimits.concurrency);
  }

  // HEAD; undefined when the object does not exist.
  async head(bucket: string, key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    try {
      const out = await withRetry(
        `HEAD s3://${bucket}/${key}`,
        this.policy,
        (s) => this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: s }),
        signal,
      );
      return {
        size: out.ContentLength ?? 0,
        etag: out.ETag ?? "",
        mtimeMs: out.LastModified?.getTime() ?? Date.now(),
        meta: decodeMeta(out.Metadata),
        contentType: out.ContentType,
      };
    } catch (err) {
      if ((err as { code?: string }).code === "DRIVER_NOT_FOUND") return undefined;
      throw err;
    }
  }

  // A lookup that may save the GET of a small file: a GET of the first `limit` bytes says what
  // HEAD says and, when the object is no larger than `limit`, brings its whole body too.
  // undefined when the object does not exist; an empty object (a range is unsatisfiable
  // there: 416) falls back to HEAD.
  async lookup(
    bucket: string,
    key: string,
    limit: number,
    signal?: AbortSignal,
  ): Promise<{ info: ObjectInfo; body?: Buffer } | undefined> {
    let empty = false;
    try {
      const found = await withRetry(
        `GET s3://${bucket}/${key} bytes 0-${limit - 1} (lookup)`,
        this.policy,
        async (s) => {
          let out: GetObjectCommandOutput;
          try {
            out = await this.client.send(
              new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=0-${limit - 1}` }),
              { abortSignal: s },
            );
          } catch (err) {
            if (statusOf(err) === 416 || (err as { name?: string }).name === "InvalidRange") {
              empty = true;
              return undefined;
            }
            throw err;
          }
          // An empty object: s3rver answers "bytes 0-0/0" with a length of 1 and no byte, so
          // its body is never read.
          const declared = totalOf(out.ContentRange);
          if (declared === 0) (out.Body as Readable | undefined)?.destroy();
          const bytes =
            declared === 0
              ? Buffer.alloc(0)
              : Buffer.from(
                  await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
                );
          const total = declared ?? bytes.length;
          const info: ObjectInfo = {
            size: total,
            etag: out.ETag ?? "",
            mtimeMs: out.LastModified?.getTime() ?? Date.now(),
            meta: decodeMeta(out.Metadata),
            contentType: out.ContentType,
          };
          return { info, body: bytes.length === total ? bytes : undefined };
        },
        signal,
      );
      if (!empty) return found;
    } catch (err) {
      if ((err as { code?: string }).code === "DRIVER_NOT_FOUND") return undefined;
      throw err;
    }
    const info = await this.head(bucket, key, signal);
    return info ? { info } : undefined;
  }

  // One page of ListObjectsV2 (with "/" as delimiter unless `recursive`).
  async listPage(
    bucket: string,
    prefix: string,
    options: { recursive?: boolean; token?: string; maxKeys?: number; signal?: AbortSignal } = {},
  ): Promise<ListPage> {
    const out = await withRetry(
      `LIST s3://${bucket}/${prefix}`,
      this.policy,
      (s) =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            Delimiter: options.recursive ? undefined : "/",
            ContinuationToken: options.token,
            MaxKeys: options.maxKeys,
          }),
          { abortSignal: s },
        ),
      options.signal,
    );
    return {
      files: (out.Contents ?? []).map((c) => ({
        key: c.Key ?? "",
        size: c.Size ?? 0,
        etag: c.ETag ?? "",
        mtimeMs: c.LastModified?.getTime() ?? Date.now(),
      })),
      prefixes: (out.CommonPrefixes ?? []).map((p) => p.Prefix ?? ""),
      next: out.IsTruncated ? out.NextContinuationToken : undefined,
    };
  }

  // Every page of a listing, one page in memory at a time.
  async *listAll(
    bucket: string,
    prefix: string,
    options: { recursive?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<ListPage> {
    let token: string | undefined;
    do {
      const page = await this.listPage(bucket, prefix, { ...options, token });
      yield page;
      token = page.next;
    } while (token);
  }

  // Opens a ranged GET pinned to `etag`; the caller reads (and bounds) the body.
  async getRange(
    bucket: string,
    key: string,
    range: { start: number; end: number; etag?: string },
    signal: AbortSignal,
  ): Promise<Readable> {
    const out = await this.client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        Range: `bytes=${range.start}-${range.end - 1}`,
        IfMatch: range.etag || undefined,
      }),
      { abortSignal: signal },
    );
    if (range.etag && out.ETag && out.ETag !== range.etag) {
      (out.Body as Readable | undefined)?.destroy();
      throw toDriverError(
        Object.assign(new Error(`ETag is ${out.ETag}, expected ${range.etag}`), {
          name: "PreconditionFailed",
        }),
        `GET s3://${bucket}/${key}`,
      );
    }
    return out.Body as Readable;
  }

  // The whole (small) object, e.g. a symlink target.
  async getSmall(bucket: string, key: string, signal?: AbortSignal): Promise<Buffer> {
    return await withRetry(
      `GET s3://${bucket}/${key}`,
      this.policy,
      async (s) => {
        const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), {
          abortSignal: s,
        });
        return Buffer.from(
          await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
        );
      },
      signal,
    );
  }

  async put(
    bucket: string,
    key: string,
    body: Buffer,
    options: { meta?: FileMeta; contentType?: string; signal?: AbortSignal } = {},
  ): Promise<string> {
    const out = await withRetry(
      `PUT s3://${bucket}/${key}`,
      this.policy,
      (s) =>
        this.client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: body,
            ContentLength: body.length,
            Metadata: options.meta ? encodeMeta(options.meta) : undefined,
            ContentType: options.contentType,
          }),
          { abortSignal: s },
        ),
      options.signal,
    );
    return out.ETag ?? "";
  }

  // `headers`: content headers (and raw Metadata, overriding `meta`) for the new object.
  async createMultipart(
    bucket: string,
    key: string,
    meta: FileMeta | undefined,
    signal?: AbortSignal,
    headers: Omit<CreateMultipartUploadCommandInput, "Bucket" | "Key"> = {},
  ): Promise<string> {
    const out = await withRetry(
      `CreateMultipartUpload s3://${bucket}/${key}`,
      this.policy,
      (s) =>
        this.client.send(
          new CreateMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            Metadata: meta ? encodeMeta(meta) : undefined,
            ...headers,
          }),
          { abortSignal: s },
        ),
      signal,
    );
    if (!out.UploadId)
      throw toDriverError(
        new Error("no UploadId in the answer"),
        `CreateMultipartUpload s3://${bucket}/${key}`,
      );
    return out.UploadId;
  }

  async uploadPart(
    target: { bucket: string; key: string; uploadId: string },
    partNumber: number,
    body: Buffer,
    signal?: AbortSignal,
  ): Promise<string> {
    const out = await withRetry(
      `UploadPart ${partNumber} of s3://${target.bucket}/${target.key}`,
      this.policy,
      (s) =>
        this.client.send(
          new UploadPartCommand({
            Bucket: target.bucket,
            Key: target.key,
            UploadId: target.uploadId,
            PartNumber: partNumber,
            Body: body,
            ContentLength: body.length,
          }),
          { abortSignal: s },
        ),
      signal,
    );
    return out.ETag ?? "";
  }

  async completeMultipart(
    target: { bucket: string; key: string; uploadId: string },
    parts: Array<{ PartNumber: number; ETag: string }>,
    signal?: AbortSignal,
  ): Promise<string> {
    const out = await withRetry(
      `CompleteMultipartUpload s3://${target.bucket}/${target.key}`,
      this.policy,
      (s) =>
        this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: target.bucket,
            Key: target.key,
            UploadId: target.uploadId,
            MultipartUpload: { Parts: parts },
          }),
          { abortSignal: s },
        ),
      signal,
    );
    return out.ETag ?? "";
  }

  // Best effort: an upload left behind costs storage, not correctness.
  async abortMultipart(target: { bucket: string; key: string; uploadId: string }): Promise<void> {
    try {
      await withRetry(
        `AbortMultipartUpload s3://${target.bucket}/${target.key}`,
        { ...this.policy, maxAttempts: 2 },
        (s) =>
          this.client.send(
            new AbortMultipartUploadCommand({
              Bucket: target.bucket,
              Key: target.key,
              UploadId: target.uploadId,
            }),
            { abortSignal: s },
          ),
      );
    } catch (err) {
      this.policy.logger.warn({ err, key: target.key }, "could not abort a multipart upload");
    }
  }

  // Server-side copy; `meta` replaces the metadata when given (then the content type is
  // `contentType`, as with MetadataDirective REPLACE). Above `copyLimits.threshold` bytes (S3 refuses
  // CopyObject above 5 GiB) a multipart copy.
  async copy(
    from: { bucket: string; key: string; size: number },
    to: { bucket: string; key: string },
    options: { meta?: FileMeta; contentType?: string; signal?: AbortSignal } = {},
  ): Promise<string> {
    const source = `${from.bucket}/${encodeURIComponent(from.key).replace(/%2F/g, "/")}`;
    if (from.size > this.copyLimits.threshold) return await this.copyMultipart(from, source, to, options);
    const out = await withRetry(
      `COPY s3://${from.bucket}/${from.key} to s3://${to.bucket}/${to.key}`,
      { ...this.policy, timeoutMs: Math.max(this.policy.timeoutMs, 300_000) },
      (s) =>
        this.client.send(
          new CopyObjectCommand({
            Bucket: to.bucket,
            Key: to.key,
            CopySource: source,
            MetadataDirective: options.meta ? "REPLACE" : "COPY",
            Metadata: options.meta ? encodeMeta(options.meta) : undefined,
            ContentType: options.meta ? options.contentType : undefined,
          }),
          { abortSignal: s },
        ),
      options.signal,
    );
    return out.CopyObjectResult?.ETag ?? "";
  }

  // CreateMultipartUpload, UploadPartCopy of each range (pinned to the source's ETag, at most
  // `copyLimits.concurrency` in flight over all copies), Complete; on any failure the in-flight parts
  // are cancelled and the upload aborted. Without `meta` the source's metadata and content
  // headers are carried over, as CopyObject's COPY directive does.
  private async copyMultipart(
    from: { bucket: string; key: string },
    source: string,
    to: { bucket: string; key: string },
    options: { meta?: FileMeta; contentType?: string; signal?: AbortSignal },
  ): Promise<string> {
    const what = `multipart copy of s3://${from.bucket}/${from.key} to s3://${to.bucket}/${to.key}`;
    const head = await withRetry(
      `HEAD s3://${from.bucket}/${from.key}`,
      this.policy,
      (s) =>
        this.client.send(new HeadObjectCommand({ Bucket: from.bucket, Key: from.key }), { abortSignal: s }),
      options.signal,
    );
    const size = head.ContentLength ?? 0;
    const partSize = copyPartSizeFor(size, this.copyLimits.partSize);
    if (partSize > MAX_PART)
      throw new DriverError("DRIVER_NOT_SUPPORTED", `${what}: ${size} bytes need parts above 5 GiB`, {
        errno: Errno.EFBIG,
      });
    const uploadId = await this.createMultipart(
      to.bucket,
      to.key,
      options.meta,
      options.signal,
      options.meta
        ? { ContentType: options.contentType }
        : {
            Metadata: head.Metadata,
            ContentType: head.ContentType,
            CacheControl: head.CacheControl,
            ContentDisposition: head.ContentDisposition,
            ContentEncoding: head.ContentEncoding,
            ContentLanguage: head.ContentLanguage,
            Expires: head.Expires,
          },
    );
    const target = { ...to, uploadId };
    const ranges: Array<{ n: number; start: number; end: number }> = [];
    for (let start = 0, n = 1; start < size || n === 1; start += partSize, n++)
      ranges.push({ n, start, end: Math.min(size, start + partSize) - 1 });
    // One failed part stops the others at once, and the abort below waits for them to settle.
    const stop = new AbortController();
    const onAbort = () => stop.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const etags: string[] = [];
      await forEachBounded(ranges, this.copyLimits.concurrency, async (r) => {
        await this.copySlots.acquire(1, { signal: stop.signal });
        try {
          const out = await withRetry(
            `UploadPartCopy ${r.n} (bytes ${r.start}-${r.end}) to s3://${to.bucket}/${to.key}`,
            { ...this.policy, timeoutMs: Math.max(this.policy.timeoutMs, 300_000) },
            (s) =>
              this.client.send(
                new UploadPartCopyCommand({
                  Bucket: to.bucket,
                  Key: to.key,
                  UploadId: target.uploadId,
                  PartNumber: r.n,
                  CopySource: source,
                  // An empty source has no byte to name: its one part is the whole (empty) object.
                  CopySourceRange: size > 0 ? `bytes=${r.start}-${r.end}` : undefined,
                  CopySourceIfMatch: head.ETag,
                }),
                { abortSignal: s },
              ),
            stop.signal,
          );
          etags[r.n - 1] = out.CopyPartResult?.ETag ?? "";
        } catch (err) {
          stop.abort(err);
          throw err;
        } finally {
          this.copySlots.release(1);
        }
      });
      return await this.completeMultipart(
        target,
        ranges.map((r) => ({ PartNumber: r.n, ETag: etags[r.n - 1] ?? "" })),
        options.signal,
      );
    } catch (err) {
      await this.abortMultipart(target);
      throw toDriverError(err, what);
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  async delete(bucket: string, key: string, signal?: AbortSignal): Promise<void> {
    await withRetry(
      `DELETE s3://${bucket}/${key}`,
      this.policy,
      (s) => this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: s }),
      signal,
    );
  }

  // Bucket names, or undefined when the credentials may not list buckets.
  async listBuckets(signal?: AbortSignal): Promise<string[] | undefined> {
    try {
      const out = await withRetry(
        "ListBuckets",
        { ...this.policy, maxAttempts: 2 },
        (s) => this.client.send(new ListBucketsCommand({}), { abortSignal: s }),
        signal,
      );
      return (out.Buckets ?? []).map((b) => b.Name ?? "").filter(Boolean);
    } catch (err) {
      const status = statusOf((err as { cause?: unknown }).cause);
      this.policy.logger.debug({ err, status }, "ListBuckets not available");
      return undefined;
    }
  }
}
