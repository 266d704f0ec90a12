import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { crashingAfterLaunch, inState, ServiceHarness, until } from "./harness.js";

const h = new ServiceHarness();
beforeAll(() => h.start());
afterAll(() => h.stop());
afterEach(() => h.cleanup());

const SHORT = ["sh", "-c", "sleep 1; echo done"];
const LONG = ["sh", "-c", "sleep 600"];

describe("ControllerService with the local provider", () => {
  it("launches a submitted task and follows it to success, recording every transition with its time", async () => {
    const t = await h.setup({ enabled: false });
    await t.service().ready();
    const task = await t.client.submit({ command: SHORT, computeEnvFile: t.envFile });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 1, interruptions: 0, exitCode: 0 });
    const log = await t.client.registry.transitions(task.id);
    expect(log.map((e) => e.to)).toEqual(["pending", "running", "succeeded"]);
    expect(log.every((e) => e.at >= task.createdAt)).toBe(true);
  });

  it("records a failing task's exit code", async () => {
    const t = await h.setup({ enabled: false });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "exit 3"], computeEnvFile: t.envFile });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "failed", exitCode: 3 });
  });

  it("re-runs from scratch in another zone when snapshots are disabled, killing the old instance at its deadline", async () => {
    const t = await h.setup({ enabled: false });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 3"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    const first = t.provider.instance(running.instanceId as string);
    t.provider.scheduleInterruption(running.instanceId as string, { in: 1 });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 2, interruptions: 1, reruns: 1, restores: 0 });
    expect(done.zone).not.toBe(first?.zone);
    const old = t.provider.instance(first?.instanceId as string);
    expect(old).toMatchObject({ state: "terminated", reclaimed: true });
    expect(existsSync(join(old?.dir as string, "cache"))).toBe(false);
    const log = await t.client.registry.transitions(task.id);
    expect(log.map((e) => e.to)).toEqual([
      "pending",
      "running",
      "interrupted",
      "pending",
      "running",
      "succeeded",
    ]);
    expect(log[3]?.reason).toMatch(/re-run from scratch: snapshots disabled/);
  });

  it("re-runs from scratch when interrupted before any snapshot was committed", async () => {
    const t = await h.setup({ enabled: true }, { FAKE_AGENT_NO_CHECKPOINT: "1" });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 3"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    t.provider.scheduleInterruption(running.instanceId as string, { in: 1 });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", reruns: 1, restores: 0, snapshotsTaken: 0 });
    const log = await t.client.registry.transitions(task.id);
    expect(log[3]?.reason).toMatch(/no snapshot committed/);
  });

  it("restores the committed snapshot on a new instance in another zone", async () => {
    const t = await h.setup({ enabled: true });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 2"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    t.provider.scheduleInterruption(running.instanceId as string, { in: 5 });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 2, interruptions: 1, restores: 1, reruns: 0 });
    expect(done).toMatchObject({ snapshotsTaken: 1, bytesStored: 1000, market: "spot" });
    expect(done.savedMs).toBeGreaterThan(0);
    expect(done.zone).not.toBe(running.zone);
    const log = await t.client.registry.transitions(task.id);
    expect(log.map((e) => e.to)).toEqual([
      "pending",
      "running",
      "checkpointing",
      "running",
      "interrupted",
      "restoring",
      "running",
      "succeeded",
    ]);
  });

  it("re-runs from scratch when the restore fails", async () => {
    const t = await h.setup({ enabled: true }, { FAKE_AGENT_RESTORE_FAILS: "1" });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 2"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    t.provider.scheduleInterruption(running.instanceId as string, { in: 5 });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 3, restores: 0, reruns: 1 });
    const log = await t.client.registry.transitions(task.id);
    expect(log.map((e) => e.to).slice(-4)).toEqual(["restoring", "pending", "running", "succeeded"]);
    expect(log.at(-3)?.reason).toMatch(
      /re-run from scratch: the restore failed on i-local\w+: criu restore failed/,
    );
  });

  it("gives up after maxSpotAttempts interruptions, switching to on-demand after onDemandAfter", async () => {
    const t = await h.setup({ enabled: true, maxSpotAttempts: 1, onDemandAfter: 1 });
    await t.service().ready();
    const task = await t.client.submit({ command: LONG, computeEnvFile: t.envFile });
    const first = await inState(t.client, task.id, "running");
    expect(first.market).toBe("spot");
    t.provider.scheduleInterruption(first.instanceId as string, { in: 5 });
    const second = await until("the replacement", async () => {
      const x = await t.client.registry.getTask(task.id);
      return x?.state === "running" && x.attempts === 2 ? x : undefined;
    });
    expect(second.market).toBe("on-demand");
    t.provider.scheduleInterruption(second.instanceId as string, { in: 5 });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "failed", attempts: 2, interruptions: 2 });
    expect(done.reason).toBe("gave up after 2 spot interruptions (maxSpotAttempts 1)");
    expect(t.provider.list()).toHaveLength(2);
  });

  it("applies duplicated events once", async () => {
    const t = await h.setup({ enabled: true }, { FAKE_AGENT_DUPLICATES: "1" });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 2"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    t.provider.scheduleInterruption(running.instanceId as string, { in: 5 });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    // Let the duplicates of the last events arrive too before counting.
    await new Promise((r) => setTimeout(r, 1000));
    const final = await t.client.registry.requireTask(task.id);
    expect(final).toMatchObject({ state: "succeeded", attempts: 2, restores: 1, snapshotsTaken: 1 });
    expect(final.bytesStored).toBe(done.bytesStored);
    expect(final.bytesStored).toBe(1000);
    expect(t.provider.list()).toHaveLength(2);
    const log = await t.client.registry.transitions(task.id);
    expect(log).toHaveLength(8);
  });

  it("launches one replacement when two controllers run", async () => {
    const t = await h.setup({ enabled: true });
    await Promise.all([t.service().ready(), t.service().ready()]);
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 2"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    t.provider.scheduleInterruption(running.instanceId as string, { in: 5 });
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 2, restores: 1 });
    expect(t.provider.list()).toHaveLength(2);
  });

  it("finishes a restore started by a controller that died between launch and record, without a second instance", async () => {
    const t = await h.setup({ enabled: true });
    const crashing = crashingAfterLaunch(t.provider, 2);
    const ghost = t.service({ provider: crashing });
    await ghost.ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 2"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    t.provider.scheduleInterruption(running.instanceId as string, { in: 5 });
    await until("the ghost's launch", async () => crashing.launched === 1);
    const lease = await until(
      "the ghost's lease",
      async () => (await t.client.registry.leases.get(task.id)) ?? undefined,
    );
    const orphan = t.provider.list()[1];
    expect((await t.client.registry.requireTask(task.id)).state).toBe("restoring");

    // Another controller takes over once the ghost's lease has expired.
    await t.service().ready();
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({
      state: "succeeded",
      attempts: 2,
      restores: 1,
      instanceId: orphan?.instanceId,
    });
    expect(t.provider.list()).toHaveLength(2);
    // The ghost coming back is refused.
    await expect(
      t.client.registry.recordLaunch(task.id, {
        fencingToken: lease.token,
        instanceId: "i-ghost",
        zone: "local-1a",
        arch: "x86_64",
        instanceType: "m5.large",
        market: "spot",
      }),
    ).rejects.toMatchObject({ code: "REGISTRY_STALE_FENCING_TOKEN" });
  });

  it("takes a running task over from a controller that stopped: its lost instance counts as an interruption", async () => {
    const t = await h.setup({ enabled: false });
    // A controller that owns its local instances: they end with it.
    const first = t.service({
      provider: undefined,
      local: {
        agentEntry: "test/controller/service/fixtures/fake-agent",
        env: { SNAPCTL_REDIS_URL: h.redis.url },
      },
    });
    await first.ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 3"], computeEnvFile: t.envFile });
    await inState(t.client, task.id, "running");
    await first.close();
    await t.service().ready();
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 2, interruptions: 1, reruns: 1 });
  });

  it("survives a Redis restart while a task runs", async () => {
    const t = await h.setup({ enabled: false });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 3"], computeEnvFile: t.envFile });
    await inState(t.client, task.id, "running");
    await h.redis.kill();
    await new Promise((r) => setTimeout(r, 1000));
    await h.redis.start();
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 1 });
  });
});

describe("manual restore", () => {
  it("refuses unknown, running and finished tasks, and tasks without a snapshot, with clear errors", async () => {
    const t = await h.setup({ enabled: false });
    await t.service().ready();
    await expect(t.client.restore("t-nope")).rejects.toMatchObject({
      code: "REGISTRY_TASK_NOT_FOUND",
      message: 'Task "t-nope" does not exist',
    });
    const long = await t.client.submit({ command: LONG, computeEnvFile: t.envFile });
    await inState(t.client, long.id, "running");
    await expect(t.client.restore(long.id)).rejects.toMatchObject({
      code: "CONTROLLER_NOT_RESTORABLE",
      message: `Cannot restore task "${long.id}": it is "running" (only interrupted or failed tasks can be restored)`,
    });
    const short = await t.client.submit({ command: SHORT, computeEnvFile: t.envFile });
    await t.client.wait(short.id, { pollMs: 100 });
    await expect(t.client.restore(short.id)).rejects.toMatchObject({
      code: "CONTROLLER_NOT_RESTORABLE",
      message: `Cannot restore task "${short.id}": it finished (succeeded, exit code 0)`,
    });
    const failing = await t.client.submit({ command: ["false"], computeEnvFile: t.envFile });
    await t.client.wait(failing.id, { pollMs: 100 });
    await expect(t.client.restore(failing.id)).rejects.toMatchObject({ code: "CONTROLLER_NO_SNAPSHOT" });
  });

  it("restores an interrupted task that waits for an operator (maxSpotAttempts 0)", async () => {
    const t = await h.setup({ enabled: true, maxSpotAttempts: 0 });
    await t.service().ready();
    const task = await t.client.submit({ command: ["sh", "-c", "sleep 2"], computeEnvFile: t.envFile });
    const running = await inState(t.client, task.id, "running");
    const result = await t.client.interrupt(task.id, 5);
    expect(result.instanceId).toBe(running.instanceId);
    const interrupted = await inState(t.client, task.id, "interrupted");
    expect(interrupted.snapshotsTaken).toBe(1);
    const restoring = await t.client.restore(task.id);
    expect(restoring.state).toBe("restoring");
    const done = await t.client.wait(task.id, { pollMs: 100 });
    expect(done).toMatchObject({ state: "succeeded", attempts: 2, restores: 1 });
  });
});
