import type { Logger } from "../../common/log.js";
import type { EventOutbox } from "../events/event-outbox.js";
import type { TaskEventFactory } from "../events/task-event-factory.js";
import type { TaskClock } from "./task-clock.js";

type TaskEventType = Parameters<TaskEventFactory["make"]>[0];

// The agent's events: made in the contract, published to the outbox (which only needs the
// local disk, so reporting never waits for Redis), each carrying the task's computeMs on
// this instance once it runs; and the periodic heartbeat.
export class EventReporter {
  private outbox: EventOutbox | undefined;
  private factory: TaskEventFactory | undefined;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(private readonly options: { clock: TaskClock; logger: Logger }) {}

  // Events are dropped until both exist (nothing to report before the agent is set up).
  connect(outbox: EventOutbox, factory: TaskEventFactory): void {
    this.outbox = outbox;
    this.factory = factory;
  }

  async report(type: TaskEventType, extra: Record<string, unknown>, now = Date.now()): Promise<void> {
    if (!this.outbox || !this.factory) return;
    const computeMs = this.options.clock.computeMs(now);
    const fields = computeMs === undefined ? extra : { computeMs, ...extra };
    // biome-ignore lint/suspicious/noExplicitAny: the factory checks each type's own fields.
    const event = this.factory.make(type, fields as any);
    await this.outbox
      .publish(event)
      .catch((err: unknown) => this.options.logger.error({ err, event }, "event lost"));
  }

  // A `heartbeat` every `everyMs` (0: none) while `live()` says the task runs (also while
  // the agent is stopping: a final checkpoint, or the wait for the reclaim).
  startHeartbeat(everyMs: number, live: () => boolean, state: () => string): void {
    if (everyMs <= 0 || this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      if (!live()) return;
      const now = Date.now();
      void this.report("heartbeat", { runtimeMs: this.options.clock.runtimeMs(now), state: state() }, now);
    }, everyMs);
    this.heartbeat.unref();
  }

  stopHeartbeat(): void {
    clearInterval(this.heartbeat);
  }
}
