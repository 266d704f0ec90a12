import type { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "../../common/log.js";
import type { ComputeEnvironment } from "../../controller/index.js";
import type { CheckpointResult, TaskExit } from "../../criu/index.js";
import type { AgentError } from "../errors.js";
import type { CheckpointPolicyOptions } from "../policy/index.js";
import type { EngineBinding } from "./engine-binding.js";

// Whether the agent restores the task at start: "auto" restores the newest usable
// snapshot of the work dir when there is one and starts the command fresh when there is
// none; "required" fails (exit 176) without one; "never" always starts fresh (a re-run).
export type RestoreMode = "auto" | "required" | "never";

// After a committed final checkpoint: "wait" keeps the agent up, the task stopped, until
// the instance is reclaimed (a scheduler then sees the instance end, as without snapshots,
// and applies its spot retries), exiting 178 only if it outlives the deadline by
// `reclaimGraceMs`; "exit" exits 178 at once (the controller, which restores the task
// itself, runs agents this way).
export type OnCheckpointed = "exit" | "wait";

export interface AgentOptions {
  // Task id: names the snapshot area, the control socket and the events. Default: derived
  // from the work dir (taskIdFromWorkDir), so that every attempt a scheduler starts with
  // the same work dir is the same task.
  taskId?: string;
  // s3://bucket/prefix: the task's work dir (its cwd, logs and snapshots). Required.
  workDir: string;
  // argv of the task; not needed when a snapshot is restored.
  command?: string[];
  // How to build the snapshot engine. Required (criuEngineBinding() in production).
  engine: EngineBinding;
  // Where Fusion is mounted. It must be the same path on every machine the task visits:
  // restored processes find their open files by path. Default "/fusion".
  mountpoint?: string;
  // Fusion's block cache directory. Default: a temporary directory.
  cacheDir?: string;
  // Whether to restore at start (see RestoreMode). Default "auto"; `generation` implies
  // "required".
  restore?: RestoreMode;
  // What follows a committed final checkpoint (see OnCheckpointed). Default "wait".
  onCheckpointed?: OnCheckpointed;
  // With onCheckpointed "wait": how long after the reclaim deadline (after the checkpoint
  // when SIGTERM, which announces none, started it) the agent still waits before exiting
  // 178. Default 60 s.
  reclaimGraceMs?: number;
  // A local file holding this agent's own log: uploaded to the work dir's
  // .snapctl/logs/<attempt>/agent.log before the agent exits (and before it waits).
  logFile?: string;
  // Restore this generation rather than the newest usable one.
  generation?: number;
  // Snapshots at all: false (the compute environment's `snapshots.enabled: false`) means no
  // checkpoint of any kind, no restore unless `restore`/`generation` ask for one, and on a
  // spot notice the task runs on (with onCheckpointed "exit": until shortly before the
  // reclaim, then it is stopped: exitCode 179, outcome "interrupted"); SIGTERM stops it at
  // once (179). Default true.
  snapshots?: boolean;
  // Periodic checkpoints (deadline-aware ones included). Default true.
  checkpoints?: boolean;
  // Interval of the `heartbeat` event (carries computeMs and runtimeMs); 0: none.
  // Default 30 s.
  heartbeatIntervalMs?: number;
  // Periodic checkpoint interval. Default 5 minutes.
  checkpointIntervalMs?: number;
  // Overrides the time between a spot notice and the reclaim (tests shorten it); null or
  // undefined: the deadline IMDS announces, and 120 s for planning.
  noticeWindowMs?: number | null;
  // Generations kept after each checkpoint. Default 2.
  keepGenerations?: number;
  // IMDS poll interval. Default 2000 ms.
  imdsPollIntervalMs?: number;
  // IMDS endpoint. Default: AWS_EC2_METADATA_SERVICE_ENDPOINT or the SDK's default.
  imdsEndpoint?: string;
  // Redis URL of the controller's event queue. Undefined: events stay in the local outbox.
  redisUrl?: string;
  // $SNAPCTL_HOME (control socket and outbox under agents/). Default: the environment's.
  home?: string;
  // This instance's id for events. Default: IMDS instance-id, else "host-<hostname>".
  instanceId?: string;
  // The restore lease token this launch was made under (controller's --fencing-token);
  // sent with every event.
  fencingToken?: number;
  // Files (in the work dir) receiving the task's stdout and stderr. Default ".command.out", ".command.err".
  stdoutFile?: string;
  stderrFile?: string;
  // Extra environment of the task.
  env?: Record<string, string>;
  // S3 client for the mount and the engine. Default: driver/'s createS3Client().
  client?: S3Client;
  // How long to try delivering the last events before exiting. Default 10 s with a Redis
  // URL, 0 without (the events stay in the outbox: nothing could deliver them).
  eventsFlushTimeoutMs?: number;
  // Fine-tuning of the checkpoint policy (intervalMs and noticeWindowMs come from above).
  policy?: Omit<CheckpointPolicyOptions, "intervalMs" | "noticeWindowMs">;
  // Where SIGTERM/SIGINT come from. Default: process.
  signals?: NodeJS.EventEmitter;
  // Aborting it stops the agent as SIGTERM does (a final checkpoint).
  signal?: AbortSignal;
  logger?: Logger;
}

export type AgentOutcome =
  | "exited"
  | "checkpointed"
  // Interrupted with snapshots disabled: the task was stopped, not checkpointed (exit 179).
  | "interrupted"
  | "checkpoint-failed"
  | "restore-failed"
  | "failed";

export interface AgentResult {
  // The task id (given, or derived from the work dir).
  taskId: string;
  // The agent process's exit code (docs/exit-codes.md).
  exitCode: number;
  outcome: AgentOutcome;
  // How the task ended, when it ended on its own.
  taskExit?: TaskExit;
  // The generation restored at start, if any.
  restored?: { generation: number; resumeMs: number };
  // Checkpoints committed by this agent, in order.
  checkpoints: CheckpointResult[];
  error?: AgentError;
}

// The agent options a compute environment file sets (`snapctl agent run --compute-env`):
// spread them first, then the command line's own flags over them.
export function agentOptionsFromComputeEnvironment(
  env: ComputeEnvironment,
): Pick<
  AgentOptions,
  "snapshots" | "checkpointIntervalMs" | "noticeWindowMs" | "imdsPollIntervalMs" | "keepGenerations"
> {
  return {
    snapshots: env.snapshots.enabled,
    checkpointIntervalMs: env.snapshots.intervalMs,
    noticeWindowMs: env.agent.noticeWindowMs,
    imdsPollIntervalMs: env.agent.imdsPollIntervalMs,
    keepGenerations: env.agent.keepGenerations,
  };
}
