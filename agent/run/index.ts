export {
  type AgentOptions,
  type AgentOutcome,
  type AgentResult,
  agentOptionsFromComputeEnvironment,
  type OnCheckpointed,
  type RestoreMode,
} from "./agent-options.js";
export type { AgentState } from "./agent-state.js";
export { attemptLogsPrefix, LOGS_FOLDER } from "./attempt-logs.js";
export type { EngineBinding, EngineContext } from "./engine-binding.js";
export { taskExitCode } from "./exit-code.js";
export { runAgent } from "./run-agent.js";
export { parseWorkDir, type WorkDirLocation, workDirOnMount } from "./work-dir.js";
