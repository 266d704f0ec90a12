import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FsTarget } from "../../bench/fs/fs-target.js";
import { runFsWorkload, seedFsObjects } from "../../bench/fs/fs-workloads.js";
import { rcloneTarget } from "../../bench/fs/rclone-target.js";
import { countObjects } from "../../bench/fs/s3-checks.js";
import { s3fsTarget } from "../../bench/fs/s3fs-target.js";
import { sdkTarget } from "../../bench/fs/sdk-target.js";
import type { BenchContext } from "../../bench/harness/context.js";
import { S3Server } from "../../cloud/index.js";

const sizes = { seqBytes: 12 * 1024 * 1024 + 5, randomReads: 8, smallFiles: 12 };
const targets: FsTarget[] = [s3fsTarget, rcloneTarget, sdkTarget];

// Each target's adapter really moves the bytes the workload says it moved (the harness
// checks the counts, throwing BENCH_VERIFY_FAILED), cleans up what it wrote, and leaves
// no mount behind.
describe("filesystem benchmark targets", () => {
  let dir: string;
  let server: S3Server;
  let s3: S3Client;
  let context: BenchContext;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bench-fs-"));
    server = new S3Server({ directory: join(dir, "s3"), buckets: ["bench"] });
    await server.start();
    s3 = new S3Client({
      endpoint: server.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    const endpoint = {
      profile: "direct" as const,
      url: server.endpoint,
      directUrl: server.endpoint,
      bucket: "bench",
      region: "us-east-1",
      accessKeyId: "S3RVER",
      secretAccessKey: "S3RVER",
    };
    context = { endpoint, workDir: dir, s3, signal: new AbortController().signal, log: () => {} };
    await seedFsObjects(s3, "bench", sizes);
  });
  afterAll(async () => {
    s3?.destroy();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  for (const target of targets) {
    it.skipIf(target.name !== "sdk" && process.getuid?.() !== 0)(
      `${target.name}: every workload`,
      async () => {
        expect(await target.unavailable()).toBeUndefined();
        const before = await countObjects(s3, "bench", "");
        for (const workload of [
          "seq-write",
          "seq-read",
          "random-read",
          "small-write",
          "small-read",
        ] as const) {
          const timing = await runFsWorkload(target, context, workload, sizes, 0);
          expect(timing.seconds).toBeGreaterThan(0);
        }
        // What the writes created was deleted again.
        expect(await countObjects(s3, "bench", "")).toBe(before);
        const mounts = await readFile("/proc/self/mountinfo", "utf8");
        expect(mounts).not.toContain(dir);
      },
    );
  }
});
