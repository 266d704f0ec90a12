// protocol/: what crosses process boundaries between snapctl, the agent, the controller
// and the schedulers that run them, defined once; both sides import it from here and parse
// what they receive.
export {
  type AgentControlRequest,
  type AgentControlResponse,
  agentControlRequestSchema,
  agentControlResponseSchema,
} from "./agent-control.js";
export {
  CONTROL_QUEUE,
  type ControlRequest,
  controlRequestSchema,
  type InterruptResult,
  interruptResultSchema,
} from "./control-queue.js";
export {
  EVENTS_QUEUE,
  parseTaskEvent,
  type TaskEvent,
  type TaskEventType,
  taskEventSchema,
} from "./events.js";
export { ExitCode, type ExitCodeValue, RETRYABLE_EXIT_CODES } from "./exit-codes.js";
export { TASK_ID_PATTERN, taskIdFromWorkDir, taskWorkDir } from "./work-dir.js";
