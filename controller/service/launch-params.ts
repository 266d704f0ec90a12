import type { ComputeEnvironment } from "../config/index.js";
import { launchArch, launchMarket } from "../recovery/index.js";
import type { Arch, Market, TaskRecord } from "../registry/index.js";

export interface LaunchParams {
  market: Market;
  arch: Arch;
  avoidZone?: string;
  restore: boolean;
}

// Market, architecture and zone to avoid for the launch a pending or restoring task
// needs, from its record alone, so a controller that takes over mid-restore decides as
// the one before it: the same rules as planRecovery() (launchMarket, launchArch).
export function launchParams(task: TaskRecord, env: ComputeEnvironment, defaultArch: Arch): LaunchParams {
  const restore = task.state === "restoring";
  return {
    market: launchMarket(task, env),
    arch: launchArch(task, env, { restore, defaultArch }),
    avoidZone: task.attempts === 0 ? undefined : task.zone,
    restore,
  };
}
