// Exit codes of snapctl and of the agent. Documented in docs/exit-codes.md; a test
// checks that every code here is listed there.
export const ExitCode = {
  ok: 0,
  // A check or command failed for a reason the output names.
  failure: 1,
  // The command line was wrong (unknown option, missing argument, bad value).
  usage: 2,
  // snapctl is not built or installed correctly.
  notInstalled: 70,
  // The task was checkpointed because of an interruption: restore it elsewhere.
  // (The same value as Fusion Snapshots' "checkpointed" code.)
  checkpointed: 175,
  // The checkpoint failed: the task's state since the last snapshot is lost.
  checkpointFailed: 176,
  // The restore failed: no usable snapshot could be brought back.
  restoreFailed: 177,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];
