import { z } from "zod";

// The agent's control protocol: one JSON request per line on the agent's Unix socket
// ($SNAPCTL_HOME/agents/<task>.sock), one JSON response line per request. It works without
// Redis or network: `snapctl checkpoint` runs on the same machine (or container) as the
// agent. Both sides parse what they receive with these schemas.
export const agentControlRequestSchema = z.discriminatedUnion("command", [
  z.object({ command: z.literal("checkpoint") }),
  z.object({ command: z.literal("status") }),
]);

export type AgentControlRequest = z.infer<typeof agentControlRequestSchema>;

export const agentControlResponseSchema = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), result: z.record(z.string(), z.unknown()) }),
  z.object({ ok: z.literal(false), error: z.object({ code: z.string(), message: z.string() }) }),
]);

export type AgentControlResponse = z.infer<typeof agentControlResponseSchema>;
