// The BullMQ queue agents report to and the controller consumes. Jobs are named after the
// event type, carry the event as data, and use the event id as job id (BullMQ then refuses
// a second copy of one event while the first is kept).
export const AGENT_EVENTS_QUEUE = "snapctl-agent-events";
