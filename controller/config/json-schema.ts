import { z } from "zod";
import { computeEnvironmentSchema } from "./schema.js";

// The compute environment file's JSON Schema (what a user writes, before defaults), for
// editors: examples/compute-env.schema.json is this, kept in sync by a test. Cross-field
// rules (onDemandAfter <= maxSpotAttempts, ami xor launchTemplate) and duration syntax are
// only checked by parseComputeEnvironment().
export function computeEnvironmentJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(computeEnvironmentSchema, { io: "input", unrepresentable: "any" }),
    title: "snapctl compute environment",
  };
}
