import { isTaskState, type TaskState } from "./states.js";

export type Arch = "x86_64" | "arm64";
export type Market = "spot" | "on-demand";

// A task as the registry keeps it. Times are ms since the epoch.
export interface TaskRecord {
  id: string;
  name: string;
  // The command line the agent runs, as an argv list.
  command: string[];
  // Name of the compute environment the task runs in.
  computeEnv: string;
  state: TaskState;
  // When the task entered `state`, and the reason recorded with that transition.
  stateSince: number;
  reason: string;
  // Instances launched for the task (first launch included).
  attempts: number;
  // Times the task was reclaimed (entered "interrupted").
  interruptions: number;
  // Interruptions survived by restoring a snapshot / by re-running from scratch.
  restores: number;
  reruns: number;
  snapshotsTaken: number;
  // Bytes the task's checkpoints added to S3, summed.
  bytesStored: number;
  lastSnapshotId?: string;
  // Time of the last committed checkpoint.
  lastSnapshotAt?: number;
  // The task's compute time captured by the last usable snapshot (0 after a re-run).
  progressMsAtLastSnapshot: number;
  // CPU architecture the last snapshot was taken on: a restore must use the same.
  snapshotArch?: Arch;
  // The current instance; empty while a launch is needed. zone/arch/instanceType/market
  // describe the last instance launched, so the zone to avoid survives the reclaim.
  instanceId?: string;
  zone?: string;
  arch?: Arch;
  instanceType?: string;
  market?: Market;
  // "needed" while pending/restoring without an instance recorded yet.
  launch: "needed" | "launched";
  // Compute time used on all instances, summed (what the task has cost).
  computeMs: number;
  // Compute time a re-run from scratch would have repeated: see savedMs in the docs.
  savedMs: number;
  exitCode?: number;
  error?: string;
  createdAt: number;
  updatedAt: number;
  finishedAt?: number;
  // Incremented by every change: lets callers detect that a task moved under them.
  version: number;
}

function int(hash: Record<string, string>, field: string): number {
  const value = Number(hash[field] ?? "0");
  return Number.isFinite(value) ? value : 0;
}

function optional(hash: Record<string, string>, field: string): string | undefined {
  const value = hash[field];
  return value === undefined || value === "" ? undefined : value;
}

function optionalInt(hash: Record<string, string>, field: string): number | undefined {
  const value = optional(hash, field);
  return value === undefined ? undefined : Number(value);
}

// Builds a TaskRecord from its Redis hash, or undefined for an empty hash (no task).
export function decodeTask(hash: Record<string, string>): TaskRecord | undefined {
  if (!hash.id || !isTaskState(hash.state)) return undefined;
  let computeMs = 0;
  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith("computeMs:")) computeMs += Number(value) || 0;
  }
  return {
    id: hash.id,
    name: hash.name ?? hash.id,
    command: JSON.parse(hash.command ?? "[]") as string[],
    computeEnv: hash.computeEnv ?? "",
    state: hash.state,
    stateSince: int(hash, "stateSince"),
    reason: hash.reason ?? "",
    attempts: int(hash, "attempts"),
    interruptions: int(hash, "interruptions"),
    restores: int(hash, "restores"),
    reruns: int(hash, "reruns"),
    snapshotsTaken: int(hash, "snapshotsTaken"),
    bytesStored: int(hash, "bytesStored"),
    lastSnapshotId: optional(hash, "lastSnapshotId"),
    lastSnapshotAt: optionalInt(hash, "lastSnapshotAt"),
    progressMsAtLastSnapshot: int(hash, "progressMsAtLastSnapshot"),
    snapshotArch: optional(hash, "snapshotArch") as Arch | undefined,
    instanceId: optional(hash, "instanceId"),
    zone: optional(hash, "zone"),
    arch: optional(hash, "arch") as Arch | undefined,
    instanceType: optional(hash, "instanceType"),
    market: optional(hash, "market") as Market | undefined,
    launch: hash.launch === "launched" ? "launched" : "needed",
    computeMs,
    savedMs: int(hash, "savedMs"),
    exitCode: optionalInt(hash, "exitCode"),
    error: optional(hash, "error"),
    createdAt: int(hash, "createdAt"),
    updatedAt: int(hash, "updatedAt"),
    finishedAt: optionalInt(hash, "finishedAt"),
    version: int(hash, "version"),
  };
}
