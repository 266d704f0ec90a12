import { randomUUID } from "node:crypto";
import { type TaskEvent, taskEventSchema } from "../../protocol/index.js";

type Extra<T extends TaskEvent["type"]> = Omit<
  Extract<TaskEvent, { type: T }>,
  "id" | "taskId" | "instanceId" | "at" | "type"
> &
  Record<string, unknown>;

export interface TaskEventFactoryOptions {
  taskId: string;
  instanceId: string;
  // Fields added to every event (e.g. the launch's fencingToken).
  common?: Record<string, unknown>;
  // Clock (ms since the epoch). Default Date.now.
  now?: () => number;
}

// Builds the agent's events in the contract (protocol/events.ts), checked before they are
// sent: a fresh id per event (the controller de-duplicates by it), the task, this
// instance, the time. Fields beyond the contract (generation, durations...) ride along.
export class TaskEventFactory {
  private readonly now: () => number;
  private seq = 0;

  constructor(private readonly options: TaskEventFactoryOptions) {
    this.now = options.now ?? Date.now;
  }

  make<T extends TaskEvent["type"]>(type: T, extra: Extra<T>): TaskEvent {
    this.seq += 1;
    return taskEventSchema.parse({
      id: randomUUID(),
      taskId: this.options.taskId,
      instanceId: this.options.instanceId,
      at: this.now(),
      seq: this.seq,
      ...this.options.common,
      ...extra,
      type,
    });
  }
}
