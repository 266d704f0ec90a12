import { AgentError } from "../errors.js";

// The agent's own waits (for the reclaim, with or without snapshots) and what cuts them
// short: a signal ends a wait at once, also one that has not begun yet; and a forced exit
// (a second SIGINT) aborts the final checkpoint.
export class AgentWaits {
  readonly forced = new AbortController();
  private wake: (() => void) | undefined;
  private cut = false;

  // Whether a wait is under way now.
  get waiting(): boolean {
    return this.wake !== undefined;
  }

  // Sleeps `ms`, or less when cut.
  async sleep(ms: number): Promise<undefined> {
    if (this.cut) return undefined;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      timer = setTimeout(resolve, Math.max(0, ms));
    });
    clearTimeout(timer);
    this.wake = undefined;
    return undefined;
  }

  // Ends the current wait and every later one at once.
  endWaits(): void {
    this.cut = true;
    this.wake?.();
  }

  // Ends the current wait only (a later one runs its course).
  wakeOnce(): void {
    this.wake?.();
  }

  force(taskId: string, signal: string): void {
    if (!this.forced.signal.aborted)
      this.forced.abort(new AgentError("AGENT_BUSY", `Task "${taskId}": forced to exit by ${signal}`));
  }
}
