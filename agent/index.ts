// agent/: what runs inside every task container (snapctl agent run): mounts Fusion, starts
// or restores the task, watches for spot interruptions, checkpoints, reports events.

export {
  agentSocketPath,
  agentsDir,
  type ControlClientOptions,
  type ControlHandler,
  ControlServer,
  type ControlServerOptions,
  checkTaskId,
  requestCheckpoint,
  sendControlRequest,
} from "./control/index.js";
export { AGENT_ERROR_CODES, AgentError, type AgentErrorCode } from "./errors.js";
export {
  EventOutbox,
  type EventOutboxOptions,
  TaskEventFactory,
  type TaskEventFactoryOptions,
} from "./events/index.js";
export {
  type CheckpointDue,
  CheckpointPolicy,
  type CheckpointPolicyOptions,
  type CheckpointSample,
  type DueReason,
} from "./policy/index.js";
export { type CriuBindingOptions, criuEngineBinding } from "./run/criu-binding.js";
export {
  type AgentOptions,
  type AgentOutcome,
  type AgentResult,
  type AgentState,
  agentOptionsFromComputeEnvironment,
  attemptLogsPrefix,
  type EngineBinding,
  type EngineContext,
  LOGS_FOLDER,
  type OnCheckpointed,
  parseWorkDir,
  type RestoreMode,
  runAgent,
  taskExitCode,
  type WorkDirLocation,
  workDirOnMount,
} from "./run/index.js";
export {
  ImdsClient,
  type ImdsClientOptions,
  ImdsWatcher,
  type ImdsWatcherEvents,
  type ImdsWatcherOptions,
  listenForSignals,
  parseNotice,
  type RebalanceRecommendation,
  type SpotNotice,
} from "./watch/index.js";
