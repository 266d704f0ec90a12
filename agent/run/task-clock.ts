// The task's run time as events report it: on this instance since it started or was
// restored here (frozen once it ended), plus what it ran on earlier instances (from the
// snapshot's manifest).
export class TaskClock {
  private startedAt: number | undefined;
  private endedAt: number | undefined;
  private beforeMs = 0;

  constructor(private readonly now: () => number = Date.now) {}

  // The task runs from now on; `runtimeBeforeMs` is what it ran before its restore.
  started(runtimeBeforeMs = 0): void {
    this.startedAt = this.now();
    this.beforeMs = runtimeBeforeMs;
  }

  ended(): void {
    this.endedAt ??= this.now();
  }

  // Whole ms the task has run on this instance: the events' computeMs, which the registry
  // keeps per instance and sums. Undefined before the task runs.
  computeMs(at = this.now()): number | undefined {
    if (this.startedAt === undefined) return undefined;
    return Math.max(0, Math.round((this.endedAt ?? at) - this.startedAt));
  }

  // The task's accumulated run time, earlier instances included (what a re-run would redo).
  runtimeMs(at = this.now()): number | undefined {
    const here = this.computeMs(at);
    return here === undefined ? undefined : Math.round(this.beforeMs) + here;
  }
}
