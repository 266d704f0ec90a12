import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventOutbox, TaskEventFactory } from "../../agent/index.js";
import { RedisServer } from "../../cloud/index.js";
import { EVENTS_QUEUE, taskEventSchema } from "../../protocol/index.js";

describe("EventOutbox against a real redis-server that goes away", () => {
  let dir: string;
  let redis: RedisServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "snap-agent-outbox-"));
    redis = new RedisServer({ directory: join(dir, "redis") });
    await redis.start();
  });

  afterAll(async () => {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  // Job ids (= event ids) in the queue, oldest first.
  async function queued(prefix: string): Promise<string[]> {
    const url = new URL(redis.url);
    const queue = new Queue(EVENTS_QUEUE, {
      prefix,
      connection: { host: url.hostname, port: Number(url.port) },
    });
    try {
      const jobs = await queue.getJobs(["waiting"], 0, -1, true);
      for (const job of jobs) expect(taskEventSchema.safeParse(job.data).success).toBe(true);
      return jobs.map((job) => job.id as string);
    } finally {
      await queue.close();
    }
  }

  it("delivers in order, buffers while Redis is down, and delivers the rest once it is back: none lost, none twice", async () => {
    const file = join(dir, "a", "outbox.jsonl");
    const outbox = await EventOutbox.open({
      file,
      redisUrl: redis.url,
      prefix: "t1",
      retryBaseMs: 50,
      retryMaxMs: 200,
    });
    const events = new TaskEventFactory({ taskId: "t-1", instanceId: "i-1" });
    try {
      const first = [events.make("started", {}), events.make("checkpoint-started", {})];
      for (const e of first) await outbox.publish(e);
      expect(await outbox.flush({ timeoutMs: 30_000 })).toBe(true);
      expect(await queued("t1")).toEqual(first.map((e) => e.id));

      await redis.stop();
      const second = [
        events.make("checkpoint-committed", {
          snapshotId: "1",
          bytesStored: 10,
          progressMs: 5,
          arch: "x86_64",
        }),
        events.make("interrupted", { reason: "spot notice" }),
        events.make("checkpoint-committed", {
          snapshotId: "2",
          bytesStored: 3,
          progressMs: 9,
          arch: "x86_64",
        }),
      ];
      // publish() returns with Redis down: the events wait in memory and on disk.
      for (const e of second) await outbox.publish(e);
      expect(await outbox.flush({ timeoutMs: 300 })).toBe(false);
      expect(outbox.pending).toBe(3);
      const onDisk = await readFile(file, "utf8");
      for (const e of second) expect(onDisk).toContain(e.id);

      // The restarted server kept what it had (append-only persistence): the queue holds
      // every event once, in publishing order.
      await redis.start();
      expect(await outbox.flush({ timeoutMs: 30_000 })).toBe(true);
      expect(await queued("t1")).toEqual([...first, ...second].map((e) => e.id));
      expect(outbox.stats).toEqual({ delivered: 5, pending: 0, dropped: 0 });
      // Everything delivered: the file is emptied.
      expect(await readFile(file, "utf8")).toBe("");
    } finally {
      await outbox.close();
    }
  });

  it("keeps undelivered events in its file across agents and the next outbox sends them first", async () => {
    const file = join(dir, "b", "outbox.jsonl");
    const events = new TaskEventFactory({ taskId: "t-2", instanceId: "i-2" });
    await redis.stop();
    const left = [events.make("started", {}), events.make("heartbeat", { computeMs: 10 })];
    const first = await EventOutbox.open({ file, redisUrl: redis.url, prefix: "t2", retryBaseMs: 50 });
    for (const e of left) await first.publish(e);
    await first.close({ flushTimeoutMs: 200 });

    await redis.start();
    const second = await EventOutbox.open({ file, redisUrl: redis.url, prefix: "t2", retryBaseMs: 50 });
    try {
      expect(second.pending).toBe(2);
      const next = events.make("succeeded", {});
      await second.publish(next);
      expect(await second.flush({ timeoutMs: 30_000 })).toBe(true);
      expect(await queued("t2")).toEqual([...left, next].map((e) => e.id));
    } finally {
      await second.close();
    }
  });

  it("without Redis configured, keeps events in the file only", async () => {
    const file = join(dir, "c", "outbox.jsonl");
    const outbox = await EventOutbox.open({ file });
    const event = new TaskEventFactory({ taskId: "t-3", instanceId: "i-3" }).make("started", {});
    await outbox.publish(event);
    await outbox.close();
    expect(JSON.parse((await readFile(file, "utf8")).trim())).toEqual({ add: event });
  });

  it("refuses an outbox file that is damaged before its last line", async () => {
    const file = join(dir, "d.jsonl");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(file, 'garbage\n{"done":"x"}\n');
    await expect(EventOutbox.open({ file })).rejects.toMatchObject({ code: "AGENT_OUTBOX_CORRUPT" });
    // A torn last line (a crash mid-append) is tolerated.
    await writeFile(file, '{"done":"x"}\n{"add":{"id"');
    const outbox = await EventOutbox.open({ file });
    expect(outbox.pending).toBe(0);
    await outbox.close();
  });
});
