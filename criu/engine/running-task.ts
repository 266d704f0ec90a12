import { signalTree } from "./process-tree.js";
import type { RunningTask, TaskExit } from "./types.js";

// A task started or restored by the engine. The namespace init is a small shell shim that
// records the task's exit code in <cwd>/.exitcode, which survives a restore (CRIU's own
// exit status after a non-detached restore says nothing about the task).
export class TaskHandle implements RunningTask {
  checkpointed = false;
  readonly exited: Promise<TaskExit>;

  constructor(
    readonly pid: number,
    exited: Promise<TaskExit>,
  ) {
    this.exited = exited;
  }

  // Sends `signal` to every process of the tree: a namespace init ignores signals it has
  // no handler for (except SIGKILL), so signalling only the init would do nothing.
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (signal === "SIGKILL") {
      try {
        process.kill(this.pid, "SIGKILL");
      } catch {
        // gone
      }
      return;
    }
    signalTree(this.pid, signal).catch(() => {});
  }
}

// The shim run as the namespace init: runs argv with stdout/stderr appended to the task's
// files and writes its exit status to the exit-code file.
// It changes into the task's cwd itself: a spawn with `cwd` on the mount would deadlock
// (libuv's spawn blocks this process, which serves FUSE, until the child's chdir is done).
export function shimCommand(
  spec: { command: string[]; cwd: string; stdoutPath: string; stderrPath: string },
  exitCodePath: string,
): string[] {
  return [
    "bash",
    "-c",
    // Closes every inherited descriptor above stderr first: the FUSE server's /dev/fuse
    // descriptor (opened by libfuse without O_CLOEXEC) would otherwise be in the task, and
    // CRIU cannot dump it. bash, because dash cannot close descriptors above 9.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion
    'for p in /proc/$$/fd/*; do n=${p##*/}; [ "$n" -gt 2 ] && exec {n}>&-; done; ' +
      'cd "$1" || exit 126; o=$2; e=$3; x=$4; shift 4; "$@" >>"$o" 2>>"$e"; echo $? >"$x"',
    "snapctl-task",
    spec.cwd,
    spec.stdoutPath,
    spec.stderrPath,
    exitCodePath,
    ...spec.command,
  ];
}

// Turns the recorded exit code (or its absence) and the process's own end into a TaskExit.
export function taskExit(recorded: string | undefined, signal: string | null): TaskExit {
  const code = recorded === undefined ? Number.NaN : Number.parseInt(recorded.trim(), 10);
  if (Number.isInteger(code)) return { exitCode: code, signal: null };
  return { exitCode: null, signal: signal ?? "SIGKILL" };
}
