// The snapshot engine's contract with the agent (agent/ codes against this; criu/engine
// implements it). A task runs in its own PID namespace, its files on the Fusion mount;
// checkpoints go to S3 as chunked images plus a manifest written last.
import type { Logger } from "pino";

export interface TaskSpec {
  // Stable task id ("t-42"): names the snapshot area in S3.
  id: string;
  // argv of the task.
  command: string[];
  // Absolute working directory of the task (normally inside the work dir on the mount).
  cwd: string;
  env?: Record<string, string>;
  // Files (absolute paths, normally on the mount) that receive the task's stdout and
  // stderr, opened in append mode: Nextflow's .command.out/.command.err/.command.log.
  stdoutPath: string;
  stderrPath: string;
}

export interface TaskExit {
  // The task's own exit code, or null when it was killed by a signal.
  exitCode: number | null;
  signal: string | null;
}

// A task running under the engine (started fresh or restored).
export interface RunningTask {
  // PID (in the agent's namespace) of the task's namespace init: the root CRIU dumps.
  readonly pid: number;
  // Resolves when the task ends, however it ends (including killed by a final checkpoint).
  readonly exited: Promise<TaskExit>;
  // Whether a checkpoint killed it (final checkpoint) rather than it ending on its own.
  readonly checkpointed: boolean;
  kill(signal?: NodeJS.Signals): void;
}

export type CheckpointMode = "full" | "incremental-chunks" | "predump";

export interface CheckpointOptions {
  // true: the task keeps running after the dump (periodic checkpoints); false: the dump
  // kills it (the final checkpoint before reclamation). Default true.
  leaveRunning?: boolean;
  // Why: "periodic" | "notice" | "rebalance" | "sigterm" | "manual".
  reason?: string;
  signal?: AbortSignal;
}

export interface CheckpointResult {
  generation: number;
  parentGeneration: number | null;
  mode: CheckpointMode;
  // How long the task was frozen.
  freezeMs: number;
  // From the start of the checkpoint until the manifest was committed.
  totalMs: number;
  // Bytes of images written by CRIU, and bytes actually uploaded after dedup and compression.
  bytesLogical: number;
  bytesUploaded: number;
  // Chunks taken from the parent generation on their quick hash, without a SHA-256 (0 for
  // a first checkpoint, after a restore, or when staged through the mount).
  chunksUnchanged: number;
  // Chunks changed in part since the parent generation, stored as slices of the parent's
  // chunks plus new chunks for the changed pages only (see docs/snapshot-format.md).
  chunksPatched: number;
  // The task's accumulated compute time at the freeze (for "time saved").
  taskRuntimeMs: number;
}

export interface RestoreOptions {
  // A specific generation; default: the newest usable one (falling back past damaged ones).
  generation?: number;
  // Lazy pages through userfaultfd. Default: engine decides from detected features.
  lazy?: boolean;
  signal?: AbortSignal;
}

export interface RestoreResult {
  task: RunningTask;
  generation: number;
  // Generations skipped because they were damaged, with the reason.
  skipped: Array<{ generation: number; code: string; message: string }>;
  // From the start of restore until the task runs again.
  resumeMs: number;
  lazy: boolean;
}

export interface SnapshotInfo {
  generation: number;
  createdAt: string;
  mode: CheckpointMode;
  bytesLogical: number;
  bytesUploaded: number;
}

// What the agent uses. Implementations honour AbortSignals and never leave a
// half-committed snapshot that looks complete.
export interface SnapshotEngineLike {
  // Starts the task fresh in its own PID namespace.
  start(spec: TaskSpec): Promise<RunningTask>;
  // Checkpoints the running task (started or restored by this engine).
  checkpoint(options?: CheckpointOptions): Promise<CheckpointResult>;
  // Newest committed generation of the task, or undefined: "no snapshot".
  latest(options?: { signal?: AbortSignal }): Promise<SnapshotInfo | undefined>;
  // Brings the task back from S3 on this (possibly clean) machine.
  restore(spec: TaskSpec, options?: RestoreOptions): Promise<RestoreResult>;
  // After the task ended on its own: removes memory images, keeps manifests and logs.
  cleanup(options?: { signal?: AbortSignal }): Promise<void>;
  // After a restore that failed for a reason that would repeat: takes every committed
  // generation out of the restorable set (kept aside for inspection), so that the next
  // attempt starts fresh. Returns the generations set aside.
  setAside?(options?: { signal?: AbortSignal }): Promise<number[]>;
}

export interface EngineLogger {
  logger?: Logger;
}
