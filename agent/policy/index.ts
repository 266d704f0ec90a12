export {
  type CheckpointDue,
  CheckpointPolicy,
  type CheckpointPolicyOptions,
  type CheckpointSample,
  type DueReason,
} from "./checkpoint-policy.js";
