// The agent under a scheduler that re-runs interrupted containers (AWS Batch with spot
// retries, Kubernetes): the real agent, CRIU, FUSE and s3rver, no controller and no Redis.
// Every attempt runs the same command; the work dir is the task's identity. The harness
// (batch-emulator.ts) plays Batch; each case asserts the exit codes it saw and that the
// task's output is the uninterrupted one.
import { ListObjectsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode, taskIdFromWorkDir } from "../../protocol/index.js";
import { AgentFixture, BUCKET } from "./agent-fixture.js";
import { type AttemptRecord, BatchEmulator } from "./batch-emulator.js";

// A deterministic task: its output is the same however often it is interrupted.
function countingTask(steps: number, sleep: string, prelude = ""): { argv: string[]; expected: string } {
  const script = `${prelude}i=0; while [ $i -lt ${steps} ]; do echo "step $i"; i=$((i+1)); sleep ${sleep}; done; echo finished`;
  const expected = `${Array.from({ length: steps }, (_, i) => `step ${i}\n`).join("")}finished\n`;
  return { argv: ["sh", "-c", script], expected };
}

const seen = (records: AttemptRecord[]) => records.map((r) => r.exitCode);

describe("agent under a scheduler: the work dir is the task, retries restore it", () => {
  let f: AgentFixture;
  let batch: BatchEmulator;

  beforeAll(async () => {
    f = await AgentFixture.start();
    batch = new BatchEmulator(f);
  });
  afterAll(async () => {
    await f?.close();
  });

  async function keys(prefix: string): Promise<string[]> {
    const r = await f.client.send(new ListObjectsCommand({ Bucket: BUCKET, Prefix: prefix }));
    return (r.Contents ?? []).map((o) => o.Key as string).sort();
  }

  it("no snapshot yet: --restore auto starts the command fresh, and without Redis the agent adds no wait at exit", async () => {
    const workDir = `s3://${BUCKET}/work/00/fresh`;
    const records = await batch.runJob({ workDir, command: ["sh", "-c", "echo hello"] });
    expect(seen(records)).toEqual([0]);
    expect(records[0]?.outcome?.restored).toBeUndefined();
    expect(await f.getText("work/00/fresh/.command.out")).toBe("hello\n");
    expect(await f.getText("work/00/fresh/.exitcode")).toBe("0\n");
    // Its own log is in the work dir, under the attempt's name.
    const logs = await keys("work/00/fresh/.snapctl/logs/");
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/\/\d{8}T\d{9}Z-i-batch\d{4}\/agent\.log$/);
    const log = (await f.getText(logs[0] as string)) as string;
    expect(log).toContain('"msg":"task started"');
    // The agent used to wait 10 s to deliver its events with no Redis to deliver them to.
    expect(log).toMatch(/"flushTimeoutMs":0,"pending":\d+,"msg":"closing the event outbox"/);
  }, 120_000);

  it("interrupted with a committed checkpoint: the agent waits for the reclaim, Batch's spot retry restores the task, which ends with the uninterrupted output", async () => {
    const workDir = `s3://${BUCKET}/work/1a/interrupted`;
    const task = countingTask(60, "0.2");
    const records = await batch.runJob({
      workDir,
      command: task.argv,
      plan: [{ reclaimAfterStart: { noticeSeconds: 8, afterMs: 2_000 } }],
    });
    expect(seen(records)).toEqual([null, 0]);
    expect(records[0]?.statusReason).toMatch(/^Host EC2 \(instance i-batch\d+\) terminated\.$/);
    expect(records[1]?.outcome?.restored?.generation).toBe(1);
    expect(await f.getText("work/1a/interrupted/.command.out")).toBe(task.expected);
    // Each attempt's agent log reached the work dir, the reclaimed one's before the kill.
    const logs = (await keys("work/1a/interrupted/.snapctl/logs/")).filter((k) => k.endsWith("/agent.log"));
    expect(logs).toHaveLength(2);
    expect(await f.getText(logs[0] as string)).toContain("waiting for the instance to be reclaimed");
  }, 180_000);

  it("the final checkpoint fails: exit 175, and the retry starts the task fresh", async () => {
    const workDir = `s3://${BUCKET}/work/2b/dump-fails`;
    // A task holding a device CRIU cannot dump: every checkpoint of it fails.
    const task = countingTask(150, "0.1", "exec 3<>/dev/fuse; ");
    const records = await batch.runJob({
      workDir,
      command: task.argv,
      plan: [{ reclaimAfterStart: { noticeSeconds: 20, afterMs: 1_000 } }],
    });
    expect(seen(records)).toEqual([ExitCode.dumpFailed, 0]);
    expect(records[0]?.outcome?.outcome).toBe("checkpoint-failed");
    expect(records[1]?.outcome?.restored).toBeUndefined();
    expect(await f.getText("work/2b/dump-fails/.command.out")).toBe(task.expected);
    // CRIU's log of the failed dump is in the work dir.
    const logs = await keys("work/2b/dump-fails/.snapctl/logs/");
    expect(logs.some((k) => k.endsWith("/criu-dump.log"))).toBe(true);
  }, 180_000);

  it("a snapshot that cannot be restored: exit 176, its generations are set aside, and the retry starts the task fresh", async () => {
    const workDir = `s3://${BUCKET}/work/3c/unrestorable`;
    const prefix = "work/3c/unrestorable/";
    const task = countingTask(50, "0.2");
    const records = await batch.runJob({
      workDir,
      command: task.argv,
      plan: [
        { reclaimAfterStart: { noticeSeconds: 8, afterMs: 1_000 } },
        {
          // Every chunk object of the snapshot is damaged before the second attempt.
          before: async () => {
            const chunks = await keys(`${prefix}.snapshots/chunks/`);
            expect(chunks.length).toBeGreaterThan(0);
            for (const key of chunks)
              await f.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "damaged" }));
          },
        },
      ],
    });
    expect(seen(records)).toEqual([null, ExitCode.restoreFailed, 0]);
    expect(records[1]?.outcome?.error?.code).toBe("AGENT_RESTORE_FAILED");
    expect(records[2]?.outcome?.restored).toBeUndefined();
    expect(await f.getText(`${prefix}.command.out`)).toBe(task.expected);
    const id = taskIdFromWorkDir(workDir);
    const setAside = await keys(`${prefix}.snapshots/${id}/unusable/`);
    expect(setAside).toEqual([`${prefix}.snapshots/${id}/unusable/000001.json`]);
  }, 240_000);

  it("derives one stable task id per work dir", () => {
    const a = taskIdFromWorkDir("s3://b/work/3f/8a2b1c");
    expect(a).toBe(taskIdFromWorkDir("s3://b/work/3f/8a2b1c/"));
    expect(a).toMatch(/^8a2b1c-[0-9a-f]{12}$/);
    expect(taskIdFromWorkDir("s3://other/work/3f/8a2b1c")).not.toBe(a);
  });
});
