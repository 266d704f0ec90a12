// A compute environment with `snapshots.enabled: false`: the agent never checkpoints; a
// spot notice lets the task run on until shortly before the reclaim (it may finish), then
// stops it: exit 179, outcome "interrupted", and the controller re-runs it from scratch.
// Real engine (CRIU), s3rver, redis-server, IMDS emulator; the compute environment is a
// real file loaded as `snapctl agent run --compute-env` loads it.
import { EventEmitter } from "node:events";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ListObjectsCommand } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentOptions,
  agentOptionsFromComputeEnvironment,
  runAgent,
  sendControlRequest,
} from "../../agent/index.js";
import { ImdsEmulator } from "../../cloud/index.js";
import { createLogger } from "../../common/log.js";
import { type ComputeEnvironment, loadComputeEnvironment, planRecovery } from "../../controller/index.js";
import type { RunningTask } from "../../criu/index.js";
import { ExitCode } from "../../protocol/index.js";
import { AgentFixture, BUCKET, waitFor } from "./agent-fixture.js";
import { observedBinding } from "./observed-binding.js";

describe("agent with snapshots disabled in the compute environment", () => {
  let f: AgentFixture;
  let imds: ImdsEmulator | undefined;
  let env: ComputeEnvironment;
  const tasks: RunningTask[][] = [];

  beforeAll(async () => {
    f = await AgentFixture.start();
    const file = join(f.dir, "compute-env.yaml");
    await writeFile(
      file,
      [
        "name: no-snapshots",
        "provider: local",
        "region: us-east-1",
        "workDir: s3://work/jobs",
        "snapshots:",
        "  enabled: false",
        "  interval: 10s",
        "agent:",
        "  imdsPollInterval: 100ms",
        "",
      ].join("\n"),
    );
    env = await loadComputeEnvironment(file);
  });
  afterEach(async () => {
    await imds?.stop();
  });
  afterAll(async () => {
    for (const t of tasks.flat()) t.kill("SIGKILL");
    await f?.close();
  });

  async function options(task: string, extra: Partial<AgentOptions>): Promise<AgentOptions> {
    imds = new ImdsEmulator();
    await imds.start();
    const observed = observedBinding();
    tasks.push(observed.tasks);
    return {
      ...agentOptionsFromComputeEnvironment(env),
      taskId: task,
      workDir: `s3://${BUCKET}/jobs/${task}`,
      engine: observed.binding,
      mountpoint: f.mountpoint,
      cacheDir: join(f.dir, `cache-${task}`),
      client: f.client,
      imdsEndpoint: imds.endpoint,
      redisUrl: f.cloud.redis.url,
      home: f.home,
      // The controller's way (test/agent/scheduler.test.ts has the scheduler's).
      onCheckpointed: "exit",
      heartbeatIntervalMs: 200,
      ...(process.env.SNAPCTL_TEST_LOG
        ? { logger: createLogger("agent-test", process.env.SNAPCTL_TEST_LOG) }
        : {}),
      ...extra,
    };
  }

  const events = async (task: string) => (await f.events()).filter((e) => e.taskId === task);
  const types = async (task: string) =>
    (await events(task)).map((e) => e.type).filter((t) => t !== "heartbeat");

  async function snapshotKeys(task: string): Promise<string[]> {
    const r = await f.client.send(
      new ListObjectsCommand({ Bucket: BUCKET, Prefix: `jobs/${task}/.snapshots/` }),
    );
    return (r.Contents ?? []).map((o) => o.Key as string);
  }

  async function running(task: string): Promise<void> {
    await waitFor(`task ${task} running`, async () => {
      const status = await sendControlRequest(task, { command: "status" }, { home: f.home }).catch(
        () => undefined,
      );
      return status?.state === "running";
    });
  }

  it("takes no checkpoint of any kind; a notice stops the task without one: exit 179, outcome interrupted, and the controller plans a re-run", async () => {
    expect(agentOptionsFromComputeEnvironment(env)).toMatchObject({
      snapshots: false,
      checkpointIntervalMs: 10_000,
      imdsPollIntervalMs: 100,
    });
    const id = "t-nosnap";
    const run = runAgent(
      await options(id, {
        // Even a short periodic interval must not checkpoint.
        checkpointIntervalMs: 300,
        // The reclaim is closer than the agent's stop margin: it stops the task at once.
        noticeWindowMs: 3_000,
        command: ["sh", "-c", "while :; do echo tick; sleep 0.1; done"],
      }),
    );
    await running(id);
    const status = await sendControlRequest(id, { command: "status" }, { home: f.home });
    expect(status).toMatchObject({ snapshots: false, checkpoints: 0 });
    const manual = await sendControlRequest(id, { command: "checkpoint" }, { home: f.home }).catch(
      (err: unknown) => err,
    );
    expect(manual).toMatchObject({ code: "AGENT_SNAPSHOTS_DISABLED" });
    // Several periodic intervals (and heartbeats) go by.
    await waitFor(
      "five heartbeats",
      async () => (await events(id)).filter((e) => e.type === "heartbeat").length >= 5,
    );
    imds?.scheduleInterruption({ in: 60 });
    const result = await run;
    expect(result.exitCode, result.error?.message).toBe(ExitCode.interrupted);
    expect(result.outcome).toBe("interrupted");
    expect(result.checkpoints).toEqual([]);
    const task = tasks.at(-1)?.[0] as RunningTask;
    expect(await task.exited).toMatchObject({ exitCode: null });
    expect(await snapshotKeys(id)).toEqual([]);
    expect(await types(id)).toEqual(["started", "interrupted"]);
    const interrupted = (await events(id)).find((e) => e.type === "interrupted");
    expect(interrupted).toMatchObject({ reason: "spot-terminate", checkpointed: false });
    expect(interrupted?.computeMs).toBeGreaterThan(0);
    // What the controller decides for it: a re-run from scratch.
    const plan = planRecovery(
      {
        interruptions: 1,
        attempts: 1,
        arch: "x86_64",
        lastSnapshotId: undefined,
        snapshotArch: undefined,
      } as unknown as Parameters<typeof planRecovery>[0],
      env,
    );
    expect(plan.action).toBe("rerun");
  });

  it("under a notice with time left, a task that finishes on its own succeeds (no interruption reported)", async () => {
    const id = "t-nosnap-finish";
    const run = runAgent(
      await options(id, {
        // 60 s to the reclaim: the agent lets the task run for 50 s more.
        noticeWindowMs: 60_000,
        command: ["sh", "-c", "i=0; while [ $i -lt 30 ]; do i=$((i+1)); sleep 0.1; done; echo done; exit 0"],
      }),
    );
    await running(id);
    const noticeAt = Date.now();
    imds?.scheduleInterruption({ in: 60 });
    const result = await run;
    expect(result.exitCode, result.error?.message).toBe(0);
    // The task ran on after the notice, and its heartbeats went on.
    const all = await events(id);
    const succeededAt = all.find((e) => e.type === "succeeded")?.at as number;
    expect(all.some((e) => e.type === "heartbeat" && e.at > noticeAt + 300 && e.at < succeededAt)).toBe(true);
    expect(result.outcome).toBe("exited");
    expect(await f.getText(`jobs/${id}/.command.out`)).toBe("done\n");
    expect(await types(id)).toEqual(["started", "succeeded"]);
  });

  it("SIGTERM stops the task at once, without a checkpoint", async () => {
    const id = "t-nosnap-term";
    const signals = new EventEmitter();
    const run = runAgent(
      await options(id, { signals, command: ["sh", "-c", "while :; do sleep 0.1; done"] }),
    );
    await running(id);
    signals.emit("SIGTERM");
    const result = await run;
    expect(result.exitCode).toBe(ExitCode.interrupted);
    expect(result.outcome).toBe("interrupted");
    expect(await snapshotKeys(id)).toEqual([]);
    expect(await types(id)).toEqual(["started", "interrupted"]);
  });
});
