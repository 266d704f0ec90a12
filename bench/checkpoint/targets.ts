import type { CheckpointTarget } from "./checkpoint-target.js";
import { floorTarget } from "./floor-target.js";
import { naiveTarget } from "./naive-target.js";
import { projectCheckpointTarget } from "./project-target.js";

// Every checkpoint/restore target, in the order tables show them.
export const checkpointTargets: readonly CheckpointTarget[] = [
  projectCheckpointTarget,
  naiveTarget,
  floorTarget,
];
