// Exit codes of snapctl and of the agent: what crosses the process boundary to a scheduler
// (AWS Batch, Kubernetes, Nextflow) and to the controller. Documented in
// docs/exit-codes.md; a test checks that every code here is listed there.
//
// 175 and 176 mean what they mean in Fusion Snapshots, so that retry rules written for
// Fusion (Nextflow `errorStrategy`, Batch `evaluateOnExit`) keep working unchanged.
export const ExitCode = {
  ok: 0,
  // A check or command failed for a reason the output names.
  failure: 1,
  // The command line was wrong (unknown option, missing argument, bad value).
  usage: 2,
  // snapctl is not built or installed correctly.
  notInstalled: 70,
  // Fusion's "Checkpoint dump failed": an interruption came and the final checkpoint (dump
  // or upload) failed; the task was stopped and its progress since the last committed
  // snapshot is lost. Retry: the next attempt restores an older snapshot or starts fresh.
  dumpFailed: 175,
  // Fusion's "Checkpoint restore failed": the snapshot could not be brought back. The
  // generations that failed are set aside, so the next attempt starts fresh.
  restoreFailed: 176,
  // "Checkpointed, restore me": the final checkpoint is committed and the task stopped,
  // and the agent ends without having been reclaimed (at once when the controller runs it;
  // under a scheduler only if the instance outlives the deadline by the grace period).
  checkpointed: 178,
  // Interrupted with snapshots disabled: the task was stopped without a checkpoint.
  interrupted: 179,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

// The codes that mean "run the same command again": the next attempt restores or re-runs.
export const RETRYABLE_EXIT_CODES: readonly number[] = [
  ExitCode.dumpFailed,
  ExitCode.restoreFailed,
  ExitCode.checkpointed,
  ExitCode.interrupted,
];
