import type { Logger } from "../../common/log.js";
import type { RunningTask, TaskExit } from "../../criu/index.js";
import type { TaskClock } from "./task-clock.js";

// The task the agent runs (started or restored), and how it ended: its exit is noted once,
// with the clock stopped, and told to the agent unless a final checkpoint stopped it.
export class TaskSlot {
  task: RunningTask | undefined;
  ended: TaskExit | undefined;

  constructor(
    private readonly options: { clock: TaskClock; logger: Logger; onExit: (exit: TaskExit) => void },
  ) {}

  // The task runs from now on; `runtimeBeforeMs` is what it ran before its restore.
  adopt(task: RunningTask, runtimeBeforeMs = 0): void {
    this.task = task;
    this.options.clock.started(runtimeBeforeMs);
    task.exited.then(
      (exit) => {
        this.options.clock.ended();
        this.ended = exit;
        // A final checkpoint stops the task on purpose: that is not the task's own exit.
        if (!task.checkpointed) this.options.onExit(exit);
      },
      (err: unknown) => {
        this.options.logger.error({ err }, "cannot tell how the task ended");
        this.options.clock.ended();
        const exit = { exitCode: null, signal: "SIGKILL" };
        this.ended = exit;
        this.options.onExit(exit);
      },
    );
  }

  // Resolves with the task's exit if it ends within `ms`.
  async endedWithin(ms: number): Promise<TaskExit | undefined> {
    if (this.ended || !this.task) return this.ended;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    });
    try {
      return await Promise.race([this.task.exited.catch(() => undefined), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // Kills the task and waits for it to be gone: its processes close files on the mount as
  // they die, and the mount must still be served then.
  async stop(): Promise<void> {
    if (!this.task || this.ended) return;
    this.task.kill("SIGKILL");
    if (!(await this.endedWithin(10_000)))
      this.options.logger.error({ pid: this.task.pid }, "the task did not die within 10 s of SIGKILL");
  }
}
