import { type TaskEvent, type TaskEventType, taskEventSchema } from "../../protocol/index.js";
import type { TaskState } from "./states.js";

export { type TaskEvent, type TaskEventType, taskEventSchema };

const EVERY_LIVE_STATE = {
  pending: "pending",
  running: "running",
  checkpointing: "checkpointing",
  interrupted: "interrupted",
  restoring: "restoring",
} as const;

// For each event, the move it causes from each state it may arrive in. A state mapped to
// itself takes the event's data without a transition; any other state ignores the event.
export const EVENT_MOVES: Readonly<Record<TaskEventType, Partial<Record<TaskState, TaskState>>>> = {
  started: { pending: "running" },
  "checkpoint-started": { running: "checkpointing" },
  // Events of one agent may be handled out of order (several queue workers): a commit can
  // come after the interruption it preceded, or before the "started"/"restored" event of
  // its instance. Its snapshot must be recorded in every one of those states.
  "checkpoint-committed": {
    checkpointing: "running",
    running: "running",
    interrupted: "interrupted",
    pending: "pending",
    restoring: "restoring",
  },
  "checkpoint-failed": { checkpointing: "running", running: "running", interrupted: "interrupted" },
  interrupted: { running: "interrupted", checkpointing: "interrupted", restoring: "interrupted" },
  restored: { restoring: "running" },
  heartbeat: EVERY_LIVE_STATE,
  succeeded: { running: "succeeded", checkpointing: "succeeded" },
  failed: { pending: "failed", running: "failed", checkpointing: "failed", restoring: "failed" },
};

export interface FieldUpdates {
  set: Record<string, string>;
  incr: Record<string, string>;
  // Set only when larger than the stored value (monotonic counters reported by agents).
  max: Record<string, string>;
  // Fields describing the latest snapshot, set only if `at` is not older than the stored
  // lastSnapshotAt, so a commit handled late never replaces a newer snapshot.
  snapshot?: { at: string; fields: Record<string, string> };
}

// The task fields an event changes, besides its state.
export function eventUpdates(event: TaskEvent): FieldUpdates {
  const updates: FieldUpdates = { set: {}, incr: {}, max: {} };
  if (event.computeMs !== undefined) updates.max[`computeMs:${event.instanceId}`] = String(event.computeMs);
  switch (event.type) {
    case "checkpoint-committed":
      updates.snapshot = {
        at: String(event.at),
        fields: {
          lastSnapshotId: event.snapshotId,
          lastSnapshotAt: String(event.at),
          progressMsAtLastSnapshot: String(event.progressMs),
          snapshotArch: event.arch,
        },
      };
      updates.incr.snapshotsTaken = "1";
      updates.incr.bytesStored = String(event.bytesStored);
      break;
    case "checkpoint-failed":
      updates.set.lastCheckpointError = event.error;
      break;
    case "failed":
      updates.set.error = event.error;
      if (event.exitCode !== undefined) updates.set.exitCode = String(event.exitCode);
      break;
    case "succeeded":
      updates.set.exitCode = "0";
      break;
    default:
      break;
  }
  return updates;
}

export function eventReason(event: TaskEvent): string {
  if (event.type === "interrupted" && event.reason) return `interrupted: ${event.reason}`;
  if (event.type === "failed") return `failed: ${event.error}`;
  return event.type;
}
