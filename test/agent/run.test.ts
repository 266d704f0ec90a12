// runAgent in this process with the real snapshot engine (CRIU), s3rver, redis-server and
// the IMDS emulator. This process serves the FUSE mount: the test reads the task's files
// through S3 only.
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type AgentOptions, type AgentResult, runAgent, sendControlRequest } from "../../agent/index.js";
import { ImdsEmulator } from "../../cloud/index.js";
import { createLogger } from "../../common/log.js";
import type { CheckpointOptions, RunningTask } from "../../criu/index.js";
import { ExitCode } from "../../protocol/index.js";
import { AgentFixture, BUCKET, waitFor } from "./agent-fixture.js";
import { observedBinding as observe } from "./observed-binding.js";

// Every task the tests' engines started: killed at the end should a failed test leave one.
const started: RunningTask[][] = [];
function observedBinding(...args: Parameters<typeof observe>) {
  const observed = observe(...args);
  started.push(observed.tasks);
  return observed;
}

describe("runAgent with the real engine", () => {
  let f: AgentFixture;
  let imds: ImdsEmulator;

  beforeAll(async () => {
    f = await AgentFixture.start();
  });
  afterEach(async () => {
    await imds?.stop();
  });
  afterAll(async () => {
    for (const task of started.flat()) task.kill("SIGKILL");
    await f?.close();
  });

  async function options(
    task: string,
    extra: Partial<AgentOptions> & Pick<AgentOptions, "engine">,
  ): Promise<AgentOptions> {
    imds = new ImdsEmulator();
    await imds.start();
    return {
      taskId: task,
      workDir: `s3://${BUCKET}/jobs/${task}`,
      mountpoint: f.mountpoint,
      cacheDir: join(f.dir, `cache-${task}`),
      client: f.client,
      imdsEndpoint: imds.endpoint,
      imdsPollIntervalMs: 100,
      redisUrl: f.cloud.redis.url,
      home: f.home,
      eventsFlushTimeoutMs: 10_000,
      // The controller's way: exit 178 at once after a final checkpoint (the scheduler way,
      // waiting for the reclaim, is test/agent/scheduler.test.ts's).
      onCheckpointed: "exit",
      ...(process.env.SNAPCTL_TEST_LOG
        ? { logger: createLogger("agent-test", process.env.SNAPCTL_TEST_LOG) }
        : {}),
      ...extra,
    };
  }

  // The agent answers on its control socket and its task runs.
  async function running(task: string): Promise<void> {
    await waitFor(`task ${task} running`, async () => {
      const status = await sendControlRequest(task, { command: "status" }, { home: f.home }).catch(
        () => undefined,
      );
      return status?.state === "running";
    });
  }

  async function eventTypes(task: string): Promise<string[]> {
    // Heartbeats (every 30 s by default) come whenever a run is slow: not part of the story.
    return (await f.events()).filter((e) => e.taskId === task && e.type !== "heartbeat").map((e) => e.type);
  }

  // The task's processes below its namespace init (the shim).
  async function childrenOf(pid: number): Promise<number[]> {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
    return text.trim() ? text.trim().split(/\s+/).map(Number) : [];
  }

  // Whether the process has a handler for `signal` (SigCgt in /proc/<pid>/status).
  async function catches(pid: number, signal: "SIGUSR1"): Promise<boolean> {
    const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    const mask = BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(status)?.[1] ?? "0"}`);
    return ((mask >> BigInt(osConstants.signals[signal] - 1)) & 1n) === 1n;
  }

  it("keeps the task's exit code, output and a Nextflow-style .exitcode when the task exits on its own", async () => {
    const { binding } = observedBinding();
    const result = await runAgent(
      await options("t-exit", {
        engine: binding,
        command: ["sh", "-c", "echo out; echo err >&2; pwd; exit 3"],
      }),
    );
    expect(result).toMatchObject({ exitCode: 3, outcome: "exited", taskExit: { exitCode: 3, signal: null } });
    expect(await f.getText("jobs/t-exit/.exitcode")).toBe("3\n");
    // The task ran in its work dir on the mount.
    expect(await f.getText("jobs/t-exit/.command.out")).toBe(
      `out\n${f.mountpoint}/s3/${BUCKET}/jobs/t-exit\n`,
    );
    expect(await f.getText("jobs/t-exit/.command.err")).toBe("err\n");
    expect(await eventTypes("t-exit")).toEqual(["started", "failed"]);
    const failed = (await f.events()).find((e) => e.taskId === "t-exit" && e.type === "failed");
    expect(failed).toMatchObject({ exitCode: 3, error: "task exited with code 3" });
  });

  it("exits 175 when the final checkpoint fails, and says why", async () => {
    const { binding } = observedBinding();
    const signals = new EventEmitter();
    // A task holding a device CRIU cannot dump: every checkpoint of it fails.
    const run = runAgent(
      await options("t-fail", {
        engine: binding,
        signals,
        command: ["sh", "-c", "exec 3<>/dev/fuse; while :; do sleep 0.1; done"],
      }),
    );
    await running("t-fail");
    signals.emit("SIGTERM");
    const result = await run;
    expect(result.exitCode).toBe(ExitCode.dumpFailed);
    expect(result.outcome).toBe("checkpoint-failed");
    expect(result.error?.code).toBe("AGENT_CHECKPOINT_FAILED");
    expect(result.error?.message).toContain('Checkpoint (sigterm) of task "t-fail" failed');
    expect(await eventTypes("t-fail")).toEqual([
      "started",
      "interrupted",
      "checkpoint-started",
      "checkpoint-failed",
      "failed",
    ]);
  });

  it("reports the task's own exit, not a failed checkpoint, when the task exits during the final checkpoint", async () => {
    const signals = new EventEmitter();
    // Just before the dump reaches CRIU, the task is told to exit, and does.
    const { binding } = observedBinding(async (_options: CheckpointOptions, tasks: RunningTask[]) => {
      const task = tasks.at(-1) as RunningTask;
      // The task may still be starting: wait until its shell has set its trap.
      let shell: number | undefined;
      await waitFor("the task's USR1 trap", async () => {
        for (const pid of await childrenOf(task.pid)) if (await catches(pid, "SIGUSR1")) shell = pid;
        return shell !== undefined;
      });
      process.kill(shell as number, "SIGUSR1");
      await task.exited;
    });
    const run = runAgent(
      await options("t-race", {
        engine: binding,
        signals,
        command: ["sh", "-c", "trap 'exit 5' USR1; while :; do sleep 0.1; done"],
      }),
    );
    await running("t-race");
    signals.emit("SIGTERM");
    const result: AgentResult = await run;
    expect(result).toMatchObject({ exitCode: 5, outcome: "exited", taskExit: { exitCode: 5 } });
    expect(await f.getText("jobs/t-race/.exitcode")).toBe("5\n");
    const types = await eventTypes("t-race");
    expect(types.slice(0, 3)).toEqual(["started", "interrupted", "checkpoint-started"]);
    expect(types.at(-1)).toBe("failed");
    expect(types).not.toContain("checkpoint-failed");
  });
  it("a notice arriving while a periodic checkpoint runs: that one commits, then the final one on top of it, exit 178", async () => {
    let noticed = false;
    const { binding } = observedBinding(async (options) => {
      if (options.reason !== "periodic" || noticed) return;
      noticed = true;
      imds.scheduleInterruption({ in: 30 });
      // The agent's watcher polls every 100 ms: it sees the notice while this checkpoint runs.
      await new Promise((resolve) => setTimeout(resolve, 500));
    });
    const result = await runAgent(
      await options("t-busy", {
        engine: binding,
        checkpointIntervalMs: 1000,
        command: ["sh", "-c", "while :; do sleep 0.1; done"],
      }),
    );
    expect(result.exitCode, result.error?.message).toBe(ExitCode.checkpointed);
    expect(result.checkpoints.map((c) => [c.generation, c.parentGeneration])).toEqual([
      [1, null],
      [2, 1],
    ]);
    const events = (await f.events()).filter((e) => e.taskId === "t-busy" && e.type !== "heartbeat") as Array<
      Record<string, unknown>
    >;
    expect(events.map((e) => e.type)).toEqual([
      "started",
      "checkpoint-started",
      "checkpoint-committed",
      "interrupted",
      "checkpoint-started",
      "checkpoint-committed",
    ]);
    expect(events[2]).toMatchObject({ reason: "periodic", generation: 1 });
    expect(events[3]).toMatchObject({ reason: "spot-terminate" });
    expect(events[5]).toMatchObject({ reason: "spot-terminate", generation: 2, parentGeneration: 1 });
  });

  it("aborting the agent's signal stops it as SIGTERM does: a final checkpoint (not itself aborted), exit 178", async () => {
    const { binding } = observedBinding();
    const abort = new AbortController();
    const run = runAgent(
      await options("t-abort", {
        engine: binding,
        signal: abort.signal,
        command: ["sh", "-c", "while :; do sleep 0.1; done"],
      }),
    );
    await running("t-abort");
    abort.abort();
    const result = await run;
    expect(result.exitCode, result.error?.message).toBe(ExitCode.checkpointed);
    expect(result.checkpoints).toHaveLength(1);
    const interrupted = (await f.events()).find((e) => e.taskId === "t-abort" && e.type === "interrupted");
    expect(interrupted).toMatchObject({ reason: "aborted" });
  });

  // Last in this file: restarting redis-server empties it.
  it("with Redis down for the whole run, keeps checkpointing and delivers every event, in order, once Redis is back", async () => {
    await f.cloud.redis.stop();
    const { binding } = observedBinding();
    const run = runAgent(
      await options("t-redis", {
        engine: binding,
        checkpointIntervalMs: 1000,
        eventsFlushTimeoutMs: 120_000,
        command: ["sh", "-c", "i=0; while [ $i -lt 30 ]; do i=$((i+1)); sleep 0.1; done; exit 0"],
      }),
    );
    // The task ends while Redis is still down: every event waits in the agent's outbox file.
    await waitFor("t-redis to finish", async () =>
      (await f.outboxFile("t-redis")).includes('"type":"succeeded"'),
    );
    const buffered = (await f.outboxFile("t-redis"))
      .split("\n")
      .filter((line) => line.startsWith('{"add"'))
      .map((line) => (JSON.parse(line) as { add: { id: string } }).add.id);
    await f.cloud.redis.start();
    const result = await run;
    expect(result.exitCode).toBe(0);
    expect(result.checkpoints.length).toBeGreaterThanOrEqual(1);
    const events = (await f.events()).filter((e) => e.taskId === "t-redis") as unknown as Array<{
      id: string;
      type: string;
      seq: number;
    }>;
    expect(events.map((e) => e.id)).toEqual(buffered);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));
    expect(events[0]?.type).toBe("started");
    expect(events.at(-1)?.type).toBe("succeeded");
    expect(events.filter((e) => e.type === "checkpoint-committed")).toHaveLength(result.checkpoints.length);
    expect(events.map((e) => e.type)).not.toContain("checkpoint-failed");
  });
});
