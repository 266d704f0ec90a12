import { appendFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Queue } from "bullmq";
import { type Logger, silentLogger } from "../../common/log.js";
import { EVENTS_QUEUE, type TaskEvent } from "../../protocol/index.js";
import { AgentError } from "../errors.js";

export interface EventOutboxOptions {
  // Local JSONL file holding events not delivered yet (on the agent's own disk, never on
  // the mount). Required.
  file: string;
  // Redis URL (redis://host:port). Undefined: events are only kept in the file.
  redisUrl?: string;
  // Default EVENTS_QUEUE.
  queueName?: string;
  // BullMQ key prefix. Default "bull" (BullMQ's).
  prefix?: string;
  // Events held at most; beyond it new events are dropped (and logged). Events are a few
  // hundred bytes, so the default 10000 bounds memory to a few MiB.
  maxBuffered?: number;
  // First retry wait after a failed delivery (doubles up to retryMaxMs). Default 200 ms / 5 s.
  retryBaseMs?: number;
  retryMaxMs?: number;
  // Bound of one delivery attempt (connect + add). Default 5000 ms.
  attemptTimeoutMs?: number;
  logger?: Logger;
}

type Line = { add: TaskEvent } | { done: string };

// Delivers events to the controller's BullMQ queue in the order they were published, at
// least once, buffering them in memory and in a local JSONL file while Redis is
// unreachable. The agent never waits for Redis: publish() returns once the event is on
// local disk. A restarted agent on the same machine re-sends what its predecessor left.
export class EventOutbox {
  private readonly o: Required<Omit<EventOutboxOptions, "redisUrl" | "logger">> & { redisUrl?: string };
  private readonly logger: Logger;
  private readonly buffer: TaskEvent[] = [];
  private readonly closing = new AbortController();
  private queue: Queue | undefined;
  private pump: Promise<void> | undefined;
  private fileWrites: Promise<void> = Promise.resolve();
  private drained: Array<() => void> = [];
  private delivered = 0;
  private dropped = 0;

  private constructor(options: EventOutboxOptions) {
    this.o = {
      queueName: EVENTS_QUEUE,
      prefix: "bull",
      maxBuffered: 10_000,
      retryBaseMs: 200,
      retryMaxMs: 5_000,
      attemptTimeoutMs: 5_000,
      ...stripUndefined(options),
    } as typeof this.o;
    this.logger = options.logger ?? silentLogger;
  }

  // Opens the outbox and starts re-sending events a previous agent left in `file`.
  static async open(options: EventOutboxOptions): Promise<EventOutbox> {
    const outbox = new EventOutbox(options);
    await mkdir(dirname(options.file), { recursive: true });
    const left = await readLeftovers(options.file);
    outbox.buffer.push(...left);
    // Rewrite the file with only what is still pending, so it never grows without bound.
    await writeFile(options.file, left.map((event) => `${JSON.stringify({ add: event })}\n`).join(""));
    outbox.kick();
    return outbox;
  }

  // Events published and not yet delivered.
  get pending(): number {
    return this.buffer.length;
  }

  get stats(): { delivered: number; pending: number; dropped: number } {
    return { delivered: this.delivered, pending: this.buffer.length, dropped: this.dropped };
  }

  // Queues an event; resolves once it is in the local file. Delivery happens behind.
  async publish(event: TaskEvent): Promise<void> {
    if (this.closing.signal.aborted)
      throw new AgentError(
        "AGENT_EVENTS_UNDELIVERED",
        `Outbox is closed; event ${event.type} ${event.id} not sent`,
      );
    if (this.buffer.length >= this.o.maxBuffered) {
      this.dropped++;
      this.logger.error({ event, maxBuffered: this.o.maxBuffered }, "event outbox full; event dropped");
      return;
    }
    this.buffer.push(event);
    await this.writeLine({ add: event });
    this.kick();
  }

  // Waits until every published event is delivered; false if `timeoutMs` passed first.
  async flush(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<boolean> {
    if (this.buffer.length === 0) return true;
    const done = new Promise<boolean>((resolve) => this.drained.push(() => resolve(true)));
    const timers = new AbortController();
    const onAbort = () => timers.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const timeout =
        options.timeoutMs === undefined
          ? new Promise<boolean>(() => {})
          : sleep(options.timeoutMs, false, { signal: timers.signal }).catch(() => false);
      const aborted = new Promise<boolean>((resolve) =>
        timers.signal.addEventListener("abort", () => resolve(false)),
      );
      return await Promise.race([done, timeout, aborted]);
    } finally {
      timers.abort();
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  // Tries to deliver what is pending for up to `flushTimeoutMs` (default 0), then stops.
  // Undelivered events stay in the file for a later agent on this machine. Memoized: a
  // second call waits for the first (its flush timeout is the first's).
  close(options: { flushTimeoutMs?: number } = {}): Promise<void> {
    this.closed ??= this.closeNow(options);
    return this.closed;
  }

  private closed: Promise<void> | undefined;

  private async closeNow(options: { flushTimeoutMs?: number }): Promise<void> {
    if (options.flushTimeoutMs) await this.flush({ timeoutMs: options.flushTimeoutMs });
    this.closing.abort();
    await this.pump;
    await this.fileWrites;
    await this.dropQueue();
    if (this.buffer.length > 0)
      this.logger.warn(
        { pending: this.buffer.length, file: this.o.file },
        "events left undelivered in the outbox file",
      );
  }

  private kick(): void {
    if (this.pump || this.buffer.length === 0 || !this.o.redisUrl || this.closing.signal.aborted) return;
    this.pump = this.deliverAll()
      .catch((err: unknown) => this.logger.error({ err }, "event delivery stopped"))
      .finally(() => {
        this.pump = undefined;
        this.kick();
      });
  }

  // One worker: the head of the buffer is retried until delivered, so order is kept.
  private async deliverAll(): Promise<void> {
    const signal = this.closing.signal;
    let failures = 0;
    while (this.buffer.length > 0 && !signal.aborted) {
      const event = this.buffer[0] as TaskEvent;
      try {
        await this.deliver(event);
        failures = 0;
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 20 === 0)
          this.logger.warn({ err, failures, pending: this.buffer.length }, "cannot deliver events; retrying");
        await this.dropQueue();
        const wait = Math.min(this.o.retryMaxMs, this.o.retryBaseMs * 2 ** Math.min(failures - 1, 16));
        await sleep(wait, undefined, { signal }).catch(() => {});
        continue;
      }
      this.buffer.shift();
      this.delivered++;
      await this.writeLine({ done: event.id });
      if (this.buffer.length === 0) {
        await this.compact();
        for (const resolve of this.drained.splice(0)) resolve();
      }
    }
  }

  private async deliver(event: TaskEvent): Promise<void> {
    if (!this.queue) {
      const url = new URL(this.o.redisUrl as string);
      const queue = new Queue(this.o.queueName, {
        prefix: this.o.prefix,
        connection: {
          host: url.hostname,
          port: Number(url.port || 6379),
          username: url.username ? decodeURIComponent(url.username) : undefined,
          password: url.password ? decodeURIComponent(url.password) : undefined,
          // Fail fast while Redis is down: the outbox keeps the event and retries itself.
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          connectTimeout: this.o.attemptTimeoutMs,
          retryStrategy: () => null,
        },
      });
      queue.on("error", () => {});
      this.queue = queue;
    }
    const queue = this.queue;
    const attempt = (async () => {
      await queue.waitUntilReady();
      await queue.add(event.type, event, { jobId: event.id });
    })();
    const timer = new AbortController();
    try {
      await Promise.race([
        attempt,
        sleep(this.o.attemptTimeoutMs, undefined, { signal: timer.signal }).then(() => {
          throw new AgentError(
            "AGENT_EVENTS_UNDELIVERED",
            `Redis did not take event ${event.id} within ${this.o.attemptTimeoutMs} ms`,
          );
        }),
      ]);
    } finally {
      timer.abort();
      attempt.catch(() => {});
    }
  }

  private async dropQueue(): Promise<void> {
    const queue = this.queue;
    this.queue = undefined;
    if (!queue) return;
    // disconnect() does not wait for a server that is gone, close() might.
    await queue.disconnect().catch(() => {});
  }

  private writeLine(line: Line): Promise<void> {
    const write = this.fileWrites.then(() => appendFile(this.o.file, `${JSON.stringify(line)}\n`));
    this.fileWrites = write.catch((err: unknown) =>
      this.logger.error({ err, file: this.o.file }, "cannot write the event outbox file"),
    );
    return this.fileWrites;
  }

  private compact(): Promise<void> {
    const write = this.fileWrites.then(() =>
      this.buffer.length === 0 ? writeFile(this.o.file, "") : undefined,
    );
    this.fileWrites = write.catch((err: unknown) =>
      this.logger.error({ err }, "cannot compact the outbox file"),
    );
    return this.fileWrites;
  }
}

// Events added and not marked done, in order. A torn last line (a crash mid-write) is skipped.
async function readLeftovers(file: string): Promise<TaskEvent[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new AgentError(
      "AGENT_OUTBOX_CORRUPT",
      `Cannot read event outbox "${file}": ${(err as Error).message}`,
      { cause: err },
    );
  }
  const pending = new Map<string, TaskEvent>();
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  lines.forEach((raw, index) => {
    let line: Line;
    try {
      line = JSON.parse(raw) as Line;
    } catch (err) {
      if (index === lines.length - 1) return;
      throw new AgentError(
        "AGENT_OUTBOX_CORRUPT",
        `Event outbox "${file}" line ${index + 1} is not JSON: ${raw.slice(0, 100)}`,
        { cause: err },
      );
    }
    if ("add" in line) pending.set(line.add.id, line.add);
    else if ("done" in line) pending.delete(line.done);
  });
  return [...pending.values()];
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
