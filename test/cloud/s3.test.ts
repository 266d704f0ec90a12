import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import pLimit from "p-limit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Server } from "../../cloud/index.js";

describe("embedded S3 (s3rver) through @aws-sdk/client-s3", () => {
  let dir: string;
  let server: S3Server;
  let s3: S3Client;
  const Bucket = "cloud-test";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "snap-s3-"));
    server = new S3Server({ directory: dir, buckets: [Bucket] });
    await server.start();
    s3 = new S3Client({
      endpoint: server.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
  });

  afterAll(async () => {
    s3?.destroy();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("puts, gets and serves ranged gets", async () => {
    const body = randomBytes(100_000);
    await s3.send(new PutObjectCommand({ Bucket, Key: "a/b.bin", Body: body }));
    const whole = await s3.send(new GetObjectCommand({ Bucket, Key: "a/b.bin" }));
    expect(Buffer.from(await whole.Body!.transformToByteArray()).equals(body)).toBe(true);
    const ranged = await s3.send(new GetObjectCommand({ Bucket, Key: "a/b.bin", Range: "bytes=1000-1999" }));
    expect(ranged.ContentRange).toBe("bytes 1000-1999/100000");
    expect(Buffer.from(await ranged.Body!.transformToByteArray()).equals(body.subarray(1000, 2000))).toBe(
      true,
    );
  });

  it("completes a multipart upload of 3 parts", async () => {
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(5 * 1024 * 1024), randomBytes(1234)];
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "multi.bin" }));
    const done = [];
    for (const [i, part] of parts.entries()) {
      const { ETag } = await s3.send(
        new UploadPartCommand({ Bucket, Key: "multi.bin", UploadId, PartNumber: i + 1, Body: part }),
      );
      done.push({ ETag, PartNumber: i + 1 });
    }
    const result = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key: "multi.bin",
        UploadId,
        MultipartUpload: { Parts: done },
      }),
    );
    expect(result.ETag).toBeTruthy();
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: "multi.bin" }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(Buffer.concat(parts))).toBe(true);
  });

  it("lists more than 1,000 keys across pages", async () => {
    const limit = pLimit(16);
    const keys = Array.from({ length: 1_234 }, (_, i) => `many/${String(i).padStart(5, "0")}`);
    await Promise.all(
      keys.map((Key) => limit(() => s3.send(new PutObjectCommand({ Bucket, Key, Body: Key })))),
    );
    const seen: string[] = [];
    let ContinuationToken: string | undefined;
    let pages = 0;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: "many/", ContinuationToken }));
      seen.push(...(page.Contents ?? []).map((o) => o.Key!));
      ContinuationToken = page.NextContinuationToken;
      pages++;
    } while (ContinuationToken);
    expect(pages).toBeGreaterThan(1);
    expect(seen).toEqual(keys);
  });

  it("keeps objects across a restart on the same port", async () => {
    const before = server.endpoint;
    await server.kill();
    await server.start();
    expect(server.endpoint).toBe(before);
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: "a/b.bin", Range: "bytes=0-9" }));
    expect((await got.Body!.transformToByteArray()).length).toBe(10);
  });
});
