import { HeadObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { waitFor } from "../harness/tools.js";

// Resolves at the epoch time (ms) when `key` is in S3 with `bytes` bytes.
export async function visibleAt(
  s3: S3Client,
  bucket: string,
  key: string,
  bytes: number,
  signal?: AbortSignal,
) {
  return await waitFor(
    `s3://${bucket}/${key} to hold ${bytes} bytes`,
    async () => {
      try {
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return head.ContentLength === bytes ? Date.now() : undefined;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 600_000, intervalMs: 20, signal },
  );
}

// Resolves at the epoch time (ms) when `count` objects exist under `prefix`.
export async function allVisibleAt(
  s3: S3Client,
  bucket: string,
  prefix: string,
  count: number,
  signal?: AbortSignal,
) {
  return await waitFor(
    `${count} objects under s3://${bucket}/${prefix}`,
    async () => ((await countObjects(s3, bucket, prefix)) >= count ? Date.now() : undefined),
    { timeoutMs: 600_000, intervalMs: 50, signal },
  );
}

export async function countObjects(s3: S3Client, bucket: string, prefix: string): Promise<number> {
  let count = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    count += page.KeyCount ?? page.Contents?.length ?? 0;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return count;
}
