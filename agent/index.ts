// agent/: what runs inside every task container (snapctl agent run): mounts Fusion, starts
// or restores the task, watches for spot interruptions, checkpoints, reports events.

export * from "./control/index.js";
export { AGENT_ERROR_CODES, AgentError, type AgentErrorCode } from "./errors.js";
export * from "./events/index.js";
export * from "./policy/index.js";
export { type CriuBindingOptions, criuEngineBinding } from "./run/criu-binding.js";
export * from "./run/index.js";
export * from "./watch/index.js";
