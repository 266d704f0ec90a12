import type { TaskState } from "./states.js";
import type { TaskRecord } from "./task-record.js";

// What `snapctl status` and `snapctl ls` show for a task.
export interface TaskSummary {
  id: string;
  name: string;
  state: TaskState;
  reason: string;
  attempts: number;
  interruptions: number;
  // Interruptions after which the task went on (restored or re-run).
  interruptionsSurvived: number;
  snapshotsTaken: number;
  bytesStored: number;
  computeMs: number;
  // Compute time a re-run from scratch would have repeated (see the docs for the formula).
  savedMs: number;
  lastSnapshotAt?: number;
  instanceId?: string;
  zone?: string;
  market?: string;
}

export function summarizeTask(task: TaskRecord): TaskSummary {
  return {
    id: task.id,
    name: task.name,
    state: task.state,
    reason: task.reason,
    attempts: task.attempts,
    interruptions: task.interruptions,
    interruptionsSurvived: task.restores + task.reruns,
    snapshotsTaken: task.snapshotsTaken,
    bytesStored: task.bytesStored,
    computeMs: task.computeMs,
    savedMs: task.savedMs,
    lastSnapshotAt: task.lastSnapshotAt,
    instanceId: task.instanceId,
    zone: task.zone,
    market: task.market,
  };
}
