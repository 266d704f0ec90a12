import type { ConnectionOptions } from "bullmq";

// The BullMQ queues between snapctl, the agents and the controller service.
// Agents publish their TaskEvents (controller/registry/events.ts) on EVENTS_QUEUE, one job
// per event named after its type, the event id as job id. The agent's AGENT_EVENTS_QUEUE
// (agent/events/) has the same value; a test checks it.
export const EVENTS_QUEUE = "snapctl-agent-events";
// Requests to the controller service: launch a submitted task, schedule an interruption
// (local provider), reconcile one task now.
export const CONTROL_QUEUE = "snapctl-control";

export type ControlRequest =
  | { type: "launch"; taskId: string }
  | { type: "reconcile"; taskId: string }
  | { type: "interrupt"; taskId: string; inSeconds: number };

export interface InterruptResult {
  taskId: string;
  instanceId: string;
  deadline: number;
}

// BullMQ connection options for a redis:// URL. Workers need maxRetriesPerRequest null
// (they block on Redis); producers get the same so a Redis restart only delays them.
export function bullConnection(url: string): ConnectionOptions {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined,
    maxRetriesPerRequest: null,
  };
}
