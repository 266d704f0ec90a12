// protocol/: what crosses process boundaries between snapctl, the agent, the controller
// and the schedulers that run them. Both sides import it from here.
export { ExitCode, type ExitCodeValue, RETRYABLE_EXIT_CODES } from "./exit-codes.js";
export { TASK_ID_PATTERN, taskIdFromWorkDir, taskWorkDir } from "./work-dir.js";
