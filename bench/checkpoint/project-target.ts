import type { CheckpointTarget } from "./checkpoint-target.js";

// The slot for this project's snapshot engine (criu/ + agent/): checkpoint = the agent's
// checkpoint of a task (freeze, stream compressed chunks to S3, manifest last); restore
// modes "eager" and "lazy". To wire it: implement checkpoint/restore/forget below with the
// engine's public API (criu/index.ts), return undefined from unavailable(), and nothing
// else in the harness changes. See checkpoint-target.ts for what each method must do.
export const projectCheckpointTarget: CheckpointTarget = {
  name: "spot-snapshots",
  settings: "this project's snapshot engine (not wired into the harness yet)",
  restoreModes: ["eager", "lazy"],
  async unavailable() {
    return "not wired into the harness yet (bench/checkpoint/project-target.ts)";
  },
  async checkpoint() {
    throw new Error("unreachable: unavailable() is checked first");
  },
  async restore() {
    throw new Error("unreachable: unavailable() is checked first");
  },
  async forget() {},
};
