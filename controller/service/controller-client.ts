import { readFile } from "node:fs/promises";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { hasCode } from "../../common/errors.js";
import {
  CONTROL_QUEUE,
  type ControlRequest,
  type InterruptResult,
  interruptResultSchema,
} from "../../protocol/index.js";
import { type ComputeEnvironment, parseComputeEnvironment } from "../config/index.js";
import { isFinal, type TaskRecord, TaskRegistry } from "../registry/index.js";
import { ServiceError } from "./errors.js";
import { bullConnection } from "./queues.js";
import { TaskEnvironments } from "./task-environments.js";

export interface ControllerClientOptions {
  redisUrl: string;
  // Registry key prefix. Default "snapctl:".
  prefix?: string;
  controlQueue?: string;
}

export interface SubmitInput {
  command: string[];
  // Path of the compute environment file.
  computeEnvFile: string;
  name?: string;
  id?: string;
}

// What snapctl uses to talk to the controller: tasks go into the registry, requests onto
// the control queue that the controller service consumes.
export class ControllerClient {
  readonly registry: TaskRegistry;
  private readonly redis: Redis;
  private readonly environments: TaskEnvironments;
  private readonly queue: Queue;
  private events?: QueueEvents;
  private readonly options: ControllerClientOptions;

  constructor(options: ControllerClientOptions) {
    this.options = options;
    const prefix = options.prefix ?? "snapctl:";
    // Fail fast when Redis is not there: a CLI should say so, not hang.
    this.redis = new Redis(options.redisUrl, {
      maxRetriesPerRequest: 2,
      retryStrategy: (n) => Math.min(n * 100, 1000),
    });
    this.redis.on("error", () => {});
    this.registry = new TaskRegistry({ redis: this.redis, prefix });
    this.environments = new TaskEnvironments(this.redis, prefix);
    this.queue = new Queue(options.controlQueue ?? CONTROL_QUEUE, {
      connection: bullConnection(options.redisUrl),
    });
    this.queue.on("error", () => {});
  }

  // Creates the task (pending) with its environment and asks the controller to launch it.
  async submit(input: SubmitInput): Promise<TaskRecord> {
    const text = await readEnvText(input.computeEnvFile);
    const env = parseComputeEnvironment(text, { source: input.computeEnvFile });
    const task = await this.registry.createTask({
      id: input.id,
      name: input.name,
      command: input.command,
      computeEnv: env.name,
    });
    await this.environments.save(task.id, input.computeEnvFile, text);
    await this.queue.add("launch", { type: "launch", taskId: task.id } satisfies ControlRequest);
    return task;
  }

  // The error of the task's last failed checkpoint (the registry keeps it in the task's
  // hash, <prefix>task:{<id>}, field lastCheckpointError; TaskRecord does not carry it).
  async lastCheckpointError(taskId: string): Promise<string | undefined> {
    const value = await this.redis.hget(
      `${this.options.prefix ?? "snapctl:"}task:{${taskId}}`,
      "lastCheckpointError",
    );
    return value || undefined;
  }

  async environment(taskId: string): Promise<ComputeEnvironment> {
    return this.environments.load(taskId);
  }

  // Schedules a spot interruption on the task's instance through the controller.
  async interrupt(
    taskId: string,
    inSeconds: number,
    options: { timeoutMs?: number } = {},
  ): Promise<InterruptResult> {
    await this.registry.requireTask(taskId);
    return interruptResultSchema.parse(
      await this.request({ type: "interrupt", taskId, inSeconds }, options.timeoutMs),
    );
  }

  // Manual restore of an interrupted or failed task: moves it to "restoring" under a
  // lease of its own, then asks the controller to launch the instance.
  async restore(
    taskId: string,
    options: { computeEnvFile?: string; generation?: number } = {},
  ): Promise<TaskRecord> {
    const task = await this.registry.requireTask(taskId);
    if (task.state === "succeeded") {
      throw new ServiceError(
        "CONTROLLER_NOT_RESTORABLE",
        `Cannot restore task "${taskId}": it finished (succeeded, exit code ${task.exitCode ?? 0})`,
      );
    }
    if (task.state !== "interrupted" && task.state !== "failed") {
      throw new ServiceError(
        "CONTROLLER_NOT_RESTORABLE",
        `Cannot restore task "${taskId}": it is "${task.state}" (only interrupted or failed tasks can be restored)`,
      );
    }
    if (!task.lastSnapshotId) {
      throw new ServiceError(
        "CONTROLLER_NO_SNAPSHOT",
        `Cannot restore task "${taskId}": it has no committed snapshot (submit it again with snapctl run to re-run it)`,
      );
    }
    if (options.computeEnvFile) {
      const text = await readEnvText(options.computeEnvFile);
      parseComputeEnvironment(text, { source: options.computeEnvFile });
      await this.environments.save(taskId, options.computeEnvFile, text);
    }
    await this.environments.setRestoreGeneration(taskId, options.generation);
    const owner = `snapctl-restore:${process.pid}`;
    const token = await this.registry.acquireRestoreLease(taskId, owner, 30_000);
    if (token === null) {
      throw new ServiceError(
        "CONTROLLER_NOT_RESTORABLE",
        `Cannot restore task "${taskId}": a controller is recovering it right now`,
      );
    }
    try {
      await this.registry.transition(taskId, "restoring", {
        from: task.state,
        fencingToken: token,
        reason: `manual restore of ${options.generation === undefined ? `snapshot ${task.lastSnapshotId}` : `generation ${options.generation}`} (snapctl restore)`,
      });
    } finally {
      await this.registry.releaseRestoreLease(taskId, owner, token);
    }
    await this.queue.add("launch", { type: "launch", taskId } satisfies ControlRequest);
    return (await this.registry.requireTask(taskId)) as TaskRecord;
  }

  // Follows a task until it is succeeded or failed, calling onChange at each new state.
  async wait(
    taskId: string,
    options: { signal?: AbortSignal; pollMs?: number; onChange?: (task: TaskRecord) => void } = {},
  ): Promise<TaskRecord> {
    let version = -1;
    for (;;) {
      options.signal?.throwIfAborted();
      let task: TaskRecord;
      try {
        task = await this.registry.requireTask(taskId);
      } catch (err) {
        // Following a task outlives a Redis restart: keep asking.
        if (!hasCode(err, "REGISTRY_UNAVAILABLE")) throw err;
        await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
        continue;
      }
      if (task.version !== version) {
        version = task.version;
        options.onChange?.(task);
      }
      if (isFinal(task.state)) return task;
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
    }
  }

  // Sends a control request and waits for the controller's answer.
  private async request(request: ControlRequest, timeoutMs = 15_000): Promise<unknown> {
    this.events ??= new QueueEvents(this.options.controlQueue ?? CONTROL_QUEUE, {
      connection: bullConnection(this.options.redisUrl),
    });
    this.events.on("error", () => {});
    await this.events.waitUntilReady();
    const job = await this.queue.add(request.type, request, { attempts: 1 });
    try {
      return await job.waitUntilFinished(this.events, timeoutMs);
    } catch (err) {
      const state = await job.getState().catch(() => "unknown");
      if (state === "waiting" || state === "delayed" || state === "prioritized") {
        await job.remove().catch(() => {});
        throw new ServiceError(
          "CONTROLLER_NOT_RUNNING",
          `No controller answered within ${timeoutMs} ms: is "snapctl controller" running?`,
          { cause: err, retryable: true },
        );
      }
      const message = (err as Error).message.replace(/ \[[A-Z_]+\]$/, "");
      const code = /\[([A-Z_]+)\]$/.exec((err as Error).message)?.[1];
      throw new ServiceError(
        code === "CONTROLLER_NO_INSTANCE" || code === "CONTROLLER_UNSUPPORTED"
          ? code
          : "CONTROLLER_REQUEST_FAILED",
        message,
        { cause: err },
      );
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.queue.close(), this.events?.close()]);
    await this.registry.close();
    this.redis.disconnect();
  }
}

async function readEnvText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    // The loader names the problem (missing, unreadable) with its stable code.
    const { loadComputeEnvironment } = await import("../config/index.js");
    await loadComputeEnvironment(path);
    throw new Error(`Cannot read ${path}`);
  }
}
