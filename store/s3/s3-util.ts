import { ListObjectsCommand, type S3Client } from "@aws-sdk/client-s3";
import { abortError, SnapshotError, SnapshotErrorCode } from "../errors.js";

// Whether an SDK error means "no such object" (GetObject says NoSuchKey, HeadObject only 404).
export function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchKey" || e?.name === "NotFound" || e?.$metadata?.httpStatusCode === 404;
}

// Wraps an SDK failure as SNAPSHOT_S3_FAILED (or SNAPSHOT_ABORTED when the signal fired).
export function s3Error(err: unknown, what: string, signal?: AbortSignal): SnapshotError {
  if (err instanceof SnapshotError) return err;
  if (signal?.aborted) return abortError(signal, what);
  const message = err instanceof Error ? err.message : String(err);
  return new SnapshotError(SnapshotErrorCode.S3Failed, `${what} failed: ${message}`, {
    cause: err,
    retryable: true,
  });
}

export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date;
}

interface ListPage {
  Contents?: { Key?: string; Size?: number; LastModified?: Date }[];
  CommonPrefixes?: { Prefix?: string }[];
  IsTruncated?: boolean;
  NextMarker?: string;
}

// One page of ListObjects (v1, paged by Marker). v1 rather than v2 because s3rver signs
// v2 continuation tokens with DES, which Node 20's OpenSSL 3 refuses (HTTP 500 as soon
// as a listing exceeds 1000 keys); Marker paging works the same on AWS S3.
async function listPage(
  client: S3Client,
  params: { bucket: string; prefix: string; delimiter?: string; marker?: string },
  signal?: AbortSignal,
): Promise<ListPage> {
  try {
    return (await client.send(
      new ListObjectsCommand({
        Bucket: params.bucket,
        Prefix: params.prefix,
        Delimiter: params.delimiter,
        Marker: params.marker,
      }),
      { abortSignal: signal },
    )) as ListPage;
  } catch (err) {
    throw s3Error(err, `Listing s3://${params.bucket}/${params.prefix}`, signal);
  }
}

// Every object under `prefix`, page by page (1000 keys per request, so memory is one page).
export async function* listObjects(
  client: S3Client,
  bucket: string,
  prefix: string,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<ListedObject> {
  let marker: string | undefined;
  while (true) {
    const page = await listPage(client, { bucket, prefix, marker }, options.signal);
    let last: string | undefined;
    for (const item of page.Contents ?? []) {
      if (item.Key === undefined) continue;
      last = item.Key;
      yield { key: item.Key, size: item.Size ?? 0, lastModified: item.LastModified ?? new Date(0) };
    }
    if (!page.IsTruncated || last === undefined) return;
    marker = page.NextMarker ?? last;
  }
}

// The "folders" directly under `prefix` (common prefixes with delimiter "/").
export async function listFolders(
  client: S3Client,
  bucket: string,
  prefix: string,
  options: { signal?: AbortSignal } = {},
): Promise<string[]> {
  const folders: string[] = [];
  let marker: string | undefined;
  while (true) {
    const page = await listPage(client, { bucket, prefix, delimiter: "/", marker }, options.signal);
    let last: string | undefined;
    for (const p of page.CommonPrefixes ?? []) {
      if (p.Prefix) folders.push(p.Prefix);
      if (p.Prefix && (last === undefined || p.Prefix > last)) last = p.Prefix;
    }
    for (const c of page.Contents ?? []) if (c.Key && (last === undefined || c.Key > last)) last = c.Key;
    if (!page.IsTruncated || last === undefined) return folders;
    marker = page.NextMarker ?? last;
  }
}

// Whether an S3 failure is worth another try: the network (reset, hang up, timeout),
// throttling (429, SlowDown) and 5xx; never a definite answer (404, 403, 412, 416...).
export function isTransient(err: unknown): boolean {
  const e = err as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 || status === 429;
  if (e.name === "AbortError") return false;
  return (
    /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|socket hang up|TimeoutError|RequestTimeout/i.test(
      `${e.name ?? ""} ${e.code ?? ""} ${e.message ?? ""}`,
    ) || e.name === "SlowDown"
  );
}

// Runs one S3 request, again after a transient failure (up to `attempts` in all), with
// exponential backoff and full jitter from `baseMs`. A checkpoint that an S3 hiccup can
// fail, with the spot deadline running, is worth a few hundred milliseconds of retries.
export async function withRetries<T>(
  fn: () => Promise<T>,
  options: { signal?: AbortSignal; attempts?: number; baseMs?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 5;
  const baseMs = options.baseMs ?? 100;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts || options.signal?.aborted || !isTransient(err)) throw err;
      const delay = Math.random() * baseMs * 2 ** (attempt - 1);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

// A build-step middleware that signs the request without its payload: SigV4 takes an
// x-amz-content-sha256 header as given (@smithy/signature-v4 getPayloadHash), and
// UNSIGNED-PAYLOAD spares a SHA-256 of the body. The body's integrity then rests on a
// checksum the caller sends (x-amz-checksum-crc32, which S3 checks: BadDigest) and on TLS.
export function withUnsignedPayload() {
  return <A extends { request: unknown }, R>(next: (args: A) => Promise<R>) =>
    async (args: A): Promise<R> => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      return await next(args);
    };
}
