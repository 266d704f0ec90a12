// The task state machine. TRANSITIONS is the only source of the allowed moves: the Lua
// scripts that change a task embed it, so Redis enforces it whatever the caller does.
export const TASK_STATES = [
  "pending",
  "running",
  "checkpointing",
  "interrupted",
  "restoring",
  "succeeded",
  "failed",
] as const;

export type TaskState = (typeof TASK_STATES)[number];

export const TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  // Waiting for an instance (first launch, or a re-run from scratch).
  pending: ["running", "failed"],
  running: ["checkpointing", "interrupted", "succeeded", "failed"],
  // A checkpoint is being written; the task is frozen or still running (pre-dump).
  checkpointing: ["running", "interrupted", "succeeded", "failed"],
  // Reclaimed: restore from the last committed snapshot, re-run from scratch, or give up.
  interrupted: ["restoring", "pending", "failed"],
  // A replacement instance restores the snapshot; it can be reclaimed too, or fall back
  // to a re-run from scratch when the snapshot cannot be restored.
  restoring: ["running", "interrupted", "pending", "failed"],
  succeeded: [],
  // Terminal for the controller; only an operator (`snapctl restore`) moves a failed
  // task on, to restore it by hand or re-run it.
  failed: ["restoring", "pending"],
};

// States entered by a transition that requires the restore lease's fencing token.
export const FENCED_STATES: readonly TaskState[] = ["restoring"];

// States in which the task needs an instance launched for it.
export const LAUNCH_STATES: readonly TaskState[] = ["pending", "restoring"];

export function isTaskState(value: unknown): value is TaskState {
  return typeof value === "string" && (TASK_STATES as readonly string[]).includes(value);
}

export function canTransition(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
}

// The controller does nothing more for a task in these states on its own.
export const FINAL_STATES: readonly TaskState[] = ["succeeded", "failed"];

export function isFinal(state: TaskState): boolean {
  return FINAL_STATES.includes(state);
}
