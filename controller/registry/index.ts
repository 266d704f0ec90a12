export { EVENT_MOVES, type TaskEvent, type TaskEventType, taskEventSchema } from "./events.js";
export type {
  CreateTaskInput,
  EventOutcome,
  EventResult,
  LaunchRecord,
  ListOptions,
  OperationOptions,
  TaskRegistryOptions,
  TransitionEntry,
  TransitionOptions,
  TransitionResult,
} from "./registry-types.js";
export type { RestoreLease } from "./restore-leases.js";
export {
  canTransition,
  FENCED_STATES,
  FINAL_STATES,
  isFinal,
  isTaskState,
  LAUNCH_STATES,
  TASK_STATES,
  type TaskState,
  TRANSITIONS,
} from "./states.js";
export type { Arch, Market, TaskRecord } from "./task-record.js";
export { TaskRegistry } from "./task-registry.js";
export { summarizeTask, type TaskSummary } from "./task-summary.js";
