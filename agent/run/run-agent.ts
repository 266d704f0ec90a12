import { hostname } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { type Logger, silentLogger } from "../../common/log.js";
import type {
  CheckpointResult,
  RunningTask,
  SnapshotEngineLike,
  TaskExit,
  TaskSpec,
} from "../../criu/index.js";
import { criuLogOf } from "../../criu/index.js";
import { createS3Client, type FusionMount, mountFusion } from "../../driver/index.js";
import { ExitCode, taskIdFromWorkDir } from "../../protocol/index.js";
import { ControlServer } from "../control/control-server.js";
import { agentSocketPath, agentsDir, checkTaskId } from "../control/socket-path.js";
import { AgentError } from "../errors.js";
import { EventOutbox } from "../events/event-outbox.js";
import { TaskEventFactory } from "../events/task-event-factory.js";
import { CheckpointPolicy } from "../policy/index.js";
import { ImdsWatcher } from "../watch/imds-watcher.js";
import { listenForSignals } from "../watch/signal-listener.js";
import type { AgentCore } from "./agent-core.js";
import { asAgentError } from "./agent-failures.js";
import type { AgentOptions, AgentResult } from "./agent-options.js";
import { AgentStateMachine } from "./agent-state.js";
import { AgentWaits } from "./agent-waits.js";
import { AttemptLogs, attemptName } from "./attempt-logs.js";
import { beginTask } from "./begin-task.js";
import type { EngineContext } from "./engine-binding.js";
import { EventReporter } from "./event-reporter.js";
import { EXIT_GRACE_MS, finishExited, finishInterrupted, finishUncheckpointed } from "./finish.js";
import { takeCheckpoint } from "./take-checkpoint.js";
import { TaskClock } from "./task-clock.js";
import { treeResidentBytes } from "./task-memory.js";
import { TaskSlot } from "./task-slot.js";
import { type CheckpointTrigger, TriggerBox } from "./trigger-box.js";
import { parseWorkDir, type WorkDirLocation, workDirOnMount } from "./work-dir.js";

// Runs one task under the agent: `snapctl agent run`. Never calls process.exit; the
// result's exitCode is what the process should exit with.
export async function runAgent(options: AgentOptions): Promise<AgentResult> {
  return await new Agent(options).run();
}

// One agent run: sets up its collaborators, begins the task (begin-task.ts), loops over
// checkpoints (take-checkpoint.ts) until the task exits or an interruption comes, finishes
// (finish.ts) and tears down. Signals and the control socket reach it here.
class Agent implements AgentCore {
  readonly o: AgentOptions;
  readonly taskId: string;
  readonly logger: Logger;
  readonly location: WorkDirLocation;
  readonly snapshots: boolean;
  readonly box = new TriggerBox();
  readonly policy: CheckpointPolicy;
  readonly checkpoints: CheckpointResult[] = [];
  readonly machine = new AgentStateMachine();
  readonly clock = new TaskClock();
  readonly slot: TaskSlot;
  readonly reporter: EventReporter;
  readonly waits = new AgentWaits();
  restored: AgentResult["restored"];
  instanceId = "";
  outbox: EventOutbox | undefined;
  logs: AttemptLogs | undefined;
  engine!: SnapshotEngineLike;
  private readonly startedAt = Date.now();
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private client!: S3Client;
  private ownClient = false;
  private watcher: ImdsWatcher | undefined;
  private mount: FusionMount | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: AgentOptions) {
    this.o = options;
    this.location = parseWorkDir(options.workDir);
    this.taskId = checkTaskId(options.taskId ?? taskIdFromWorkDir(options.workDir));
    this.logger = (options.logger ?? silentLogger).child({ task: this.taskId });
    if (
      options.generation !== undefined &&
      !(Number.isInteger(options.generation) && options.generation >= 0)
    )
      throw new AgentError(
        "AGENT_INVALID_OPTION",
        `Snapshot generation ${options.generation} is not a whole number`,
      );
    if (options.restore !== undefined && !["auto", "required", "never"].includes(options.restore))
      throw new AgentError(
        "AGENT_INVALID_OPTION",
        `Restore mode ${JSON.stringify(options.restore)} is not one of auto, required, never`,
      );
    if (options.generation !== undefined && options.restore === "never")
      throw new AgentError(
        "AGENT_INVALID_OPTION",
        `A snapshot generation (${options.generation}) cannot be restored with restore "never"`,
      );
    this.snapshots = options.snapshots !== false;
    for (const [name, value] of [
      ["Heartbeat interval", options.heartbeatIntervalMs],
      ["Reclaim grace", options.reclaimGraceMs],
    ] as const) {
      if (value !== undefined && !(Number.isFinite(value) && value >= 0))
        throw new AgentError("AGENT_INVALID_OPTION", `${name} ${value} is not a duration in ms`);
    }
    this.policy = new CheckpointPolicy({
      ...options.policy,
      intervalMs: options.checkpointIntervalMs ?? 5 * 60_000,
      noticeWindowMs: options.noticeWindowMs ?? 120_000,
    });
    this.slot = new TaskSlot({
      clock: this.clock,
      logger: this.logger,
      onExit: (exit) => this.box.push({ kind: "exit", exit }),
    });
    this.reporter = new EventReporter({ clock: this.clock, logger: this.logger });
  }

  async run(): Promise<AgentResult> {
    try {
      await this.setUp();
      const failed = await beginTask(this);
      if (failed) return failed;
      return await this.loop();
    } catch (err) {
      const error = asAgentError(err);
      this.logger.error({ err: error }, "agent failed");
      await this.reporter.report("failed", { error: error.message });
      await this.slot.stop();
      return this.result(ExitCode.failure, "failed", { error });
    } finally {
      await this.tearDown();
    }
  }

  // Control socket, outbox, signal handlers, IMDS watcher, mount, engine: in that order,
  // so that events and SIGTERM are handled from the first moment.
  private async setUp(): Promise<void> {
    const o = this.o;
    const control = new ControlServer({
      path: agentSocketPath(this.taskId, o.home),
      handler: (request) =>
        request.command === "status" ? Promise.resolve(this.status()) : this.manualCheckpoint(),
      logger: this.logger,
    });
    // First: the socket says which agent owns the task here (a second one stops at once,
    // before touching the task's outbox or reporting anything).
    await control.listen();
    this.cleanups.push(() => control.close());
    this.outbox = await EventOutbox.open({
      file: join(agentsDir(o.home), this.taskId, "outbox.jsonl"),
      redisUrl: o.redisUrl,
      logger: this.logger.child({ part: "events" }),
    });

    const stopSignals = listenForSignals((signal) => this.onSignal(signal), {
      target: o.signals ?? process,
    });
    this.cleanups.push(stopSignals);
    if (o.signal) {
      const onAbort = () => this.onSignal("aborted");
      if (o.signal.aborted) onAbort();
      o.signal.addEventListener("abort", onAbort, { once: true });
      this.cleanups.push(() => o.signal?.removeEventListener("abort", onAbort));
    }

    const watcher = new ImdsWatcher({
      endpoint: o.imdsEndpoint,
      pollIntervalMs: o.imdsPollIntervalMs ?? 2000,
      logger: this.logger.child({ part: "imds" }),
    });
    this.watcher = watcher;
    this.instanceId = o.instanceId ?? (await this.lookUpInstanceId(watcher));
    this.reporter.connect(
      this.outbox,
      new TaskEventFactory({
        taskId: this.taskId,
        instanceId: this.instanceId,
        ...(o.fencingToken === undefined ? {} : { common: { fencingToken: o.fencingToken } }),
      }),
    );
    watcher.on("notice", (notice) => {
      const deadline = o.noticeWindowMs ? notice.seenAt + o.noticeWindowMs : notice.deadline;
      this.interrupt(`spot-${notice.action}`, deadline);
    });
    if (this.snapshots) watcher.on("rebalance", () => this.box.push({ kind: "rebalance" }));
    watcher.start();

    this.client = o.client ?? createS3Client();
    this.ownClient = o.client === undefined;
    this.logs = new AttemptLogs({
      client: this.client,
      location: this.location,
      attempt: attemptName(this.startedAt, this.instanceId),
      ...(o.logFile ? { agentLogFile: o.logFile } : {}),
      logger: this.logger,
    });
    const context = this.engineContext();
    try {
      this.mount = await mountFusion({
        mountpoint: o.mountpoint ?? "/fusion",
        buckets: [this.location.bucket],
        client: this.client,
        cacheDir: o.cacheDir,
        ...o.engine.mountOptions?.(context),
        logger: this.logger.child({ part: "fusion" }),
      });
    } catch (err) {
      throw new AgentError(
        "AGENT_MOUNT_FAILED",
        `Cannot mount Fusion on ${o.mountpoint ?? "/fusion"}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.engine = await o.engine.create({ ...context, mount: this.mount });
  }

  // The main loop: checkpoints on the policy's schedule and on request until the task
  // exits or an interruption comes.
  private async loop(): Promise<AgentResult> {
    for (;;) {
      await this.armTimer();
      const trigger = await this.box.next();
      this.disarmTimer();
      if (trigger.kind === "exit") return await finishExited(this, trigger.exit);
      if (trigger.kind === "interrupt") {
        if (this.snapshots) return await finishInterrupted(this, trigger.reason, trigger.deadline);
        const stopped = await finishUncheckpointed(this, trigger.reason, trigger.deadline);
        if (stopped) return stopped;
        continue;
      }
      // Snapshots disabled: nothing else is pushed, but a stray trigger is no checkpoint.
      if (!this.snapshots) continue;
      const waiting = [trigger, ...this.box.drainCheckpoints()];
      const reason = waiting.some((t) => t.kind === "manual")
        ? "manual"
        : trigger.kind === "rebalance"
          ? "rebalance"
          : "periodic";
      try {
        const result = await takeCheckpoint(this, reason, true);
        for (const t of waiting) if (t.kind === "manual") t.resolve(result);
      } catch (err) {
        const error = asAgentError(err);
        for (const t of waiting) if (t.kind === "manual") t.reject(error);
        if (await this.slot.endedWithin(EXIT_GRACE_MS)) continue;
        this.logger.error({ err: error, reason }, "checkpoint failed; the task keeps running");
        await this.logs?.putCriuLog("dump", criuLogOf(err));
        await this.reporter.report("checkpoint-failed", { error: error.message, reason });
      }
    }
  }

  adopt(task: RunningTask, runtimeBeforeMs = 0): void {
    this.slot.adopt(task, runtimeBeforeMs);
    this.machine.to("running");
    this.policy.taskStarted();
    this.reporter.startHeartbeat(
      this.o.heartbeatIntervalMs ?? 30_000,
      () => !this.slot.ended,
      () => this.machine.state,
    );
  }

  // SIGTERM, SIGINT or the abort signal. The first one stops the agent (a final
  // checkpoint); later ones end any wait of the agent's own (for the reclaim) at once, and
  // a second SIGINT (or the abort signal) during the final checkpoint gives the checkpoint
  // up. A SIGTERM during the final checkpoint leaves it alone: a runtime's SIGKILL follows
  // anyway, and aborting could only lose the snapshot.
  private onSignal(signal: string): void {
    if (!this.machine.finishing) {
      this.interrupt(signal.toLowerCase(), undefined);
      return;
    }
    const waiting = this.waits.waiting || this.machine.state === "waiting-for-reclaim";
    this.waits.endWaits();
    if (waiting) {
      this.logger.warn({ signal }, "signal: not waiting any longer");
      return;
    }
    if (signal !== "SIGTERM" && !this.waits.forced.signal.aborted) {
      this.logger.warn({ signal }, "second signal: giving up the final checkpoint and exiting");
      this.waits.force(this.taskId, signal);
      return;
    }
    this.logger.info({ signal }, "already stopping; signal noted");
  }

  private interrupt(reason: string, deadline: number | undefined): void {
    if (this.machine.finishing) {
      this.logger.info({ reason }, "already stopping; interruption noted");
      return;
    }
    this.box.push({ kind: "interrupt", reason, deadline });
  }

  private manualCheckpoint(): Promise<Record<string, unknown>> {
    if (!this.snapshots)
      return Promise.reject(
        new AgentError(
          "AGENT_SNAPSHOTS_DISABLED",
          `Snapshots are disabled for task "${this.taskId}" (compute environment snapshots.enabled: false)`,
        ),
      );
    const state = this.machine.state;
    if (this.machine.finishing || state === "starting" || state === "restoring")
      return Promise.reject(
        new AgentError("AGENT_BUSY", `Task "${this.taskId}" cannot be checkpointed now (${state})`),
      );
    return new Promise((resolve, reject) =>
      this.box.push({
        kind: "manual",
        resolve: (r) => resolve({ ...r }),
        reject,
      } satisfies CheckpointTrigger),
    );
  }

  private status(): Record<string, unknown> {
    return {
      taskId: this.taskId,
      state: this.machine.state,
      pid: this.slot.task?.pid,
      snapshots: this.snapshots,
      checkpoints: this.checkpoints.length,
      lastGeneration: this.checkpoints.at(-1)?.generation,
      computeMs: this.clock.computeMs(),
      runtimeMs: this.clock.runtimeMs(),
      next: this.o.checkpoints === false || !this.snapshots ? undefined : this.policy.next(),
      events: this.outbox?.stats,
    };
  }

  private async armTimer(): Promise<void> {
    if (this.o.checkpoints === false || !this.snapshots || this.machine.finishing) return;
    // Before the first dump, the task's memory is what a final dump would have to move.
    const task = this.slot.task;
    if (this.checkpoints.length === 0 && task) this.policy.setTaskBytes(await treeResidentBytes(task.pid));
    const due = this.policy.next();
    this.timer = setTimeout(() => this.box.push({ kind: "timer" }), Math.max(0, due.at - Date.now()));
  }

  private disarmTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  async flushFiles(): Promise<void> {
    await this.mount
      ?.commit()
      .catch((err: unknown) => this.logger.error({ err }, "cannot flush the task's files"));
  }

  // The task's spec: it runs in its work dir on the mount, its output appended to files
  // there. The engine starts it in that directory and records its exit code in
  // <workdir>/.exitcode, as Nextflow's wrapper does.
  taskSpec(): TaskSpec {
    const cwd = workDirOnMount((this.mount as FusionMount).mountpoint, this.location);
    return {
      id: this.taskId,
      command: this.o.command ?? [],
      cwd,
      ...(this.o.env ? { env: this.o.env } : {}),
      stdoutPath: `${cwd}/${this.o.stdoutFile ?? ".command.out"}`,
      stderrPath: `${cwd}/${this.o.stderrFile ?? ".command.err"}`,
    };
  }

  private engineContext(): EngineContext {
    return {
      taskId: this.taskId,
      workDir: this.location,
      client: this.client,
      keepGenerations: this.o.keepGenerations ?? 2,
      logger: this.logger.child({ part: "engine" }),
    };
  }

  private async lookUpInstanceId(watcher: ImdsWatcher): Promise<string> {
    try {
      const id = await watcher.client.get("/latest/meta-data/instance-id", { signal: this.o.signal });
      if (id) return id;
    } catch (err) {
      this.logger.info({ err }, "no instance id from IMDS; using the host name");
    }
    return `host-${hostname()}`;
  }

  result(
    exitCode: number,
    outcome: AgentResult["outcome"],
    extra: { error?: AgentError; taskExit?: TaskExit } = {},
  ): AgentResult {
    return {
      taskId: this.taskId,
      exitCode,
      outcome,
      checkpoints: [...this.checkpoints],
      ...(this.restored ? { restored: this.restored } : {}),
      ...(extra.taskExit ? { taskExit: extra.taskExit } : {}),
      ...(extra.error ? { error: extra.error } : {}),
    };
  }

  // Always runs every step; the mount goes last (it may still be flushing the task's files).
  private async tearDown(): Promise<void> {
    if (!this.machine.finishing) this.machine.to("finishing");
    this.machine.to("stopped");
    this.disarmTimer();
    this.reporter.stopHeartbeat();
    this.box.rejectAll(new AgentError("AGENT_BUSY", `The agent of task "${this.taskId}" has stopped`));
    for (const cleanup of this.cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        this.logger.warn({ err }, "cleanup step failed");
      }
    }
    await this.watcher?.close().catch(() => {});
    // Without Redis nothing can deliver the events now: they stay in the outbox file, and
    // the exit is not delayed.
    const flushTimeoutMs = this.o.eventsFlushTimeoutMs ?? (this.o.redisUrl ? 10_000 : 0);
    this.logger.info({ flushTimeoutMs, pending: this.outbox?.pending }, "closing the event outbox");
    await this.outbox
      ?.close({ flushTimeoutMs })
      .catch((err: unknown) => this.logger.warn({ err }, "cannot close the event outbox"));
    await this.mount?.close().catch((err: unknown) => this.logger.error({ err }, "cannot unmount"));
    await this.o.engine
      .close?.()
      .catch((err: unknown) => this.logger.warn({ err }, "cannot close the engine binding"));
    await this.logs?.putAgentLog();
    if (this.ownClient) this.client?.destroy();
  }
}
