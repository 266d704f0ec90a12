import { z } from "zod";

// The events agents send the controller through BullMQ: the queue's name and the events'
// schema, parsed on receipt by the controller (and checked by the agent before sending).
// Fields beyond the contract (generation, durations, reasons) ride along for dashboards:
// every event is a loose object.

// The BullMQ queue agents report to and the controller consumes. Jobs are named after the
// event type, carry the event as data, and use the event id as job id (BullMQ then refuses
// a second copy of one event while the first is kept).
export const EVENTS_QUEUE = "snapctl-agent-events";

// What an agent reports about its task. Events travel through BullMQ, so any of them can
// arrive twice or late: `id` de-duplicates (unique per event, e.g. a UUID), and
// `instanceId` lets the registry ignore events from an instance the task has left.
const base = {
  id: z.string().min(1).max(200),
  taskId: z.string().min(1).max(200),
  instanceId: z.string().min(1).max(200),
  // When it happened on the agent, in ms since the epoch.
  at: z.number().int().nonnegative(),
  // Compute time the task has used on this instance so far (monotonic per instance), in ms:
  // the agent sends its run time here (wall time since its start or restore on this
  // instance). The registry keeps the largest per instance and sums the instances.
  computeMs: z.number().int().nonnegative().optional(),
};

export const taskEventSchema = z.discriminatedUnion("type", [
  z.looseObject({ ...base, type: z.literal("started") }),
  z.looseObject({ ...base, type: z.literal("checkpoint-started") }),
  z.looseObject({
    ...base,
    type: z.literal("checkpoint-committed"),
    snapshotId: z.string().min(1),
    // Bytes this checkpoint added to S3 (new chunks only, after compression).
    bytesStored: z.number().int().nonnegative(),
    // The task's own compute time at the dump, counting work restored from earlier
    // snapshots: what a re-run from scratch would have to redo.
    progressMs: z.number().int().nonnegative(),
    arch: z.enum(["x86_64", "arm64"]),
  }),
  z.looseObject({ ...base, type: z.literal("checkpoint-failed"), error: z.string() }),
  z.looseObject({ ...base, type: z.literal("interrupted"), reason: z.string().optional() }),
  z.looseObject({ ...base, type: z.literal("restored") }),
  z.looseObject({ ...base, type: z.literal("heartbeat") }),
  z.looseObject({ ...base, type: z.literal("succeeded") }),
  z.looseObject({
    ...base,
    type: z.literal("failed"),
    error: z.string(),
    exitCode: z.number().int().optional(),
  }),
]);

export type TaskEvent = z.infer<typeof taskEventSchema>;
export type TaskEventType = TaskEvent["type"];

// An event as received: parsed against the contract, or a description of what is wrong.
export function parseTaskEvent(
  input: unknown,
): { ok: true; event: TaskEvent } | { ok: false; problems: string } {
  const parsed = taskEventSchema.safeParse(input);
  if (parsed.success) return { ok: true, event: parsed.data };
  return {
    ok: false,
    problems: parsed.error.issues.map((i) => `${i.path.join(".") || "(event)"}: ${i.message}`).join("; "),
  };
}
