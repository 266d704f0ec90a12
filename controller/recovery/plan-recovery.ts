import type { ComputeEnvironment } from "../config/schema.js";
import type { Arch, Market, TaskRecord } from "../registry/task-record.js";

// What to do for an interrupted task, decided from its record and its environment alone
// (no I/O), so that every controller reaches the same decision.
export type RecoveryPlan =
  | {
      action: "restore";
      snapshotId: string;
      // The snapshot's architecture: CRIU images do not cross architectures.
      arch: Arch;
      market: Market;
      avoidZone?: string;
      // The attempt number the launch will have.
      attempt: number;
    }
  | { action: "rerun"; arch: Arch; market: Market; avoidZone?: string; attempt: number }
  | { action: "give-up"; reason: string }
  // Automatic recovery is off (maxSpotAttempts 0): the task waits for `snapctl restore`.
  | { action: "wait"; reason: string };

export interface PlanOptions {
  // Architecture for a re-run of a task that never reported one. Default "x86_64".
  defaultArch?: Arch;
}

// The market of a task's next launch: on-demand when the environment says so, or once the
// task has been interrupted `onDemandAfter` times; spot otherwise. The one rule for it.
export function launchMarket(task: TaskRecord, env: ComputeEnvironment): Market {
  const { onDemandAfter } = env.snapshots;
  const onDemand =
    env.market === "on-demand" || (onDemandAfter !== null && task.interruptions >= onDemandAfter);
  return onDemand ? "on-demand" : "spot";
}

// The architecture of a launch: a restore needs its snapshot's (CRIU images do not cross
// architectures); a fresh run keeps the task's, else the environment's, else the default.
export function launchArch(
  task: TaskRecord,
  env: ComputeEnvironment,
  options: { restore: boolean; defaultArch?: Arch },
): Arch {
  const fallback = (env.provider === "local" ? env.local.arch : undefined) ?? options.defaultArch ?? "x86_64";
  return options.restore ? (task.snapshotArch ?? fallback) : (task.arch ?? fallback);
}

export function planRecovery(
  task: TaskRecord,
  env: ComputeEnvironment,
  options: PlanOptions = {},
): RecoveryPlan {
  const { maxSpotAttempts, enabled } = env.snapshots;
  if (maxSpotAttempts === 0) {
    return { action: "wait", reason: `automatic recovery is off in "${env.name}" (maxSpotAttempts 0)` };
  }
  if (task.interruptions > maxSpotAttempts) {
    return {
      action: "give-up",
      reason: `gave up after ${task.interruptions} spot interruptions (maxSpotAttempts ${maxSpotAttempts})`,
    };
  }
  const common = {
    market: launchMarket(task, env),
    avoidZone: task.zone,
    attempt: task.attempts + 1,
  };
  if (enabled && task.lastSnapshotId && task.snapshotArch) {
    return { action: "restore", snapshotId: task.lastSnapshotId, arch: task.snapshotArch, ...common };
  }
  return { action: "rerun", arch: launchArch(task, env, { restore: false, ...options }), ...common };
}
