export { EventOutbox, type EventOutboxOptions } from "./event-outbox.js";
export { AGENT_EVENTS_QUEUE } from "./queue-name.js";
export { TaskEventFactory, type TaskEventFactoryOptions } from "./task-event-factory.js";
