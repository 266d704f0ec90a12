import { join } from "node:path";
import { snapctlHome } from "../../common/home.js";
import { AgentError } from "../errors.js";

const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

// Checks a task id before it names files and S3 keys.
export function checkTaskId(taskId: string): string {
  if (!TASK_ID.test(taskId))
    throw new AgentError(
      "AGENT_INVALID_OPTION",
      `Task id ${JSON.stringify(taskId)} is invalid: use 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  return taskId;
}

// The agent's state directory on local disk: $SNAPCTL_HOME/agents.
export function agentsDir(home = snapctlHome()): string {
  return join(home, "agents");
}

// The control socket of the agent running `taskId` on this machine.
export function agentSocketPath(taskId: string, home?: string): string {
  return join(agentsDir(home), `${checkTaskId(taskId)}.sock`);
}
