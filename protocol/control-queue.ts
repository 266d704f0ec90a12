import { z } from "zod";

// Requests from snapctl to the controller service on a BullMQ queue: launch a submitted
// task, reconcile one task now, schedule an interruption (local provider). The controller
// parses each job's data with controlRequestSchema; a job that does not parse is refused.
export const CONTROL_QUEUE = "snapctl-control";

const taskId = z.string().min(1).max(200);

export const controlRequestSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("launch"), taskId }),
  z.object({ type: z.literal("reconcile"), taskId }),
  z.object({ type: z.literal("interrupt"), taskId, inSeconds: z.number().int().nonnegative() }),
]);

export type ControlRequest = z.infer<typeof controlRequestSchema>;

// The answer to an "interrupt" request.
export const interruptResultSchema = z.object({
  taskId,
  instanceId: z.string().min(1),
  deadline: z.number().int().nonnegative(),
});

export type InterruptResult = z.infer<typeof interruptResultSchema>;
