import type { BenchContext } from "../harness/context.js";

// A running task as the harness sees it: the PID to checkpoint (a PID namespace's init,
// see hog.ts) and the directory it writes its heartbeat and notes to.
export interface TaskRef {
  pid: number;
  dir: string;
}

export interface CheckpointResult {
  // How long the task was frozen (CRIU's frozen_time, or the target's own measure).
  freezeSeconds: number;
  // From the start of the checkpoint until the snapshot is committed (durable in S3, or
  // written, for the tmpfs floor).
  committedSeconds: number;
  bytesUploaded: number;
}

export interface RestoredTask {
  // The restored task's root PID (the harness signals it to finish, then kills it).
  pid: number;
  // Stops whatever the restore left running (lazy page servers...); idempotent.
  close(): Promise<void>;
}

// A way to checkpoint and restore a task: the naive path, the tmpfs floor, this project.
// Adding a target is one object implementing this and one line in checkpoint/targets.ts.
export interface CheckpointTarget {
  readonly name: string;
  readonly settings: string;
  // Restore variants it offers ("eager", "lazy"...); empty when it cannot restore.
  readonly restoreModes: readonly string[];
  unavailable(): Promise<string | undefined>;
  // Checkpoints the task, which keeps running. `key` names the snapshot in the bucket;
  // `parent` is the previous snapshot of the same task (for incremental checkpoints).
  checkpoint(
    task: TaskRef,
    context: BenchContext,
    options: { key: string; parent?: string },
  ): Promise<CheckpointResult>;
  // Restores snapshot `key` as a clean machine would (nothing local); resolves once the
  // restore command has returned. The harness times the task's heartbeat itself.
  restore(
    context: BenchContext,
    options: { key: string; mode: string; task: TaskRef },
  ): Promise<RestoredTask>;
  // Deletes what the target keeps locally for the snapshot `key`.
  forget(context: BenchContext, key: string): Promise<void>;
}
