// The agent's states, and the only moves between them. `snapctl checkpoint --status` and
// heartbeats report the state; a move not listed is a bug, and throws.
export type AgentState =
  // Setting up: control socket, outbox, watcher, mount, engine.
  | "starting"
  // Bringing the task back from a snapshot.
  | "restoring"
  // The task runs; periodic checkpoints are due on the policy's schedule.
  | "running"
  // A checkpoint that leaves the task running.
  | "checkpointing"
  // An interruption or the task's exit is being handled (final checkpoint, flush, events).
  | "finishing"
  // The final checkpoint is committed and the task stopped; waiting for the reclaim.
  | "waiting-for-reclaim"
  // Done: only tear-down is left.
  | "stopped";

const MOVES: Readonly<Record<AgentState, readonly AgentState[]>> = {
  starting: ["restoring", "running", "finishing", "stopped"],
  restoring: ["running", "finishing", "stopped"],
  running: ["checkpointing", "finishing", "stopped"],
  checkpointing: ["running", "finishing", "stopped"],
  finishing: ["waiting-for-reclaim", "stopped"],
  "waiting-for-reclaim": ["stopped"],
  stopped: [],
};

export class AgentStateMachine {
  private current: AgentState = "starting";

  get state(): AgentState {
    return this.current;
  }

  // Whether the agent has started to finish (no new checkpoint may begin).
  get finishing(): boolean {
    return (
      this.current === "finishing" || this.current === "waiting-for-reclaim" || this.current === "stopped"
    );
  }

  // Moves to `next`; staying in the same state is allowed and does nothing.
  to(next: AgentState): void {
    if (next === this.current) return;
    if (!MOVES[this.current].includes(next))
      throw new Error(`agent state machine: no move from "${this.current}" to "${next}"`);
    this.current = next;
  }
}
