import { Readable } from "node:stream";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import pLimit from "p-limit";
import type { BenchContext, Timing } from "../harness/context.js";
import { BLOCK, fillBlock, randomReadOps, smallFileName, smallFileSize } from "./data.js";
import type { FsSession, FsTarget } from "./fs-target.js";

const PART = 8 * 1024 * 1024;
const CONCURRENCY = 8;
const SMALL_CONCURRENCY = 16;

// The limit: what a program gets from S3 with the SDK alone and no filesystem in between.
// Sequential reads are parallel ranged GETs (8 x 8 MiB in flight: 64 MiB of memory),
// writes a multipart upload (8 x 8 MiB parts in flight), random reads one ranged GET per
// read (one at a time, like the mounts), small files 16 PUTs/GETs in flight.
export const sdkTarget: FsTarget = {
  name: "sdk",
  settings: `@aws-sdk/client-s3 in the harness process: ${CONCURRENCY} x ${PART / 1048576} MiB ranged GETs / multipart parts in flight, ${SMALL_CONCURRENCY} small-object requests in flight`,
  async unavailable() {
    return undefined;
  },
  async open(context: BenchContext): Promise<FsSession> {
    return new SdkSession(context);
  },
};

class SdkSession implements FsSession {
  private readonly client: S3Client;
  private readonly bucket: string;

  constructor(private readonly context: BenchContext) {
    const { endpoint } = context;
    this.bucket = endpoint.bucket;
    this.client = new S3Client({
      endpoint: endpoint.url,
      forcePathStyle: true,
      region: endpoint.region,
      credentials: { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey },
    });
  }

  private get signal() {
    return this.context.signal;
  }

  async seqWrite(key: string, bytes: number): Promise<Timing> {
    const started = performance.now();
    async function* blocks() {
      for (let index = 0, sent = 0; sent < bytes; index++) {
        const block = fillBlock(Buffer.alloc(Math.min(BLOCK, bytes - sent)), index);
        sent += block.length;
        yield block;
      }
    }
    await new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: Readable.from(blocks()) },
      partSize: PART,
      queueSize: CONCURRENCY,
    }).done();
    return { seconds: (performance.now() - started) / 1000, bytes };
  }

  private async getRange(key: string, offset: number, length: number): Promise<number> {
    const response = await this.client.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Range: `bytes=${offset}-${offset + length - 1}`,
      }),
      { abortSignal: this.signal },
    );
    return (await response.Body?.transformToByteArray())?.length ?? 0;
  }

  async seqRead(key: string): Promise<Timing> {
    const started = performance.now();
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
    const size = head.ContentLength ?? 0;
    const limit = pLimit(CONCURRENCY);
    const parts: Promise<number>[] = [];
    // p-limit queues the closures, not their results: at most CONCURRENCY bodies in memory.
    for (let offset = 0; offset < size; offset += PART) {
      parts.push(limit(() => this.getRange(key, offset, Math.min(PART, size - offset))));
    }
    const bytes = (await Promise.all(parts)).reduce((a, b) => a + b, 0);
    return { seconds: (performance.now() - started) / 1000, bytes };
  }

  async randomReads(key: string, fileBytes: number, count: number): Promise<Timing> {
    const started = performance.now();
    let bytes = 0;
    for (const { offset, length } of randomReadOps(fileBytes, count, 7))
      bytes += await this.getRange(key, offset, length);
    return { seconds: (performance.now() - started) / 1000, bytes };
  }

  async smallWrite(prefix: string, count: number): Promise<Timing> {
    const started = performance.now();
    const limit = pLimit(SMALL_CONCURRENCY);
    const sizes = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        limit(async () => {
          const body = fillBlock(Buffer.alloc(smallFileSize(i)), i);
          await this.client.send(
            new PutObjectCommand({ Bucket: this.bucket, Key: `${prefix}/${smallFileName(i)}`, Body: body }),
            { abortSignal: this.signal },
          );
          return body.length;
        }),
      ),
    );
    return { seconds: (performance.now() - started) / 1000, bytes: sizes.reduce((a, b) => a + b, 0) };
  }

  async smallRead(prefix: string, count: number): Promise<Timing> {
    const started = performance.now();
    const limit = pLimit(SMALL_CONCURRENCY);
    const sizes = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        limit(async () => {
          const response = await this.client.send(
            new GetObjectCommand({ Bucket: this.bucket, Key: `${prefix}/${smallFileName(i)}` }),
            { abortSignal: this.signal },
          );
          return (await response.Body?.transformToByteArray())?.length ?? 0;
        }),
      ),
    );
    return { seconds: (performance.now() - started) / 1000, bytes: sizes.reduce((a, b) => a + b, 0) };
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
