// The end-to-end test: real agents (child processes running snapctl), the real
// snapshot engine and CRIU, s3rver, redis-server and the IMDS emulator.
import { join } from "node:path";
import { ListObjectsCommand } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sendControlRequest } from "../../agent/index.js";
import { ImdsEmulator } from "../../cloud/index.js";
import { ExitCode } from "../../protocol/index.js";
import { AgentFixture, waitFor } from "./agent-fixture.js";

// A deterministic task: its output is the same however often it is interrupted.
function countingTask(steps: number, sleep: string): { argv: string[]; expected: string } {
  const script = `i=0; while [ $i -lt ${steps} ]; do echo "step $i"; i=$((i+1)); sleep ${sleep}; done; echo finished`;
  const expected = `${Array.from({ length: steps }, (_, i) => `step ${i}\n`).join("")}finished\n`;
  return { argv: ["sh", "-c", script], expected };
}

interface Outcome {
  exitCode: number;
  outcome: string;
  restored?: { generation: number; resumeMs: number };
  checkpoints: Array<{
    generation: number;
    parentGeneration: number | null;
    mode: string;
    totalMs: number;
    freezeMs: number;
    bytesUploaded: number;
  }>;
  error?: { code: string; message: string };
}

async function listKeys(f: AgentFixture, prefix: string): Promise<string[]> {
  const r = await f.client.send(new ListObjectsCommand({ Bucket: "work", Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key as string).sort();
}

const outcomeOf = (stdout: unknown) =>
  JSON.parse(String(stdout).trim().split("\n").at(-1) as string) as Outcome;

describe("agent: interruption, final checkpoint, restore on a new machine", () => {
  let f: AgentFixture;
  const imdses: ImdsEmulator[] = [];

  // Each "machine" has its own instance metadata service.
  async function machine(): Promise<ImdsEmulator> {
    const imds = new ImdsEmulator();
    await imds.start();
    imdses.push(imds);
    return imds;
  }

  beforeAll(async () => {
    f = await AgentFixture.start();
  });
  afterEach(async () => {
    for (const imds of imdses.splice(0)) await imds.stop();
  });
  afterAll(async () => {
    await f?.close();
  });

  async function running(task: string): Promise<void> {
    await waitFor(`task ${task} running`, async () => {
      const status = await sendControlRequest(task, { command: "status" }, { home: f.home }).catch(
        () => undefined,
      );
      return status?.state === "running";
    });
  }

  it("commits a final snapshot on a spot notice (20 s window) and, run the controller's way (--on-checkpointed exit), exits 178 before the deadline; a new agent restores the task, which finishes with the uninterrupted output", async () => {
    const task = countingTask(150, "0.2");
    const first = await machine();
    const common = [
      "--task",
      "t-int",
      "--workdir",
      "s3://work/jobs/int",
      "--mountpoint",
      f.mountpoint,
      "--on-checkpointed",
      "exit",
      "--json",
    ];
    const a = f.agent(
      [
        ...common,
        "--cache-dir",
        join(f.dir, "cache-a"),
        "--notice-window",
        "20s",
        "--imds-poll-interval",
        "200ms",
        "--",
        ...task.argv,
      ],
      { AWS_EC2_METADATA_SERVICE_ENDPOINT: first.endpoint },
    );
    await running("t-int");

    // The manual trigger reaches the running agent through its socket.
    const manual = await f.snapctl(["checkpoint", "t-int", "--json"]);
    expect(manual.exitCode, String(manual.stderr)).toBe(0);
    expect(JSON.parse(String(manual.stdout))).toMatchObject({ generation: 1, parentGeneration: null });

    const interruption = first.scheduleInterruption({ in: 20 });
    const ra = await a;
    const exitedAt = Date.now();
    expect(ra.exitCode, String(ra.stderr)).toBe(ExitCode.checkpointed);
    expect(exitedAt).toBeLessThan(interruption.deadline);
    const outcomeA = outcomeOf(ra.stdout);
    expect(outcomeA.outcome).toBe("checkpointed");
    expect(outcomeA.checkpoints.map((c) => [c.generation, c.parentGeneration])).toEqual([
      [1, null],
      [2, 1],
    ]);

    // A new machine: new IMDS, clean cache, new mount (same path, as on every instance).
    const second = await machine();
    const rb = await f.agent([...common, "--cache-dir", join(f.dir, "cache-b"), "--restore"], {
      AWS_EC2_METADATA_SERVICE_ENDPOINT: second.endpoint,
    });
    expect(rb.exitCode, String(rb.stderr)).toBe(0);
    const outcomeB = outcomeOf(rb.stdout);
    expect(outcomeB.outcome).toBe("exited");
    expect(outcomeB.restored?.generation).toBe(2);
    const [manualCp, finalCp] = outcomeA.checkpoints;
    console.log(
      `[agent] manual checkpoint: ${manualCp?.mode}, ${manualCp?.bytesUploaded} B uploaded, freeze ${Math.round(manualCp?.freezeMs ?? 0)} ms, total ${Math.round(manualCp?.totalMs ?? 0)} ms; ` +
        `final: ${finalCp?.mode}, ${finalCp?.bytesUploaded} B, freeze ${Math.round(finalCp?.freezeMs ?? 0)} ms, total ${Math.round(finalCp?.totalMs ?? 0)} ms; ` +
        `agent exited ${interruption.deadline - exitedAt} ms before the deadline; restore resumed the task in ${Math.round(outcomeB.restored?.resumeMs ?? 0)} ms`,
    );
    expect(await f.getText("jobs/int/.command.out")).toBe(task.expected);

    // Heartbeats (every 30 s by default) may come on a slow run: not part of the story.
    const events = (await f.events()).filter((e) => e.taskId === "t-int" && e.type !== "heartbeat");
    expect(events.map((e) => e.type)).toEqual([
      "started",
      "checkpoint-started",
      "checkpoint-committed",
      "interrupted",
      "checkpoint-started",
      "checkpoint-committed",
      "restored",
      "succeeded",
    ]);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(events[0]?.instanceId).toBe(first.instanceId);
    expect(events.at(-1)?.instanceId).toBe(second.instanceId);
    const final = events[5] as Record<string, unknown>;
    expect(final).toMatchObject({
      snapshotId: "2",
      generation: 2,
      mode: expect.any(String),
      reason: "spot-terminate",
    });
    expect(final.bytesStored).toBeTypeOf("number");
    expect(final.freezeMs).toBeTypeOf("number");
    expect(final.durationMs).toBeTypeOf("number");
    expect(events[6]).toMatchObject({ generation: 2, resumeMs: expect.any(Number) });
  }, 200_000);

  it("on SIGTERM from the container runtime: final checkpoint, then it waits for the kill; a second SIGTERM ends the wait at once with 178, and the task resumes elsewhere", async () => {
    const task = countingTask(100, "0.1");
    const imds = await machine();
    const common = [
      "--task",
      "t-term",
      "--workdir",
      "s3://work/jobs/term",
      "--mountpoint",
      f.mountpoint,
      "--json",
    ];
    // A grace far beyond the test's timeout: only the second SIGTERM can end the wait.
    const a = f.agent(
      [...common, "--cache-dir", join(f.dir, "cache-c"), "--reclaim-grace", "10m", "--", ...task.argv],
      {
        AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
      },
    );
    await running("t-term");
    a.kill("SIGTERM");
    await waitFor("the agent waiting for the reclaim", async () => {
      const status = await sendControlRequest("t-term", { command: "status" }, { home: f.home }).catch(
        () => undefined,
      );
      return status?.state === "waiting-for-reclaim";
    });
    a.kill("SIGTERM");
    const ra = await a;
    expect(ra.exitCode, String(ra.stderr)).toBe(ExitCode.checkpointed);
    expect(outcomeOf(ra.stdout).checkpoints).toHaveLength(1);

    const rb = await f.agent([...common, "--cache-dir", join(f.dir, "cache-d"), "--restore"], {
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
    });
    expect(rb.exitCode, String(rb.stderr)).toBe(0);
    expect(await f.getText("jobs/term/.command.out")).toBe(task.expected);
    // The task ended on its own: its memory images are gone, its manifest kept as a record.
    expect(await listKeys(f, "jobs/term/.snapshots/")).toEqual([
      "jobs/term/.snapshots/t-term/finished.json",
      "jobs/term/.snapshots/t-term/retired/000001.json",
    ]);
    const again = await f.agent([...common, "--cache-dir", join(f.dir, "cache-e"), "--restore"], {
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
    });
    expect(again.exitCode).toBe(ExitCode.restoreFailed);
    expect(outcomeOf(again.stdout).error).toMatchObject({ code: "AGENT_NO_SNAPSHOT" });
    expect(outcomeOf(again.stdout).error?.message).toMatch(
      /finished at .* cleanup removed its memory images/,
    );
    const types = (await f.events())
      .filter((e) => e.taskId === "t-term" && e.type !== "heartbeat")
      .map((e) => e.type);
    expect(types).toEqual([
      "started",
      "interrupted",
      "checkpoint-started",
      "checkpoint-committed",
      "restored",
      "succeeded",
      // The last agent's restore, refused.
      "failed",
    ]);
  });
});
