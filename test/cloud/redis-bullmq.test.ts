import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue, QueueEvents, Worker } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../../cloud/index.js";

describe("BullMQ through the embedded redis-server", () => {
  let dir: string;
  let redis: RedisServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "snap-redis-"));
    redis = new RedisServer({ directory: dir });
    await redis.start();
  });

  afterAll(async () => {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs a job round trip", async () => {
    const url = new URL(redis.url);
    const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
    const queue = new Queue("roundtrip", { connection });
    const events = new QueueEvents("roundtrip", { connection });
    const worker = new Worker("roundtrip", async (job) => ({ doubled: (job.data as { n: number }).n * 2 }), {
      connection,
    });
    try {
      await events.waitUntilReady();
      const job = await queue.add("double", { n: 21 });
      const result = await job.waitUntilFinished(events, 20_000);
      expect(result).toEqual({ doubled: 42 });
      expect(await queue.getJobCounts("completed")).toEqual({ completed: 1 });
    } finally {
      await worker.close();
      await events.close();
      await queue.close();
    }
  });
});
