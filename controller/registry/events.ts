import { z } from "zod";
import type { TaskState } from "./states.js";

// What an agent reports about its task. Events travel through BullMQ, so any of them can
// arrive twice or late: `id` de-duplicates (unique per event, e.g. a UUID), and
// `instanceId` lets the registry ignore events from an instance the task has left.
const base = {
  id: z.string().min(1).max(200),
  taskId: z.string().min(1).max(200),
  instanceId: z.string().min(1).max(200),
  // When it happened on the agent, in ms since the epoch.
  at: z.number().int().nonnegative(),
  // Compute time the task has used on this instance so far (monotonic per instance), in ms:
  // the agent sends its run time here (wall time since its start or restore on this
  // instance). The registry keeps the largest per instance and sums the instances.
  computeMs: z.number().int().nonnegative().optional(),
};

export const taskEventSchema = z.discriminatedUnion("type", [
  z.object({ ...base, type: z.literal("started") }),
  z.object({ ...base, type: z.literal("checkpoint-started") }),
  z.object({
    ...base,
    type: z.literal("checkpoint-committed"),
    snapshotId: z.string().min(1),
    // Bytes this checkpoint added to S3 (new chunks only, after compression).
    bytesStored: z.number().int().nonnegative(),
    // The task's own compute time at the dump, counting work restored from earlier
    // snapshots: what a re-run from scratch would have to redo.
    progressMs: z.number().int().nonnegative(),
    arch: z.enum(["x86_64", "arm64"]),
  }),
  z.object({ ...base, type: z.literal("checkpoint-failed"), error: z.string() }),
  z.object({ ...base, type: z.literal("interrupted"), reason: z.string().optional() }),
  z.object({ ...base, type: z.literal("restored") }),
  z.object({ ...base, type: z.literal("heartbeat") }),
  z.object({ ...base, type: z.literal("succeeded") }),
  z.object({ ...base, type: z.literal("failed"), error: z.string(), exitCode: z.number().int().optional() }),
]);

export type TaskEvent = z.infer<typeof taskEventSchema>;
export type TaskEventType = TaskEvent["type"];

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
