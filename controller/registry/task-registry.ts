import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { RegistryError } from "../errors.js";
import { EVENT_MOVES, eventReason, eventUpdates, type FieldUpdates, taskEventSchema } from "./events.js";
import { RegistryKeys } from "./keys.js";
import type {
  CreateTaskInput,
  EventResult,
  LaunchRecord,
  ListOptions,
  OperationOptions,
  TaskRegistryOptions,
  TransitionEntry,
  TransitionOptions,
  TransitionResult,
} from "./registry-types.js";
import { RestoreLeases } from "./restore-leases.js";
import { applyScript, createScript, deleteScript, recordLaunchScript } from "./scripts.js";
import { canTransition, isTaskState, TASK_STATES, type TaskState, TRANSITIONS } from "./states.js";
import { decodeTask, type TaskRecord } from "./task-record.js";

const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

interface ScriptResult {
  status:
    | "ok"
    | "duplicate"
    | "missing"
    | "illegal"
    | "stale-instance"
    | "unknown-instance"
    | "stale-token"
    | "launch-not-needed";
  from?: TaskState;
  to?: TaskState;
  current?: string;
  version?: number;
}

// The task registry in Redis: task records, the state machine, the transition log,
// idempotent event application and the restore leases. Every change is one Lua script,
// so concurrent controllers see each change happen entirely or not at all.
export class TaskRegistry {
  readonly leases: RestoreLeases;
  private readonly redis: Redis;
  private readonly ownsRedis: boolean;
  private readonly keys: RegistryKeys;
  private readonly now: () => number;

  constructor(options: TaskRegistryOptions) {
    this.ownsRedis = typeof options.redis === "string";
    this.redis =
      typeof options.redis === "string" ? new Redis(options.redis, { lazyConnect: false }) : options.redis;
    if (this.ownsRedis) {
      // ioredis reconnects on its own; without a listener an outage would be an uncaught "error" event.
      this.redis.on("error", () => {});
    }
    this.keys = new RegistryKeys(options.prefix ?? "snapctl:");
    this.now = options.now ?? Date.now;
    this.leases = new RestoreLeases(this.redis, this.keys);
  }

  // Creates a task in "pending", needing a launch.
  async createTask(input: CreateTaskInput, options: OperationOptions = {}): Promise<TaskRecord> {
    options.signal?.throwIfAborted();
    const id = input.id ?? `t-${randomBytes(6).toString("hex")}`;
    checkTaskId(id);
    if (
      !Array.isArray(input.command) ||
      input.command.length === 0 ||
      input.command.some((a) => typeof a !== "string")
    ) {
      throw new RegistryError(
        "REGISTRY_INVALID_INPUT",
        `Task "${id}" needs a command as a non-empty list of strings (got ${JSON.stringify(input.command)})`,
      );
    }
    const at = String(this.now());
    const fields: Record<string, string> = {
      id,
      name: input.name ?? id,
      command: JSON.stringify(input.command),
      computeEnv: input.computeEnv,
      state: "pending",
      stateSince: at,
      reason: "created",
      launch: "needed",
      createdAt: at,
      updatedAt: at,
      version: "1",
    };
    const created = await this.call(`create task "${id}"`, () =>
      createScript.run(
        this.redis,
        [this.keys.task(id), this.keys.transitions(id), this.keys.index()],
        [id, at, ...Object.entries(fields).flat()],
      ),
    );
    if (created !== 1) throw new RegistryError("REGISTRY_TASK_EXISTS", `Task "${id}" already exists`);
    return (await this.getTask(id)) as TaskRecord;
  }

  async getTask(id: string, options: OperationOptions = {}): Promise<TaskRecord | undefined> {
    options.signal?.throwIfAborted();
    checkTaskId(id);
    const hash = await this.call(`read task "${id}"`, () => this.redis.hgetall(this.keys.task(id)));
    return decodeTask(hash);
  }

  async requireTask(id: string, options: OperationOptions = {}): Promise<TaskRecord> {
    const task = await this.getTask(id, options);
    if (!task) throw new RegistryError("REGISTRY_TASK_NOT_FOUND", `Task "${id}" does not exist`);
    return task;
  }

  // Tasks in creation order, one page at a time.
  async listTasks(options: ListOptions = {}): Promise<TaskRecord[]> {
    options.signal?.throwIfAborted();
    const offset = Math.max(0, options.offset ?? 0);
    const limit = Math.min(1000, Math.max(1, options.limit ?? 100));
    const ids = await this.call("list tasks", () =>
      this.redis.zrange(this.keys.index(), String(offset), String(offset + limit - 1)),
    );
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.task(id));
    const replies = (await this.call("list tasks", () => pipeline.exec())) ?? [];
    return replies.flatMap(([err, hash]) => {
      if (err)
        throw new RegistryError("REGISTRY_UNAVAILABLE", `Cannot list tasks: ${err.message}`, {
          cause: err,
          retryable: true,
        });
      const task = decodeTask(hash as Record<string, string>);
      return task ? [task] : [];
    });
  }

  // Every transition of the task, oldest first, with its time.
  async transitions(id: string, options: OperationOptions = {}): Promise<TransitionEntry[]> {
    options.signal?.throwIfAborted();
    checkTaskId(id);
    const entries = await this.call(`read transitions of "${id}"`, () =>
      this.redis.xrange(this.keys.transitions(id), "-", "+"),
    );
    return entries.map(([, flat]) => {
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
      return {
        from: isTaskState(fields.from) ? fields.from : null,
        to: fields.to as TaskState,
        at: Number(fields.at),
        reason: fields.reason ?? "",
        eventId: fields.eventId || undefined,
      };
    });
  }

  // Moves a task to `to`, atomically checking the state machine (and `from`, and the fencing token).
  async transition(id: string, to: TaskState, options: TransitionOptions = {}): Promise<TransitionResult> {
    options.signal?.throwIfAborted();
    checkTaskId(id);
    if (!isTaskState(to)) {
      throw new RegistryError(
        "REGISTRY_INVALID_INPUT",
        `Cannot move task "${id}" to unknown state ${JSON.stringify(to)}`,
      );
    }
    const expected =
      options.from === undefined
        ? TASK_STATES
        : typeof options.from === "string"
          ? [options.from]
          : options.from;
    const moves: Partial<Record<TaskState, TaskState>> = {};
    for (const from of expected) if (canTransition(from, to)) moves[from] = to;
    const result = await this.apply(id, {
      moves,
      at: String(options.at ?? this.now()),
      reason: options.reason ?? `to ${to}`,
      fencingToken: options.fencingToken === undefined ? undefined : String(options.fencingToken),
      set: {},
      incr: {},
      max: {},
    });
    const from = result.from as TaskState;
    switch (result.status) {
      case "ok":
        return { from, to, version: result.version as number };
      case "missing":
        throw new RegistryError(
          "REGISTRY_TASK_NOT_FOUND",
          `Cannot move task "${id}" to "${to}": the task does not exist`,
        );
      case "stale-token":
        throw staleToken(id, `enter "${to}"`, options.fencingToken, result.current);
      default:
        if (!expected.includes(from)) {
          throw new RegistryError(
            "REGISTRY_STATE_CONFLICT",
            `Cannot move task "${id}" to "${to}": expected it in ${formatStates(expected)} but it is "${from}"`,
          );
        }
        throw new RegistryError(
          "REGISTRY_ILLEGAL_TRANSITION",
          `Illegal transition of task "${id}" from "${from}" to "${to}" (allowed from "${from}": ${formatStates(TRANSITIONS[from])})`,
        );
    }
  }

  // Applies an agent event exactly once: a repeated event id, an event from an instance the
  // task has left, or one that does not fit the task's state changes nothing.
  async applyEvent(input: unknown, options: OperationOptions = {}): Promise<EventResult> {
    options.signal?.throwIfAborted();
    const parsed = taskEventSchema.safeParse(input);
    if (!parsed.success) {
      const problems = parsed.error.issues
        .map((i) => `${i.path.join(".") || "(event)"}: ${i.message}`)
        .join("; ");
      throw new RegistryError(
        "REGISTRY_INVALID_INPUT",
        `Invalid task event ${truncate(JSON.stringify(input))}: ${problems}`,
      );
    }
    const event = parsed.data;
    checkTaskId(event.taskId);
    const result = await this.apply(event.taskId, {
      moves: EVENT_MOVES[event.type],
      at: String(event.at),
      reason: eventReason(event),
      eventId: event.id,
      instanceId: event.instanceId,
      ...eventUpdates(event),
    });
    switch (result.status) {
      case "ok":
        return { outcome: "applied", from: result.from, state: result.to };
      case "duplicate":
        return { outcome: "duplicate", state: (await this.getTask(event.taskId))?.state };
      case "missing":
        return { outcome: "ignored", detail: `task "${event.taskId}" does not exist` };
      case "stale-instance":
        return {
          outcome: "ignored",
          state: result.from,
          detail: `instance "${event.instanceId}" no longer runs task "${event.taskId}"`,
        };
      case "unknown-instance":
        return {
          outcome: "deferred",
          state: result.from,
          detail: `instance "${event.instanceId}" is not recorded for task "${event.taskId}" yet`,
        };
      default:
        return {
          outcome: "ignored",
          state: result.from,
          detail: `a "${event.type}" event does not apply to a task in "${result.from}"`,
        };
    }
  }

  // Records the instance launched for a pending or restoring task. Only the holder of the
  // current restore lease may, and only once per launch: see "Lease protocol" in the docs.
  async recordLaunch(id: string, launch: LaunchRecord): Promise<TaskRecord> {
    launch.signal?.throwIfAborted();
    checkTaskId(id);
    const at = String(launch.at ?? this.now());
    const raw = await this.call(`record the launch of task "${id}"`, () =>
      recordLaunchScript.run(
        this.redis,
        [this.keys.task(id), this.keys.lease(id), this.keys.instances(id)],
        [
          String(launch.fencingToken),
          at,
          launch.instanceId,
          launch.zone,
          launch.arch,
          launch.instanceType,
          launch.market,
        ],
      ),
    );
    const result = JSON.parse(String(raw)) as ScriptResult;
    switch (result.status) {
      case "ok":
        return (await this.getTask(id)) as TaskRecord;
      case "missing":
        throw new RegistryError(
          "REGISTRY_TASK_NOT_FOUND",
          `Cannot record a launch for task "${id}": the task does not exist`,
        );
      case "stale-token":
        throw staleToken(id, `record instance "${launch.instanceId}"`, launch.fencingToken, result.current);
      default:
        throw new RegistryError(
          "REGISTRY_LAUNCH_NOT_NEEDED",
          `Task "${id}" (state "${result.from}") needs no launch: instance "${launch.instanceId}" was not recorded and should be terminated`,
        );
    }
  }

  // Deletes a task, its transitions, event ids and lease. Refused (REGISTRY_STATE_CONFLICT)
  // unless the task is succeeded or failed, or `force` is set. False if there was no task.
  async deleteTask(id: string, options: OperationOptions & { force?: boolean } = {}): Promise<boolean> {
    options.signal?.throwIfAborted();
    checkTaskId(id);
    const k = this.keys;
    const outcome = await this.call(`delete task "${id}"`, () =>
      deleteScript.run(
        this.redis,
        [k.task(id), k.transitions(id), k.events(id), k.instances(id), k.lease(id), k.fence(id), k.index()],
        [id, options.force ? "1" : "0"],
      ),
    );
    if (outcome === "missing") return false;
    if (outcome !== "ok") {
      throw new RegistryError(
        "REGISTRY_STATE_CONFLICT",
        `Cannot delete task "${id}": it is "${outcome}", not finished (use force)`,
      );
    }
    return true;
  }

  // The restore lease (see RestoreLeases): acquire returns a fencing token, or null when held by another owner.
  acquireRestoreLease(id: string, owner: string, ttlMs: number): Promise<number | null> {
    checkTaskId(id);
    return this.call(`acquire the restore lease of "${id}"`, () => this.leases.acquire(id, owner, ttlMs));
  }

  renewRestoreLease(id: string, owner: string, token: number, ttlMs: number): Promise<boolean> {
    checkTaskId(id);
    return this.call(`renew the restore lease of "${id}"`, () => this.leases.renew(id, owner, token, ttlMs));
  }

  releaseRestoreLease(id: string, owner: string, token: number): Promise<boolean> {
    checkTaskId(id);
    return this.call(`release the restore lease of "${id}"`, () => this.leases.release(id, owner, token));
  }

  // Throws REGISTRY_STALE_FENCING_TOKEN unless `token` is the current lease's token.
  async assertRestoreLease(id: string, token: number): Promise<void> {
    checkTaskId(id);
    const lease = await this.call(`read the restore lease of "${id}"`, () => this.leases.get(id));
    if (lease?.token !== token)
      throw staleToken(id, "restore", token, lease ? String(lease.token) : undefined);
  }

  // Closes the connection if the registry opened it. Idempotent.
  async close(): Promise<void> {
    if (!this.ownsRedis || this.redis.status === "end") return;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private async apply(
    id: string,
    payload: FieldUpdates & {
      moves: Partial<Record<TaskState, TaskState>>;
      at: string;
      reason: string;
      eventId?: string;
      instanceId?: string;
      fencingToken?: string;
    },
  ): Promise<ScriptResult> {
    const k = this.keys;
    const raw = await this.call(`update task "${id}"`, () =>
      applyScript.run(
        this.redis,
        [k.task(id), k.transitions(id), k.events(id), k.lease(id), k.instances(id)],
        [JSON.stringify(payload)],
      ),
    );
    return JSON.parse(String(raw)) as ScriptResult;
  }

  // Runs one Redis operation, turning connection failures into a retryable RegistryError.
  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      throw new RegistryError(
        "REGISTRY_UNAVAILABLE",
        `Cannot ${what}: Redis failed: ${(err as Error).message}`,
        {
          cause: err,
          retryable: true,
        },
      );
    }
  }
}

function checkTaskId(id: string): void {
  if (typeof id !== "string" || !TASK_ID.test(id)) {
    throw new RegistryError(
      "REGISTRY_INVALID_INPUT",
      `Invalid task id ${JSON.stringify(id)}: expected 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
}

function staleToken(
  id: string,
  action: string,
  token: number | undefined,
  current: string | undefined,
): RegistryError {
  const presented = token === undefined ? "no fencing token" : `fencing token ${token}`;
  const holder =
    current === undefined || current === null ? "no lease is held" : `the current token is ${current}`;
  return new RegistryError(
    "REGISTRY_STALE_FENCING_TOKEN",
    `Cannot ${action} for task "${id}" with ${presented}: ${holder}`,
  );
}

function formatStates(states: readonly TaskState[]): string {
  return states.length === 0 ? "none" : states.map((s) => `"${s}"`).join(", ");
}

function truncate(text: string | undefined): string {
  const value = text ?? "undefined";
  return value.length > 120 ? `${value.slice(0, 117)}...` : value;
}
