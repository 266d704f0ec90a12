import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Every code AgentError can carry; docs/agent.md lists each one (a test checks it).
export const AGENT_ERROR_CODES = [
  "AGENT_INVALID_OPTION",
  "AGENT_NO_COMMAND",
  "AGENT_NO_SNAPSHOT",
  "AGENT_RESTORE_FAILED",
  "AGENT_CHECKPOINT_FAILED",
  "AGENT_START_FAILED",
  "AGENT_MOUNT_FAILED",
  "AGENT_NO_BUCKET",
  "AGENT_IMDS_FAILED",
  "AGENT_EVENTS_UNDELIVERED",
  "AGENT_OUTBOX_CORRUPT",
  "AGENT_NOT_RUNNING",
  "AGENT_ALREADY_RUNNING",
  "AGENT_CONTROL_FAILED",
  "AGENT_BUSY",
  "AGENT_SNAPSHOTS_DISABLED",
  "AGENT_INTERNAL",
] as const;
export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[number];

// Failures of the in-container agent.
export class AgentError extends SnapError {
  declare readonly code: AgentErrorCode;

  constructor(code: AgentErrorCode, message: string, options?: SnapErrorOptions) {
    super(code, message, options);
  }
}
