export { formatDuration, parseDuration } from "./duration.js";
export { computeEnvironmentJsonSchema } from "./json-schema.js";
export {
  type LoadOptions,
  loadComputeEnvironment,
  type ParseOptions,
  parseComputeEnvironment,
} from "./load.js";
export {
  type AgentSettings,
  type ComputeEnvironment,
  type ComputeEnvironmentInput,
  computeEnvironmentSchema,
  type Ec2ComputeEnvironment,
  type Ec2Settings,
  type LocalComputeEnvironment,
  type LocalSettings,
  type SnapshotSettings,
} from "./schema.js";
