import { randomBytes } from "node:crypto";
import { arch as hostArch, hostname } from "node:os";
import { join } from "node:path";
import { DelayedError, type Job, Queue, UnrecoverableError, Worker } from "bullmq";
import { Redis } from "ioredis";
import { hasCode } from "../../common/errors.js";
import { type Logger, silentLogger } from "../../common/log.js";
import {
  CONTROL_QUEUE,
  type ControlRequest,
  controlRequestSchema,
  EVENTS_QUEUE,
  ExitCode,
  type InterruptResult,
  parseTaskEvent,
  type TaskEvent,
} from "../../protocol/index.js";
import type { ComputeEnvironment } from "../config/index.js";
import { createProvider, type Provider } from "../providers/index.js";
import {
  type LocalInstanceExit,
  LocalProvider,
  type LocalProviderConfig,
} from "../providers/local-provider.js";
import { type Arch, isFinal, TaskRegistry } from "../registry/index.js";
import { ServiceError } from "./errors.js";
import { bullConnection } from "./queues.js";
import { TaskEnvironments } from "./task-environments.js";
import { TaskLauncher } from "./task-launcher.js";

export interface ControllerServiceOptions {
  // redis:// URL of the registry and the queues.
  redisUrl: string;
  // Prefix of the registry's keys. Default "snapctl:".
  prefix?: string;
  // The controller's own directory: local instances (<stateDir>/instances) and the
  // environment files given to agents (<stateDir>/envs).
  stateDir: string;
  // Name in restore leases. Default "<host>:<pid>:<random>".
  owner?: string;
  // Restore lease TTL: longer than a launch takes. Default 300000 (5 min).
  leaseTtlMs?: number;
  // Every task not finished is reconciled this often (lost triggers, takeovers after a
  // crash, Redis outages). Default 5000.
  sweepIntervalMs?: number;
  // A deferred event (from an instance not recorded yet) is retried every
  // `deferRetryMs` (default 500) until it is `deferLimitMs` old (default 600000), then dropped.
  deferRetryMs?: number;
  deferLimitMs?: number;
  // The provider to launch with; default: createProvider(env) per environment, the
  // local one owned by this service (its instances end with it).
  provider?: Provider;
  // Options for the local provider this service creates.
  local?: Partial<LocalProviderConfig>;
  // Queue names. Defaults EVENTS_QUEUE, CONTROL_QUEUE.
  eventsQueue?: string;
  controlQueue?: string;
  // Told of every local instance that ends (the demo shows it).
  onInstanceExit?: (exit: LocalInstanceExit) => void;
  logger?: Logger;
  signal?: AbortSignal;
}

// The controller service: consumes agents' events (BullMQ) into the task registry,
// recovers interrupted tasks (restore, re-run, give up), launches instances for submitted
// tasks, and answers control requests from snapctl. Any number may run against one
// Redis: restore leases with fencing tokens keep launches exactly-once.
export class ControllerService {
  readonly owner: string;
  private readonly options: ControllerServiceOptions;
  private readonly logger: Logger;
  private readonly abort = new AbortController();
  private redis?: Redis;
  private registryInstance?: TaskRegistry;
  private launcher?: TaskLauncher;
  private eventsQueue?: Queue;
  private workers: Worker[] = [];
  private sweepTimer?: NodeJS.Timeout;
  private sweeping?: Promise<void>;
  private readonly providers = new Map<string, Provider>();
  private readonly exitListener = (exit: LocalInstanceExit) => this.onInstanceExit(exit);
  private readying?: Promise<void>;
  private closing?: Promise<void>;

  constructor(options: ControllerServiceOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
    options.signal?.addEventListener("abort", () => void this.close().catch(() => {}), { once: true });
  }

  get registry(): TaskRegistry {
    if (!this.registryInstance) throw new Error("ControllerService is not ready");
    return this.registryInstance;
  }

  // Starts the workers and the sweep. Memoized.
  ready(): Promise<void> {
    this.readying ??= this.start();
    return this.readying;
  }

  private async start(): Promise<void> {
    const { redisUrl } = this.options;
    const prefix = this.options.prefix ?? "snapctl:";
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    this.redis.on("error", () => {});
    this.registryInstance = new TaskRegistry({ redis: this.redis, prefix });
    const environments = new TaskEnvironments(this.redis, prefix);
    this.launcher = new TaskLauncher({
      registry: this.registryInstance,
      environments,
      providerFor: (env) => this.providerFor(env),
      owner: this.owner,
      leaseTtlMs: this.options.leaseTtlMs ?? 300_000,
      envDir: join(this.options.stateDir, "envs"),
      defaultArch: (hostArch() === "arm64" ? "arm64" : "x86_64") as Arch,
      logger: this.logger,
    });
    const connection = bullConnection(redisUrl);
    this.eventsQueue = new Queue(this.options.eventsQueue ?? EVENTS_QUEUE, { connection });
    this.eventsQueue.on("error", () => {});
    // One worker per queue, one job at a time: a task's events are applied in order.
    const events = new Worker(
      this.options.eventsQueue ?? EVENTS_QUEUE,
      (job, token) => this.onEvent(job, token),
      {
        connection,
        concurrency: 1,
        removeOnComplete: { count: 1000 },
        removeOnFail: { count: 1000 },
      },
    );
    const control = new Worker(
      this.options.controlQueue ?? CONTROL_QUEUE,
      (job) => this.onControl(job.data),
      { connection, concurrency: 1, removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } },
    );
    for (const worker of [events, control]) {
      worker.on("error", (err) => this.logger.warn({ err: err.message }, "queue worker error"));
      this.workers.push(worker);
    }
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
    if (this.options.provider instanceof LocalProvider) {
      this.options.provider.on("exit", this.exitListener);
    }
    const interval = this.options.sweepIntervalMs ?? 5_000;
    this.sweepTimer = setInterval(() => this.scheduleSweep(), interval);
    this.scheduleSweep();
    this.logger.info({ owner: this.owner }, "controller service ready");
  }

  // Stops the workers and the sweep, then the providers it created (local instances are
  // terminated) and the Redis connection. Every step runs even if another fails. Memoized.
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort();
      if (this.sweepTimer) clearInterval(this.sweepTimer);
      if (this.options.provider instanceof LocalProvider)
        this.options.provider.off("exit", this.exitListener);
      await this.readying?.catch(() => {});
      const steps: Array<() => Promise<unknown>> = [
        ...this.workers.map((w) => () => w.close()),
        async () => this.sweeping,
        ...[...this.providers.values()].map((p) => async () => (p as LocalProvider).close?.()),
        async () => this.eventsQueue?.close(),
        async () => this.registryInstance?.close(),
        async () => this.redis?.quit().catch(() => this.redis?.disconnect()),
      ];
      const failures: unknown[] = [];
      for (const step of steps) await step().catch((err) => failures.push(err));
      if (failures.length > 0)
        this.logger.warn({ failures: failures.length }, "controller service closed with errors");
    })();
    return this.closing;
  }

  // Reconciles one task now (tests and the control queue use it).
  async reconcile(taskId: string): Promise<void> {
    await this.ready();
    await this.launcher?.reconcile(taskId, this.abort.signal);
  }

  private providerFor(env: ComputeEnvironment): Provider {
    if (this.options.provider) return this.options.provider;
    const key = `${env.provider}:${env.name}`;
    let provider = this.providers.get(key);
    if (!provider) {
      provider = createProvider(env, {
        logger: this.logger,
        local: { baseDir: join(this.options.stateDir, "instances"), ...this.options.local },
      } as Parameters<typeof createProvider>[1]);
      if (provider instanceof LocalProvider) {
        provider.on("exit", this.exitListener);
      }
      this.providers.set(key, provider);
    }
    return provider;
  }

  private async onEvent(job: Job, token?: string): Promise<void> {
    const parsed = parseTaskEvent(job.data);
    if (!parsed.ok) {
      this.logger.warn({ problems: parsed.problems }, "dropping an invalid event");
      throw new UnrecoverableError(`Invalid task event: ${parsed.problems}`);
    }
    const event = parsed.event;
    if (await this.restoreFailed(event)) return;
    let result: Awaited<ReturnType<TaskRegistry["applyEvent"]>>;
    try {
      result = await this.registry.applyEvent(event);
    } catch (err) {
      if (hasCode(err, "REGISTRY_INVALID_INPUT")) {
        this.logger.warn({ err: (err as Error).message }, "dropping an invalid event");
        throw new UnrecoverableError((err as Error).message);
      }
      throw err;
    }
    const log = this.logger.child({ taskId: event.taskId, instanceId: event.instanceId, event: event.type });
    if (result.outcome === "deferred") {
      const limit = this.options.deferLimitMs ?? 600_000;
      if (Date.now() - event.at > limit) {
        log.warn("dropping an event of an instance never recorded");
        return;
      }
      await job.moveToDelayed(Date.now() + (this.options.deferRetryMs ?? 500), token);
      throw new DelayedError();
    }
    log.debug({ outcome: result.outcome, state: result.state, detail: result.detail }, "event");
    if (result.outcome === "applied" && result.from !== result.state) {
      log.info({ from: result.from, to: result.state }, "task moved");
    }
    // Also for ignored events: the end of a reclaimed instance lets recovery go on.
    if (result.state === "interrupted") {
      await this.launcher?.reconcile(event.taskId, this.abort.signal);
    }
  }

  // A restore that failed on the instance restoring the task (agent exit 176: the
  // snapshot cannot be brought back) falls back to a re-run from scratch rather than
  // failing the task: restoring -> pending, as the state machine allows.
  private async restoreFailed(event: TaskEvent): Promise<boolean> {
    if (event?.type !== "failed" || event.exitCode !== ExitCode.restoreFailed) return false;
    const task = await this.registry.getTask(event.taskId).catch(() => undefined);
    if (task?.state !== "restoring" || task.instanceId !== event.instanceId) return false;
    try {
      await this.registry.transition(task.id, "pending", {
        from: "restoring",
        reason: `re-run from scratch: the restore failed on ${event.instanceId}: ${event.error}`,
      });
    } catch (err) {
      if (hasCode(err, "REGISTRY_STATE_CONFLICT")) return false;
      throw err;
    }
    this.logger.warn({ taskId: task.id, error: event.error }, "restore failed: re-running from scratch");
    await this.launcher?.reconcile(task.id, this.abort.signal);
    return true;
  }

  private async onControl(data: unknown): Promise<InterruptResult | undefined> {
    const parsed = controlRequestSchema.safeParse(data);
    if (!parsed.success)
      throw new UnrecoverableError(
        `Invalid control request ${JSON.stringify(data)}: ${parsed.error.message}`,
      );
    const request: ControlRequest = parsed.data;
    try {
      if (request.type === "interrupt") return await this.interrupt(request.taskId, request.inSeconds);
      await this.launcher?.reconcile(request.taskId, this.abort.signal);
      return undefined;
    } catch (err) {
      // snapctl waits for the answer: its error is the answer, not a reason to retry.
      if (err instanceof ServiceError || hasCode(err, "REGISTRY_TASK_NOT_FOUND")) {
        throw new UnrecoverableError(`${(err as Error).message} [${(err as ServiceError).code}]`);
      }
      throw err;
    }
  }

  // Schedules a spot interruption notice on the task's current local instance.
  private async interrupt(taskId: string, inSeconds: number): Promise<InterruptResult> {
    const task = await this.registry.requireTask(taskId);
    const env = await new TaskEnvironments(this.redis as Redis, this.options.prefix ?? "snapctl:").load(
      taskId,
    );
    const provider = this.providerFor(env);
    if (!(provider instanceof LocalProvider)) {
      throw new ServiceError(
        "CONTROLLER_UNSUPPORTED",
        `Cannot interrupt task "${taskId}": its compute environment "${env.name}" uses the ${provider.kind} provider; only local instances can be interrupted on demand`,
      );
    }
    if (!task.instanceId || isFinal(task.state)) {
      throw new ServiceError(
        "CONTROLLER_NO_INSTANCE",
        `Cannot interrupt task "${taskId}": it is "${task.state}" and runs on no instance`,
      );
    }
    const { deadline } = provider.scheduleInterruption(task.instanceId, { in: inSeconds });
    this.logger.info({ taskId, instanceId: task.instanceId, deadline }, "interruption scheduled");
    return { taskId, instanceId: task.instanceId, deadline };
  }

  // What the cloud tells about a local instance that ended, as an event of that
  // instance, queued after whatever its agent published before exiting (so an agent's
  // own "succeeded" wins over this). Events of an instance the task left are ignored.
  private onInstanceExit(exit: LocalInstanceExit): void {
    this.options.onInstanceExit?.(exit);
    if (!exit.taskId || this.abort.signal.aborted) return;
    const base = {
      id: `exit-${exit.instanceId}`,
      taskId: exit.taskId,
      instanceId: exit.instanceId,
      at: Date.now(),
    };
    let event: TaskEvent;
    const interruption = exit.exitCode === null ? undefined : INTERRUPTION_EXITS.get(exit.exitCode);
    if (exit.reclaimed) {
      event = { ...base, type: "interrupted", reason: "instance reclaimed at its interruption deadline" };
    } else if (interruption) {
      event = { ...base, type: "interrupted", reason: `${interruption} (agent exit ${exit.exitCode})` };
    } else if (exit.exitCode === 0) {
      event = { ...base, type: "succeeded" };
    } else {
      const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.exitCode}`;
      event = {
        ...base,
        type: "failed",
        error: `agent of instance ${exit.instanceId} exited with ${how}`,
        exitCode: exit.exitCode ?? undefined,
      };
    }
    this.logger.info(
      { taskId: exit.taskId, instanceId: exit.instanceId, event: event.type },
      "instance ended",
    );
    this.eventsQueue?.add(event.type, event, { jobId: event.id }).catch((err) => {
      this.logger.warn({ err: (err as Error).message, event }, "cannot queue an instance's end");
    });
  }

  private scheduleSweep(): void {
    if (this.sweeping || this.abort.signal.aborted) return;
    this.sweeping = this.sweep()
      .catch((err) => this.logger.warn({ err: (err as Error).message }, "sweep failed"))
      .finally(() => {
        this.sweeping = undefined;
      });
  }

  // Reconciles every unfinished task, one at a time (bounded: one page of 100 in memory).
  private async sweep(): Promise<void> {
    const signal = this.abort.signal;
    for (let offset = 0; !signal.aborted; offset += 100) {
      const tasks = await this.registry.listTasks({ offset, limit: 100 });
      for (const task of tasks) {
        if (signal.aborted || isFinal(task.state)) continue;
        try {
          await this.checkLost(task.id, task.instanceId);
          await this.launcher?.reconcile(task.id, signal);
        } catch (err) {
          if (signal.aborted) return;
          this.logger.warn({ taskId: task.id, err: (err as Error).message }, "reconcile failed");
        }
      }
      if (tasks.length < 100) return;
    }
  }

  // A task whose local instance no longer exists (the controller that ran it stopped)
  // is interrupted, as if reclaimed. Only for the local provider: asking EC2 about every
  // task at each sweep would cost API calls; EC2 instances report their own end.
  private async checkLost(taskId: string, instanceId: string | undefined): Promise<void> {
    if (!instanceId) return;
    const env = await new TaskEnvironments(this.redis as Redis, this.options.prefix ?? "snapctl:")
      .load(taskId)
      .catch(() => undefined);
    if (env?.provider !== "local") return;
    const provider = this.providerFor(env);
    if (!(provider instanceof LocalProvider) || (await provider.isRunning(instanceId))) return;
    // Queued, not applied: whatever the agent published before it ended comes first.
    const event: TaskEvent = {
      id: `lost-${instanceId}`,
      type: "interrupted",
      taskId,
      instanceId,
      at: Date.now(),
      reason: `instance ${instanceId} is gone`,
    };
    await this.eventsQueue?.add(event.type, event, { jobId: event.id });
  }
}

// Agent exits that end an interrupted attempt, not the task: its recovery (restore or
// re-run) follows. 176 (restore failed) is not here: restoreFailed() handles its event.
const INTERRUPTION_EXITS = new Map<number, string>([
  [ExitCode.checkpointed, "agent checkpointed the task"],
  [ExitCode.dumpFailed, "the final checkpoint failed"],
  [ExitCode.interrupted, "agent stopped the task without a checkpoint (snapshots disabled)"],
]);
