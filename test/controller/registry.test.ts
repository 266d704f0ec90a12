import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../common/ports.js";
import {
  canTransition,
  EVENT_MOVES,
  RegistryError,
  TASK_STATES,
  type TaskEvent,
  TaskRegistry,
  type TaskState,
} from "../../controller/index.js";
import { RedisFixture } from "./redis-fixture.js";

const redis = new RedisFixture();
beforeAll(() => redis.start());
afterAll(() => redis.stop());

// A clock that advances 1 s per reading, so every recorded time is distinct and known.
function steppingClock(start = 1_700_000_000_000): () => number {
  let now = start;
  return () => {
    now += 1000;
    return now;
  };
}

function registry(prefix = redis.prefix(), now = steppingClock()): TaskRegistry {
  return new TaskRegistry({ redis: redis.connect(), prefix, now });
}

let eventSeq = 0;
// An event without id/at; `E extends unknown` makes Omit apply to each event type separately.
type EventInput<E = TaskEvent> = E extends unknown
  ? Omit<E, "id" | "at"> & { id?: string; at?: number }
  : never;

function event(e: EventInput): TaskEvent {
  eventSeq += 1;
  return { id: `ev-${eventSeq}`, at: 1_800_000_000_000 + eventSeq, ...e } as TaskEvent;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<RegistryError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RegistryError);
  expect((err as RegistryError).code).toBe(code);
  return err as RegistryError;
}

// Creates a task and launches its first instance, as a controller would.
async function launched(reg: TaskRegistry, id: string, instanceId = `${id}-i1`, zone = "us-east-1a") {
  await reg.createTask({ id, command: ["bash", "-c", "work"], computeEnv: "ce" });
  const token = (await reg.acquireRestoreLease(id, "controller-a", 60_000)) as number;
  await reg.recordLaunch(id, {
    fencingToken: token,
    instanceId,
    zone,
    arch: "x86_64",
    instanceType: "m5.large",
    market: "spot",
  });
  await reg.releaseRestoreLease(id, "controller-a", token);
  expect((await reg.applyEvent(event({ type: "started", taskId: id, instanceId }))).outcome).toBe("applied");
}

describe("state machine", () => {
  it("every event move is a legal transition", () => {
    for (const moves of Object.values(EVENT_MOVES)) {
      for (const [from, to] of Object.entries(moves)) {
        if (from !== to)
          expect(canTransition(from as TaskState, to as TaskState), `${from} -> ${to}`).toBe(true);
      }
    }
  });

  it("runs the full life of an interrupted and restored task, recording each transition's time", async () => {
    const reg = registry();
    await reg.createTask({ id: "t1", name: "align", command: ["bwa", "mem"], computeEnv: "ce" });
    let task = await reg.requireTask("t1");
    expect(task).toMatchObject({
      state: "pending",
      launch: "needed",
      attempts: 0,
      name: "align",
      command: ["bwa", "mem"],
    });

    const t1 = (await reg.acquireRestoreLease("t1", "ctl", 60_000)) as number;
    await reg.recordLaunch("t1", {
      fencingToken: t1,
      instanceId: "i-1",
      zone: "us-east-1a",
      arch: "x86_64",
      instanceType: "m5.large",
      market: "spot",
    });
    await reg.releaseRestoreLease("t1", "ctl", t1);
    await reg.applyEvent(event({ type: "started", taskId: "t1", instanceId: "i-1", at: 1000 }));
    await reg.applyEvent(event({ type: "checkpoint-started", taskId: "t1", instanceId: "i-1", at: 2000 }));
    await reg.applyEvent(
      event({
        type: "checkpoint-committed",
        taskId: "t1",
        instanceId: "i-1",
        at: 3000,
        snapshotId: "s1",
        bytesStored: 5000,
        progressMs: 60_000,
        arch: "x86_64",
        computeMs: 61_000,
      }),
    );
    await reg.applyEvent(
      event({
        type: "interrupted",
        taskId: "t1",
        instanceId: "i-1",
        at: 4000,
        reason: "spot reclaimed",
        computeMs: 70_000,
      }),
    );
    task = await reg.requireTask("t1");
    expect(task).toMatchObject({
      state: "interrupted",
      interruptions: 1,
      snapshotsTaken: 1,
      bytesStored: 5000,
      lastSnapshotId: "s1",
      lastSnapshotAt: 3000,
      snapshotArch: "x86_64",
      zone: "us-east-1a",
      computeMs: 70_000,
    });

    const t2 = (await reg.acquireRestoreLease("t1", "ctl", 60_000)) as number;
    expect(t2).toBeGreaterThan(t1);
    await reg.transition("t1", "restoring", {
      from: "interrupted",
      fencingToken: t2,
      at: 5000,
      reason: "restore s1",
    });
    task = await reg.requireTask("t1");
    expect(task).toMatchObject({
      state: "restoring",
      launch: "needed",
      instanceId: undefined,
      zone: "us-east-1a",
    });
    await reg.recordLaunch("t1", {
      fencingToken: t2,
      instanceId: "i-2",
      zone: "us-east-1b",
      arch: "x86_64",
      instanceType: "m5a.large",
      market: "spot",
    });
    await reg.releaseRestoreLease("t1", "ctl", t2);
    await reg.applyEvent(
      event({ type: "restored", taskId: "t1", instanceId: "i-2", at: 6000, computeMs: 1000 }),
    );
    await reg.applyEvent(
      event({ type: "succeeded", taskId: "t1", instanceId: "i-2", at: 7000, computeMs: 30_000 }),
    );

    task = await reg.requireTask("t1");
    expect(task).toMatchObject({
      state: "succeeded",
      attempts: 2,
      interruptions: 1,
      restores: 1,
      reruns: 0,
      snapshotsTaken: 1,
      bytesStored: 5000,
      instanceId: "i-2",
      zone: "us-east-1b",
      exitCode: 0,
      finishedAt: 7000,
      computeMs: 100_000,
      // Re-running from scratch would have redone the 60 s the snapshot held.
      savedMs: 60_000,
    });
    const log = await reg.transitions("t1");
    expect(log.map((e) => [e.from, e.to, e.at])).toEqual([
      [null, "pending", expect.any(Number)],
      ["pending", "running", 1000],
      ["running", "checkpointing", 2000],
      ["checkpointing", "running", 3000],
      ["running", "interrupted", 4000],
      ["interrupted", "restoring", 5000],
      ["restoring", "running", 6000],
      ["running", "succeeded", 7000],
    ]);
    expect(log[4]?.reason).toBe("interrupted: spot reclaimed");
    expect(log[5]?.reason).toBe("restore s1");
    expect(log[4]?.eventId).toMatch(/^ev-/);
    await reg.close();
  });

  it("re-runs from scratch: the snapshot's progress is not counted as saved", async () => {
    const reg = registry();
    await launched(reg, "t2");
    await reg.applyEvent(event({ type: "interrupted", taskId: "t2", instanceId: "t2-i1" }));
    await reg.transition("t2", "pending", { from: "interrupted", reason: "no snapshot" });
    const task = await reg.requireTask("t2");
    expect(task).toMatchObject({
      state: "pending",
      reruns: 1,
      savedMs: 0,
      progressMsAtLastSnapshot: 0,
      launch: "needed",
    });
  });

  it("rejects an illegal transition, naming the task, from and to", async () => {
    const reg = registry();
    await reg.createTask({ id: "t3", command: ["true"], computeEnv: "ce" });
    const err = await expectCode(reg.transition("t3", "succeeded"), "REGISTRY_ILLEGAL_TRANSITION");
    expect(err.message).toContain('task "t3"');
    expect(err.message).toContain('from "pending" to "succeeded"');
    expect((await reg.requireTask("t3")).state).toBe("pending");
    expect(await reg.transitions("t3")).toHaveLength(1);
  });

  it("refuses a move from an unexpected state as a conflict", async () => {
    const reg = registry();
    await launched(reg, "t4");
    const err = await expectCode(
      reg.transition("t4", "failed", { from: "pending" }),
      "REGISTRY_STATE_CONFLICT",
    );
    expect(err.message).toContain('it is "running"');
  });

  it("requires the lease's fencing token to enter restoring", async () => {
    const reg = registry();
    await launched(reg, "t5");
    await reg.applyEvent(event({ type: "interrupted", taskId: "t5", instanceId: "t5-i1" }));
    await expectCode(reg.transition("t5", "restoring"), "REGISTRY_STALE_FENCING_TOKEN");
    await expectCode(
      reg.transition("t5", "restoring", { fencingToken: 999 }),
      "REGISTRY_STALE_FENCING_TOKEN",
    );
    expect((await reg.requireTask("t5")).state).toBe("interrupted");
  });

  it("reports unknown tasks, duplicate ids and bad input", async () => {
    const reg = registry();
    await expectCode(reg.transition("nope", "running"), "REGISTRY_TASK_NOT_FOUND");
    await expectCode(reg.requireTask("nope"), "REGISTRY_TASK_NOT_FOUND");
    await reg.createTask({ id: "t6", command: ["true"], computeEnv: "ce" });
    await expectCode(
      reg.createTask({ id: "t6", command: ["true"], computeEnv: "ce" }),
      "REGISTRY_TASK_EXISTS",
    );
    await expectCode(
      reg.createTask({ id: "bad id", command: ["true"], computeEnv: "ce" }),
      "REGISTRY_INVALID_INPUT",
    );
    await expectCode(reg.createTask({ command: [], computeEnv: "ce" }), "REGISTRY_INVALID_INPUT");
    const err = await expectCode(reg.applyEvent({ type: "started", taskId: "t6" }), "REGISTRY_INVALID_INPUT");
    expect(err.message).toContain("instanceId");
    expect((await reg.applyEvent(event({ type: "started", taskId: "ghost", instanceId: "i" }))).outcome).toBe(
      "ignored",
    );
  });

  it("lists tasks in creation order, a page at a time", async () => {
    const reg = registry();
    for (const id of ["a1", "a2", "a3"]) await reg.createTask({ id, command: ["true"], computeEnv: "ce" });
    expect((await reg.listTasks()).map((t) => t.id)).toEqual(["a1", "a2", "a3"]);
    expect((await reg.listTasks({ offset: 1, limit: 1 })).map((t) => t.id)).toEqual(["a2"]);
  });
});

describe("events", () => {
  it("applies a duplicate event once", async () => {
    const reg = registry();
    await launched(reg, "d1");
    const committed = event({
      type: "checkpoint-committed",
      taskId: "d1",
      instanceId: "d1-i1",
      snapshotId: "s1",
      bytesStored: 700,
      progressMs: 10,
      arch: "x86_64",
    });
    expect(await reg.applyEvent(committed)).toMatchObject({ outcome: "applied", state: "running" });
    expect(await reg.applyEvent(committed)).toMatchObject({ outcome: "duplicate", state: "running" });
    const task = await reg.requireTask("d1");
    expect(task.snapshotsTaken).toBe(1);
    expect(task.bytesStored).toBe(700);
  });

  it("applies duplicates delivered concurrently once", async () => {
    const prefix = redis.prefix();
    const reg = registry(prefix);
    // Same prefix, another connection: a second controller process.
    const twin = registry(prefix);
    await launched(reg, "d2");
    const interrupted = event({ type: "interrupted", taskId: "d2", instanceId: "d2-i1" });
    const results = await Promise.all([
      reg.applyEvent(interrupted),
      twin.applyEvent(interrupted),
      reg.applyEvent(interrupted),
    ]);
    expect(results.map((r) => r.outcome).sort()).toEqual(["applied", "duplicate", "duplicate"]);
    expect((await reg.requireTask("d2")).interruptions).toBe(1);
  });

  it("ignores late events from an instance the task has left, and defers early ones", async () => {
    const reg = registry();
    await launched(reg, "d3", "old");
    await reg.applyEvent(event({ type: "interrupted", taskId: "d3", instanceId: "old" }));
    const token = (await reg.acquireRestoreLease("d3", "ctl", 60_000)) as number;
    await reg.transition("d3", "restoring", { fencingToken: token });
    // Before the new instance is recorded, its events cannot be placed yet.
    expect((await reg.applyEvent(event({ type: "restored", taskId: "d3", instanceId: "new" }))).outcome).toBe(
      "deferred",
    );
    await reg.recordLaunch("d3", {
      fencingToken: token,
      instanceId: "new",
      zone: "z2",
      arch: "x86_64",
      instanceType: "m5.large",
      market: "spot",
    });
    // A late duplicate of the old instance's interruption must not undo the restore.
    const late = await reg.applyEvent(event({ type: "interrupted", taskId: "d3", instanceId: "old" }));
    expect(late).toMatchObject({ outcome: "ignored", state: "restoring" });
    expect(late.detail).toContain('"old"');
    expect((await reg.applyEvent(event({ type: "restored", taskId: "d3", instanceId: "new" }))).outcome).toBe(
      "applied",
    );
    // An event that does not fit the state is dropped, not thrown.
    expect((await reg.applyEvent(event({ type: "started", taskId: "d3", instanceId: "new" }))).outcome).toBe(
      "ignored",
    );
    const task = await reg.requireTask("d3");
    expect(task).toMatchObject({ state: "running", interruptions: 1, restores: 1 });
  });

  it("records a snapshot whose commit is handled out of order, and never lets an older one replace a newer one", async () => {
    const reg = registry();
    await launched(reg, "d5", "old");
    await reg.applyEvent(event({ type: "interrupted", taskId: "d5", instanceId: "old" }));
    const token = (await reg.acquireRestoreLease("d5", "ctl", 60_000)) as number;
    await reg.transition("d5", "restoring", { fencingToken: token });
    await reg.recordLaunch("d5", {
      fencingToken: token,
      instanceId: "new",
      zone: "z",
      arch: "x86_64",
      instanceType: "m5.large",
      market: "spot",
    });
    const commit = (snapshotId: string, at: number) =>
      event({
        type: "checkpoint-committed",
        taskId: "d5",
        instanceId: "new",
        at,
        snapshotId,
        bytesStored: 10,
        progressMs: at,
        arch: "x86_64",
      });
    // The restored instance's second checkpoint is handled before its "restored" event and its first checkpoint.
    expect((await reg.applyEvent(commit("s-new", 9000))).outcome).toBe("applied");
    expect((await reg.applyEvent(event({ type: "restored", taskId: "d5", instanceId: "new" }))).outcome).toBe(
      "applied",
    );
    expect((await reg.applyEvent(commit("s-older", 8000))).outcome).toBe("applied");
    const task = await reg.requireTask("d5");
    expect(task).toMatchObject({
      state: "running",
      snapshotsTaken: 2,
      bytesStored: 20,
      lastSnapshotId: "s-new",
      lastSnapshotAt: 9000,
      progressMsAtLastSnapshot: 9000,
    });
  });

  it("keeps the highest compute time reported per instance", async () => {
    const reg = registry();
    await launched(reg, "d4");
    await reg.applyEvent(event({ type: "heartbeat", taskId: "d4", instanceId: "d4-i1", computeMs: 500 }));
    await reg.applyEvent(event({ type: "heartbeat", taskId: "d4", instanceId: "d4-i1", computeMs: 300 }));
    expect((await reg.requireTask("d4")).computeMs).toBe(500);
  });
});

describe("concurrent controllers", () => {
  it("exactly one of two controllers wins the same transition", async () => {
    const prefix = redis.prefix();
    const a = registry(prefix);
    const b = registry(prefix);
    for (let round = 0; round < 20; round++) {
      const id = `race-${round}`;
      await launched(a, id);
      await a.applyEvent(event({ type: "interrupted", taskId: id, instanceId: `${id}-i1` }));
      const results = await Promise.allSettled([
        a.transition(id, "pending", { from: "interrupted" }),
        b.transition(id, "pending", { from: "interrupted" }),
      ]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const loser = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      expect((loser.reason as RegistryError).code).toBe("REGISTRY_STATE_CONFLICT");
      expect((await a.transitions(id)).filter((e) => e.to === "pending")).toHaveLength(2);
    }
  });

  it("exactly one of two controllers gets the lease, and only it can start and record the restore", async () => {
    const prefix = redis.prefix();
    const a = registry(prefix);
    const b = registry(prefix);
    for (let round = 0; round < 20; round++) {
      const id = `lease-${round}`;
      await launched(a, id);
      await a.applyEvent(event({ type: "interrupted", taskId: id, instanceId: `${id}-i1` }));
      const tokens = await Promise.all([
        a.acquireRestoreLease(id, "ctl-a", 60_000),
        b.acquireRestoreLease(id, "ctl-b", 60_000),
      ]);
      const winners = tokens.filter((t) => t !== null);
      expect(winners).toHaveLength(1);
      const [winner, token] = tokens[0] !== null ? [a, tokens[0]] : [b, tokens[1] as number];
      const loser = winner === a ? b : a;
      await expectCode(
        loser.transition(id, "restoring", { fencingToken: token - 1 }),
        "REGISTRY_STALE_FENCING_TOKEN",
      );
      await winner.transition(id, "restoring", { fencingToken: token });
      // A launch is recorded once per restore, even by the lease holder.
      await winner.recordLaunch(id, {
        fencingToken: token,
        instanceId: `${id}-i2`,
        zone: "b",
        arch: "x86_64",
        instanceType: "m5.large",
        market: "spot",
      });
      await expectCode(
        winner.recordLaunch(id, {
          fencingToken: token,
          instanceId: `${id}-i3`,
          zone: "c",
          arch: "x86_64",
          instanceType: "m5.large",
          market: "spot",
        }),
        "REGISTRY_LAUNCH_NOT_NEEDED",
      );
      expect((await a.requireTask(id)).instanceId).toBe(`${id}-i2`);
    }
  });
});

describe("restore leases", () => {
  it("re-acquiring after expiry gives a higher token; the stale token is rejected everywhere", async () => {
    const prefix = redis.prefix();
    const a = registry(prefix);
    const b = registry(prefix);
    await launched(a, "l1");
    await a.applyEvent(event({ type: "interrupted", taskId: "l1", instanceId: "l1-i1" }));

    // Controller A takes the lease, starts the restore, then stops (crash) before launching.
    const stale = (await a.acquireRestoreLease("l1", "ctl-a", 150)) as number;
    await a.transition("l1", "restoring", { fencingToken: stale });
    expect(await b.acquireRestoreLease("l1", "ctl-b", 60_000)).toBeNull();
    while (await a.leases.get("l1")) await new Promise((r) => setTimeout(r, 25));

    // Controller B takes over once the lease has expired.
    const fresh = (await b.acquireRestoreLease("l1", "ctl-b", 60_000)) as number;
    expect(fresh).toBeGreaterThan(stale);
    await b.recordLaunch("l1", {
      fencingToken: fresh,
      instanceId: "by-b",
      zone: "z",
      arch: "x86_64",
      instanceType: "m5.large",
      market: "spot",
    });

    // A wakes up with its old token: every restore action is refused.
    await expectCode(
      a.recordLaunch("l1", {
        fencingToken: stale,
        instanceId: "by-a",
        zone: "z",
        arch: "x86_64",
        instanceType: "m5.large",
        market: "spot",
      }),
      "REGISTRY_STALE_FENCING_TOKEN",
    );
    await expectCode(a.assertRestoreLease("l1", stale), "REGISTRY_STALE_FENCING_TOKEN");
    await a.assertRestoreLease("l1", fresh);
    expect(await a.renewRestoreLease("l1", "ctl-a", stale, 60_000)).toBe(false);
    expect(await a.releaseRestoreLease("l1", "ctl-a", stale)).toBe(false);
    expect((await b.leases.get("l1"))?.owner).toBe("ctl-b");
    expect((await b.requireTask("l1")).instanceId).toBe("by-b");

    expect(await b.renewRestoreLease("l1", "ctl-b", fresh, 60_000)).toBe(true);
    expect(await b.releaseRestoreLease("l1", "ctl-b", fresh)).toBe(true);
    expect(await a.leases.get("l1")).toBeNull();
    const next = (await a.acquireRestoreLease("l1", "ctl-a", 60_000)) as number;
    expect(next).toBeGreaterThan(fresh);
  });

  it("the same owner re-acquiring keeps its token", async () => {
    const reg = registry();
    await reg.createTask({ id: "l2", command: ["true"], computeEnv: "ce" });
    const first = await reg.acquireRestoreLease("l2", "ctl", 60_000);
    expect(await reg.acquireRestoreLease("l2", "ctl", 60_000)).toBe(first);
    await expectCode(reg.acquireRestoreLease("l2", "", 1000), "REGISTRY_INVALID_INPUT");
    await expectCode(reg.acquireRestoreLease("l2", "ctl", 0), "REGISTRY_INVALID_INPUT");
  });
});

describe("task lifecycle", () => {
  it("deletes a finished task and everything kept for it; a live one only with force", async () => {
    const reg = registry();
    await launched(reg, "x1");
    await expectCode(reg.deleteTask("x1"), "REGISTRY_STATE_CONFLICT");
    await reg.applyEvent(event({ type: "succeeded", taskId: "x1", instanceId: "x1-i1" }));
    expect(await reg.deleteTask("x1")).toBe(true);
    expect(await reg.getTask("x1")).toBeUndefined();
    expect(await reg.transitions("x1")).toEqual([]);
    expect(await reg.listTasks()).toEqual([]);
    expect(await reg.deleteTask("x1")).toBe(false);
    await launched(reg, "x2");
    expect(await reg.deleteTask("x2", { force: true })).toBe(true);
  });

  it("opens and closes its own connection when given a URL", async () => {
    const reg = new TaskRegistry({ redis: redis.server.url, prefix: redis.prefix() });
    await reg.createTask({ id: "u1", command: ["true"], computeEnv: "ce" });
    expect((await reg.requireTask("u1")).state).toBe("pending");
    await reg.close();
    await reg.close();
    await expectCode(reg.getTask("u1"), "REGISTRY_UNAVAILABLE");
  });
});

describe("Redis restarts", () => {
  it("works again after redis-server restarts (ioredis reconnects, scripts are reloaded)", async () => {
    const reg = registry();
    await launched(reg, "r1");
    await redis.server.stop();
    await redis.server.start();
    // The test server keeps no data across restarts: the registry must work on a fresh Redis.
    await launched(reg, "r2");
    await reg.applyEvent(event({ type: "interrupted", taskId: "r2", instanceId: "r2-i1" }));
    const token = (await reg.acquireRestoreLease("r2", "ctl", 60_000)) as number;
    await reg.transition("r2", "restoring", { fencingToken: token });
    expect((await reg.requireTask("r2")).state).toBe("restoring");
  });

  it("reports Redis being down as a retryable REGISTRY_UNAVAILABLE", async () => {
    const { Redis } = await import("ioredis");
    // Nothing listens on a port just handed out by the kernel and released.
    const conn = new Redis(`redis://127.0.0.1:${await freePort()}`, {
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    conn.on("error", () => {});
    const reg = new TaskRegistry({ redis: conn, prefix: redis.prefix() });
    const err = await expectCode(reg.getTask("x"), "REGISTRY_UNAVAILABLE");
    expect(err.retryable).toBe(true);
    conn.disconnect();
  });
});

it("all states are covered by the transitions table", () => {
  expect(TASK_STATES).toHaveLength(7);
});
