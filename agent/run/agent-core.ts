import type { Logger } from "../../common/log.js";
import type {
  CheckpointResult,
  RunningTask,
  SnapshotEngineLike,
  TaskExit,
  TaskSpec,
} from "../../criu/index.js";
import type { AgentError } from "../errors.js";
import type { EventOutbox } from "../events/event-outbox.js";
import type { CheckpointPolicy } from "../policy/index.js";
import type { AgentOptions, AgentResult } from "./agent-options.js";
import type { AgentStateMachine } from "./agent-state.js";
import type { AgentWaits } from "./agent-waits.js";
import type { AttemptLogs } from "./attempt-logs.js";
import type { EventReporter } from "./event-reporter.js";
import type { TaskClock } from "./task-clock.js";
import type { TaskSlot } from "./task-slot.js";
import type { TriggerBox } from "./trigger-box.js";
import type { WorkDirLocation } from "./work-dir.js";

// What the agent's steps (begin-task.ts, take-checkpoint.ts, finish.ts) work with: one
// agent run's options, state and collaborators, set up by run-agent.ts.
export interface AgentCore {
  readonly o: AgentOptions;
  readonly taskId: string;
  readonly logger: Logger;
  readonly location: WorkDirLocation;
  // Snapshots at all (the compute environment's snapshots.enabled).
  readonly snapshots: boolean;
  readonly machine: AgentStateMachine;
  readonly box: TriggerBox;
  readonly policy: CheckpointPolicy;
  readonly clock: TaskClock;
  readonly slot: TaskSlot;
  readonly reporter: EventReporter;
  readonly waits: AgentWaits;
  // Checkpoints committed by this agent, in order.
  readonly checkpoints: CheckpointResult[];
  readonly engine: SnapshotEngineLike;
  readonly outbox: EventOutbox | undefined;
  readonly logs: AttemptLogs | undefined;
  readonly instanceId: string;
  // The generation restored at start, if any.
  restored: AgentResult["restored"];
  // The task runs from now on (started or restored).
  adopt(task: RunningTask, runtimeBeforeMs?: number): void;
  // Writes the task's dirty files (its logs) to S3; failures are logged, never fatal.
  flushFiles(): Promise<void>;
  taskSpec(): TaskSpec;
  result(
    exitCode: number,
    outcome: AgentResult["outcome"],
    extra?: { error?: AgentError; taskExit?: TaskExit },
  ): AgentResult;
}
