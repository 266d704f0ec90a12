export { EventOutbox, type EventOutboxOptions } from "./event-outbox.js";
export { TaskEventFactory, type TaskEventFactoryOptions } from "./task-event-factory.js";
