import type { CheckpointResult, TaskExit } from "../../criu/index.js";

// Why the agent's loop wakes up.
export type Trigger =
  | { kind: "exit"; exit: TaskExit }
  | { kind: "interrupt"; reason: string; deadline: number | undefined }
  | { kind: "timer" }
  | { kind: "rebalance" }
  | {
      kind: "manual";
      resolve: (result: CheckpointResult) => void;
      reject: (err: Error) => void;
    };

export type CheckpointTrigger = Extract<Trigger, { kind: "timer" | "rebalance" | "manual" }>;

// The agent loop's mailbox. The task's exit comes first, then an interruption, then
// checkpoint requests in arrival order (several pending requests share one checkpoint).
export class TriggerBox {
  private items: Trigger[] = [];
  private wake: (() => void) | undefined;

  push(trigger: Trigger): void {
    this.items.push(trigger);
    this.wake?.();
  }

  async next(): Promise<Trigger> {
    for (;;) {
      const trigger = this.take();
      if (trigger) return trigger;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  // Checkpoint requests still waiting (answered by the checkpoint about to run).
  drainCheckpoints(): CheckpointTrigger[] {
    const taken = this.items.filter((t): t is CheckpointTrigger => isCheckpoint(t));
    this.items = this.items.filter((t) => !isCheckpoint(t));
    return taken;
  }

  // Fails every manual request still waiting (the agent is finishing).
  rejectAll(err: Error): void {
    for (const t of this.drainCheckpoints()) if (t.kind === "manual") t.reject(err);
  }

  private take(): Trigger | undefined {
    for (const kind of ["exit", "interrupt"] as const) {
      const index = this.items.findIndex((t) => t.kind === kind);
      if (index >= 0) return this.items.splice(index, 1)[0];
    }
    return this.items.shift();
  }
}

function isCheckpoint(t: Trigger): boolean {
  return t.kind === "timer" || t.kind === "rebalance" || t.kind === "manual";
}
