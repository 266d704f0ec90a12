import type { ComputeEnvironment } from "../config/index.js";
import type { Arch, Market, TaskRecord } from "../registry/index.js";

export interface LaunchParams {
  market: Market;
  arch: Arch;
  avoidZone?: string;
  restore: boolean;
}

// Market, architecture and zone to avoid for the launch a pending or restoring task
// needs, from its record alone, so a controller that takes over mid-restore decides as
// the one before it: the same rules as planRecovery().
export function launchParams(task: TaskRecord, env: ComputeEnvironment, defaultArch: Arch): LaunchParams {
  const first = task.attempts === 0;
  const { onDemandAfter } = env.snapshots;
  const onDemand =
    env.market === "on-demand" || (onDemandAfter !== null && task.interruptions >= onDemandAfter);
  const localArch = env.provider === "local" ? env.local.arch : undefined;
  const restore = task.state === "restoring";
  return {
    market: onDemand ? "on-demand" : "spot",
    arch: restore ? (task.snapshotArch ?? defaultArch) : (task.arch ?? localArch ?? defaultArch),
    avoidZone: first ? undefined : task.zone,
    restore,
  };
}
