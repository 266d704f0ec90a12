// Compute time: the agent's heartbeat events and every event once the task runs carry
// computeMs (its run time on this instance); a restored task's run time goes on from its
// snapshot's. The events go through the real outbox and Redis into the controller's
// registry, whose computeMs (what `snapctl status` shows) adds up the instances. Real
// engine (CRIU), s3rver, redis-server and the IMDS emulator.
import { EventEmitter } from "node:events";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type AgentOptions, runAgent, sendControlRequest } from "../../agent/index.js";
import { ImdsEmulator } from "../../cloud/index.js";
import { createLogger } from "../../common/log.js";
import { type TaskEvent, TaskRegistry } from "../../controller/index.js";
import type { RunningTask } from "../../criu/index.js";
import { ExitCode } from "../../protocol/index.js";
import { AgentFixture, BUCKET, waitFor } from "./agent-fixture.js";
import { observedBinding } from "./observed-binding.js";

type Ev = TaskEvent & { runtimeMs?: number; progressMs?: number; seq: number };

describe("agent: compute time in events and in the registry", () => {
  let f: AgentFixture;
  let imds: ImdsEmulator | undefined;
  const tasks: RunningTask[][] = [];

  beforeAll(async () => {
    f = await AgentFixture.start();
  });
  afterEach(async () => {
    await imds?.stop();
  });
  afterAll(async () => {
    for (const t of tasks.flat()) t.kill("SIGKILL");
    await f?.close();
  });

  async function options(
    task: string,
    instanceId: string,
    extra: Partial<AgentOptions>,
  ): Promise<AgentOptions> {
    imds = new ImdsEmulator();
    await imds.start();
    const observed = observedBinding();
    tasks.push(observed.tasks);
    return {
      taskId: task,
      workDir: `s3://${BUCKET}/jobs/${task}`,
      engine: observed.binding,
      mountpoint: f.mountpoint,
      cacheDir: join(f.dir, `cache-${instanceId}`),
      client: f.client,
      imdsEndpoint: imds.endpoint,
      imdsPollIntervalMs: 100,
      redisUrl: f.cloud.redis.url,
      home: f.home,
      // The controller's way (test/agent/scheduler.test.ts has the scheduler's).
      onCheckpointed: "exit",
      instanceId,
      ...(process.env.SNAPCTL_TEST_LOG
        ? { logger: createLogger("agent-test", process.env.SNAPCTL_TEST_LOG) }
        : {}),
      ...extra,
    };
  }

  const eventsOf = async (task: string, instanceId: string) =>
    ((await f.events()) as Ev[]).filter((e) => e.taskId === task && e.instanceId === instanceId);

  it("heartbeats carry a growing computeMs, a restore continues the run time, and the registry sums the instances' compute time", async () => {
    const id = "t-compute";
    const script = "i=0; while [ $i -lt 40 ]; do echo $i; i=$((i+1)); sleep 0.1; done; exit 0";
    const signals = new EventEmitter();
    const first = runAgent(
      await options(id, "i-first", {
        heartbeatIntervalMs: 200,
        checkpoints: false,
        signals,
        command: ["sh", "-c", script],
      }),
    );
    // Two heartbeats: the task has run for a while on the first instance.
    await waitFor(
      "two heartbeats",
      async () => (await eventsOf(id, "i-first")).filter((e) => e.type === "heartbeat").length >= 2,
    );
    const status = await sendControlRequest(id, { command: "status" }, { home: f.home });
    expect(status.computeMs).toBeGreaterThan(0);
    signals.emit("SIGTERM");
    const a = await first;
    expect(a.exitCode, a.error?.message).toBe(ExitCode.checkpointed);

    const evA = await eventsOf(id, "i-first");
    const beats = evA.filter((e) => e.type === "heartbeat");
    expect(beats.length).toBeGreaterThanOrEqual(2);
    const computeA = evA.map((e) => e.computeMs);
    // Every event once the task ran carries it, never decreasing (the registry keeps the max).
    expect(evA[0]?.type).toBe("started");
    for (const c of computeA) expect(c).toBeTypeOf("number");
    expect(computeA).toEqual([...computeA].sort((x, y) => (x as number) - (y as number)));
    expect(beats.at(-1)?.computeMs).toBeGreaterThan(beats[0]?.computeMs as number);
    // On the first instance, run time is compute time here.
    for (const b of beats) expect(b.runtimeMs).toBe(b.computeMs);
    const committed = evA.find((e) => e.type === "checkpoint-committed") as Ev;
    const progress = committed.progressMs as number;
    expect(progress).toBeGreaterThan(0);
    // The run time at the freeze is at least what the heartbeats before the interruption said.
    const interruptedSeq = (evA.find((e) => e.type === "interrupted") as Ev).seq;
    const before = beats.filter((b) => b.seq < interruptedSeq);
    expect(before.length).toBeGreaterThanOrEqual(2);
    expect(a.checkpoints[0]?.taskRuntimeMs).toBeGreaterThanOrEqual(before.at(-1)?.computeMs as number);

    const second = await runAgent(
      await options(id, "i-second", { heartbeatIntervalMs: 200, checkpoints: false, restore: "required" }),
    );
    expect(second.exitCode, second.error?.message).toBe(0);
    expect(await f.getText(`jobs/${id}/.command.out`)).toBe(
      `${Array.from({ length: 40 }, (_, i) => `${i}\n`).join("")}`,
    );
    const evB = await eventsOf(id, "i-second");
    expect(evB.map((e) => e.type).filter((t) => t !== "heartbeat")).toEqual(["restored", "succeeded"]);
    const lastB = evB.at(-1) as Ev;
    expect(lastB.computeMs).toBeGreaterThan(0);
    // The restored task's run time starts where the snapshot's ended.
    for (const b of evB.filter((e) => e.type === "heartbeat"))
      expect(b.runtimeMs).toBe(Math.round(progress) + (b.computeMs as number));

    // The controller's registry, fed these events as its queue workers would.
    const registry = new TaskRegistry({ redis: f.cloud.redis.url, prefix: "compute-test" });
    try {
      await registry.createTask({ id, command: ["sh", "-c", script], computeEnv: "ce" });
      await launch(registry, id, "i-first", "pending");
      for (const e of evA) await registry.applyEvent(e);
      expect((await registry.getTask(id))?.state).toBe("interrupted");
      const afterFirst = (await registry.getTask(id))?.computeMs as number;
      expect(afterFirst).toBe(Math.max(...computeA.map(Number)));
      expect(afterFirst).toBeGreaterThan(0);
      await launch(registry, id, "i-second", "interrupted");
      for (const e of evB) await registry.applyEvent(e);
      const done = await registry.getTask(id);
      expect(done?.state).toBe("succeeded");
      expect(done?.computeMs).toBe(afterFirst + (lastB.computeMs as number));
    } finally {
      await registry.close();
    }
  });
});

// Records an instance launch as the controller does (restore lease, restoring, launch).
async function launch(
  registry: TaskRegistry,
  id: string,
  instanceId: string,
  from: "pending" | "interrupted",
): Promise<void> {
  const token = (await registry.acquireRestoreLease(id, "test", 60_000)) as number;
  if (from === "interrupted")
    await registry.transition(id, "restoring", { from: "interrupted", fencingToken: token, reason: "test" });
  await registry.recordLaunch(id, {
    fencingToken: token,
    instanceId,
    zone: "local-1a",
    arch: "x86_64",
    instanceType: "m5.large",
    market: "spot",
  });
  await registry.releaseRestoreLease(id, "test", token);
}
