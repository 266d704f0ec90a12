import { constants } from "node:os";
import type { TaskExit } from "../../criu/index.js";

// The agent's exit code when the task ended on its own: the task's code, or 128 + the
// signal number when a signal killed it (as a shell reports it).
export function taskExitCode(exit: TaskExit): number {
  if (exit.exitCode !== null) return exit.exitCode;
  const number = constants.signals[exit.signal as NodeJS.Signals] as number | undefined;
  return 128 + (number ?? constants.signals.SIGKILL);
}
