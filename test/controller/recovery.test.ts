import { describe, expect, it } from "vitest";
import {
  parseComputeEnvironment,
  planRecovery,
  summarizeTask,
  type TaskRecord,
} from "../../controller/index.js";

function env(snapshots: Record<string, unknown>, market = "spot") {
  return parseComputeEnvironment({
    name: "ce",
    provider: "local",
    region: "us-east-1",
    workDir: "s3://bkt",
    market,
    snapshots,
  });
}

function task(fields: Partial<TaskRecord>): TaskRecord {
  return {
    id: "t",
    name: "t",
    command: ["true"],
    computeEnv: "ce",
    state: "interrupted",
    stateSince: 0,
    reason: "",
    attempts: 1,
    interruptions: 1,
    restores: 0,
    reruns: 0,
    snapshotsTaken: 1,
    bytesStored: 10,
    lastSnapshotId: "s1",
    lastSnapshotAt: 5,
    progressMsAtLastSnapshot: 100,
    snapshotArch: "arm64",
    instanceId: undefined,
    zone: "z-a",
    arch: "arm64",
    instanceType: "m6g.large",
    market: "spot",
    launch: "needed",
    computeMs: 200,
    savedMs: 0,
    createdAt: 0,
    updatedAt: 0,
    version: 3,
    ...fields,
  };
}

describe("planRecovery", () => {
  it("restores the last snapshot on its architecture, away from the reclaimed zone", () => {
    expect(planRecovery(task({}), env({ enabled: true }))).toEqual({
      action: "restore",
      snapshotId: "s1",
      arch: "arm64",
      market: "spot",
      avoidZone: "z-a",
      attempt: 2,
    });
  });

  it("re-runs from scratch without a snapshot, or with snapshots disabled", () => {
    expect(planRecovery(task({ lastSnapshotId: undefined }), env({ enabled: true }))).toMatchObject({
      action: "rerun",
      arch: "arm64",
    });
    expect(planRecovery(task({}), env({ enabled: false }))).toMatchObject({
      action: "rerun",
      market: "spot",
    });
  });

  it("switches to on-demand after onDemandAfter interruptions", () => {
    const e = env({ enabled: true, onDemandAfter: 2 });
    expect(planRecovery(task({ interruptions: 1 }), e)).toMatchObject({ market: "spot" });
    expect(planRecovery(task({ interruptions: 2 }), e)).toMatchObject({ market: "on-demand" });
    expect(
      planRecovery(task({ interruptions: 4 }), env({ enabled: true, onDemandAfter: null })),
    ).toMatchObject({ market: "spot" });
    expect(planRecovery(task({}), env({ enabled: true }, "on-demand"))).toMatchObject({
      market: "on-demand",
    });
  });

  it("gives up after maxSpotAttempts interruptions with a clear reason, and waits when recovery is off", () => {
    const e = env({ enabled: true, maxSpotAttempts: 3 });
    expect(planRecovery(task({ interruptions: 3 }), e).action).toBe("restore");
    expect(planRecovery(task({ interruptions: 4 }), e)).toEqual({
      action: "give-up",
      reason: "gave up after 4 spot interruptions (maxSpotAttempts 3)",
    });
    expect(planRecovery(task({}), env({ enabled: true, maxSpotAttempts: 0 })).action).toBe("wait");
  });
});

it("summarizes a task for status and ls", () => {
  expect(summarizeTask(task({ restores: 2, reruns: 1, savedMs: 42 }))).toMatchObject({
    interruptionsSurvived: 3,
    savedMs: 42,
    snapshotsTaken: 1,
    bytesStored: 10,
    attempts: 1,
  });
});
