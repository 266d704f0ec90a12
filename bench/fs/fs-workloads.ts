import { Readable } from "node:stream";
import {
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import pLimit from "p-limit";
import { BenchError } from "../errors.js";
import type { BenchContext, Timing } from "../harness/context.js";
import { BLOCK, fillBlock, randomReadOps, smallFileName, smallFileSize } from "./data.js";
import type { FsTarget } from "./fs-target.js";

export const FS_WORKLOADS = ["seq-write", "seq-read", "random-read", "small-write", "small-read"] as const;
export type FsWorkload = (typeof FS_WORKLOADS)[number];

export interface FsSizes {
  // Size of the sequentially written and read file. Issue: 1 GiB.
  seqBytes: number;
  // Number of random reads (4 KiB to 1 MiB each) in the read file.
  randomReads: number;
  // Number of small files (1 to 16 KiB) written and read.
  smallFiles: number;
}

const SEED_SEQ = "seed-seq";
const SEED_SMALL = "seed-small";

// Puts the objects the read workloads read, straight through the SDK (not timed).
export async function seedFsObjects(s3: S3Client, bucket: string, sizes: FsSizes): Promise<void> {
  async function* blocks() {
    for (let index = 0, sent = 0; sent < sizes.seqBytes; index++) {
      const block = fillBlock(Buffer.alloc(Math.min(BLOCK, sizes.seqBytes - sent)), index);
      sent += block.length;
      yield block;
    }
  }
  await new Upload({
    client: s3,
    params: { Bucket: bucket, Key: SEED_SEQ, Body: Readable.from(blocks()) },
    partSize: 16 * 1024 * 1024,
    queueSize: 4,
  }).done();
  // A directory marker, so that filesystems which need one (s3fs) see the folder.
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${SEED_SMALL}/`, Body: "" }));
  const limit = pLimit(16);
  await Promise.all(
    Array.from({ length: sizes.smallFiles }, (_, i) =>
      limit(() =>
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `${SEED_SMALL}/${smallFileName(i)}`,
            Body: fillBlock(Buffer.alloc(smallFileSize(i)), i),
          }),
        ),
      ),
    ),
  );
}

// Runs one workload once on a fresh session of `target`, then deletes what it wrote.
export async function runFsWorkload(
  target: FsTarget,
  context: BenchContext,
  workload: FsWorkload,
  sizes: FsSizes,
  run: number,
): Promise<Timing> {
  const scratch = `w-${target.name}-${context.endpoint.profile}-${run}`;
  const session = await target.open(context);
  const smallBytes = Array.from({ length: sizes.smallFiles }, (_, i) => smallFileSize(i)).reduce(
    (a, b) => a + b,
    0,
  );
  const check = (timing: Timing, expected: number): Timing => {
    if (timing.bytes !== expected) {
      throw new BenchError(
        "BENCH_VERIFY_FAILED",
        `${target.name} ${workload} moved ${timing.bytes} bytes instead of ${expected}`,
      );
    }
    return timing;
  };
  try {
    switch (workload) {
      case "seq-write":
        return await session.seqWrite(`${scratch}-seq`, sizes.seqBytes);
      case "seq-read":
        return check(await session.seqRead(SEED_SEQ), sizes.seqBytes);
      case "random-read": {
        const expected = randomReadOps(sizes.seqBytes, sizes.randomReads, 7).reduce(
          (a, op) => a + op.length,
          0,
        );
        return check(await session.randomReads(SEED_SEQ, sizes.seqBytes, sizes.randomReads), expected);
      }
      case "small-write":
        return check(await session.smallWrite(`${scratch}-small`, sizes.smallFiles), smallBytes);
      case "small-read":
        return check(await session.smallRead(SEED_SMALL, sizes.smallFiles), smallBytes);
    }
  } finally {
    await session.close();
    await deletePrefix(context.s3, context.endpoint.bucket, scratch);
  }
}

// Deletes every object whose key starts with `prefix`, 1000 per request.
export async function deletePrefix(s3: S3Client, bucket: string, prefix: string): Promise<void> {
  for (;;) {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    const keys = (page.Contents ?? []).flatMap((object) => (object.Key ? [{ Key: object.Key }] : []));
    if (keys.length === 0) return;
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
  }
}
