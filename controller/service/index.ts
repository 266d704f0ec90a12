// The controller service (`snapctl controller`) and the client snapctl uses to talk to it.

export { agentArgv } from "./agent-argv.js";
export { ControllerClient, type ControllerClientOptions, type SubmitInput } from "./controller-client.js";
export { ControllerService, type ControllerServiceOptions } from "./controller-service.js";
export { type DemoOptions, type DemoResult, expectedResult, runDemo } from "./demo-scenario.js";
export { SERVICE_ERROR_CODES, ServiceError, type ServiceErrorCode } from "./errors.js";
export { bullConnection } from "./queues.js";
export {
  type GenerationSummary,
  listGenerations,
  openTaskSnapshots,
  type TaskSnapshots,
} from "./snapshot-inventory.js";
export { TaskEnvironments } from "./task-environments.js";
export { formatBytes, formatMs, formatTaskStatus, formatTaskTable } from "./task-view.js";
