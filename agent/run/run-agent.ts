import { hostname } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { ExitCode } from "../../cli/exit-codes.js";
import { type Logger, silentLogger } from "../../common/log.js";
import type {
  CheckpointResult,
  RunningTask,
  SnapshotEngineLike,
  TaskExit,
  TaskSpec,
} from "../../criu/engine/types.js";
import { createS3Client, type FusionMount, mountFusion } from "../../driver/index.js";
import { ControlServer } from "../control/control-server.js";
import { agentSocketPath, agentsDir, checkTaskId } from "../control/socket-path.js";
import { AgentError } from "../errors.js";
import { EventOutbox } from "../events/event-outbox.js";
import { TaskEventFactory } from "../events/task-event-factory.js";
import { CheckpointPolicy } from "../policy/index.js";
import { ImdsWatcher } from "../watch/imds-watcher.js";
import { listenForSignals } from "../watch/signal-listener.js";
import type { AgentOptions, AgentResult } from "./agent-options.js";
import type { EngineContext } from "./engine-binding.js";
import { taskExitCode } from "./exit-code.js";
import { treeResidentBytes } from "./task-memory.js";
import { type CheckpointTrigger, TriggerBox } from "./trigger-box.js";
import { parseWorkDir, type WorkDirLocation, workDirOnMount } from "./work-dir.js";

type TaskEventType = Parameters<TaskEventFactory["make"]>[0];

const ARCH = process.arch === "arm64" ? "arm64" : "x86_64";
// After a failed checkpoint, how long to wait for news that the task itself ended (a dump
// fails when its task exits under it, and that is an exit, not a checkpoint failure).
const EXIT_GRACE_MS = 3_000;
// With snapshots disabled, a task under a spot notice runs until this long before the
// reclaim, then is stopped (its files flushed, its events sent before the machine goes).
const STOP_MARGIN_MS = 10_000;

// Runs one task under the agent: `snapctl agent run`. Never calls process.exit; the
// result's exitCode is what the process should exit with.
export async function runAgent(options: AgentOptions): Promise<AgentResult> {
  return await new Agent(options).run();
}

class Agent {
  private readonly o: AgentOptions;
  private readonly logger: Logger;
  private readonly location: WorkDirLocation;
  private readonly box = new TriggerBox();
  private readonly policy: CheckpointPolicy;
  private readonly checkpoints: CheckpointResult[] = [];
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private client!: S3Client;
  private ownClient = false;
  private outbox: EventOutbox | undefined;
  private events!: TaskEventFactory;
  private instanceId = "";
  private watcher: ImdsWatcher | undefined;
  private mount: FusionMount | undefined;
  private engine!: SnapshotEngineLike;
  private task: RunningTask | undefined;
  private taskEnded: TaskExit | undefined;
  private timer: NodeJS.Timeout | undefined;
  private finishing = false;
  private state = "starting";
  private readonly snapshots: boolean;
  // The task's run time: on this instance since runStartedAt (until taskEndedAt), plus
  // what it ran before its restore (from the snapshot's manifest).
  private runStartedAt: number | undefined;
  private taskEndedAt: number | undefined;
  private runtimeBeforeMs = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  // Cuts short the wait for the reclaim (snapshots disabled) when SIGTERM comes meanwhile.
  private stopNow: (() => void) | undefined;

  constructor(options: AgentOptions) {
    this.o = options;
    this.logger = options.logger ?? silentLogger;
    checkTaskId(options.taskId);
    this.location = parseWorkDir(options.workDir);
    if (
      options.generation !== undefined &&
      !(Number.isInteger(options.generation) && options.generation >= 0)
    )
      throw new AgentError(
        "AGENT_INVALID_OPTION",
        `Snapshot generation ${options.generation} is not a whole number`,
      );
    this.snapshots = options.snapshots !== false;
    if (
      options.heartbeatIntervalMs !== undefined &&
      !(Number.isFinite(options.heartbeatIntervalMs) && options.heartbeatIntervalMs >= 0)
    )
      throw new AgentError(
        "AGENT_INVALID_OPTION",
        `Heartbeat interval ${options.heartbeatIntervalMs} is not a duration in ms`,
      );
    this.policy = new CheckpointPolicy({
      ...options.policy,
      intervalMs: options.checkpointIntervalMs ?? 5 * 60_000,
      noticeWindowMs: options.noticeWindowMs ?? 120_000,
    });
  }

  async run(): Promise<AgentResult> {
    try {
      await this.setUp();
      const failed = await this.begin();
      if (failed) return failed;
      return await this.loop();
    } catch (err) {
      const error = asAgentError(err);
      this.logger.error({ err: error }, "agent failed");
      await this.report("failed", { error: error.message });
      await this.stopTask();
      return this.result(ExitCode.failure, "failed", { error });
    } finally {
      await this.tearDown();
    }
  }

  // Control socket, outbox, signal handlers, IMDS watcher, mount, engine: in that order,
  // so that events and SIGTERM are handled from the first moment.
  private async setUp(): Promise<void> {
    const o = this.o;
    const stateDir = join(agentsDir(o.home), o.taskId);
    const control = new ControlServer({
      path: agentSocketPath(o.taskId, o.home),
      handler: (request) =>
        request.command === "status" ? Promise.resolve(this.status()) : this.manualCheckpoint(),
      logger: this.logger,
    });
    // First: the socket says which agent owns the task here (a second one stops at once,
    // before touching the task's outbox or reporting anything).
    await control.listen();
    this.cleanups.push(() => control.close());
    this.outbox = await EventOutbox.open({
      file: join(stateDir, "outbox.jsonl"),
      redisUrl: o.redisUrl,
      logger: this.logger.child({ part: "events" }),
    });

    const stopSignals = listenForSignals((signal) => this.interrupt(signal.toLowerCase(), undefined), {
      target: o.signals ?? process,
    });
    this.cleanups.push(stopSignals);
    if (o.signal) {
      const onAbort = () => this.interrupt("aborted", undefined);
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
    const instanceId = o.instanceId ?? (await this.lookUpInstanceId(watcher));
    this.instanceId = instanceId;
    this.events = new TaskEventFactory({
      taskId: o.taskId,
      instanceId,
      ...(o.fencingToken === undefined ? {} : { common: { fencingToken: o.fencingToken } }),
    });
    watcher.on("notice", (notice) => {
      const deadline = o.noticeWindowMs ? notice.seenAt + o.noticeWindowMs : notice.deadline;
      this.interrupt(`spot-${notice.action}`, deadline);
    });
    if (this.snapshots) watcher.on("rebalance", () => this.box.push({ kind: "rebalance" }));
    watcher.start();

    this.client = o.client ?? createS3Client();
    this.ownClient = o.client === undefined;
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
        {
          cause: err,
        },
      );
    }
    this.engine = await o.engine.create({ ...context, mount: this.mount });
  }

  // Restores the task if it has a snapshot, else starts it. Returns a result only on failure.
  private async begin(): Promise<AgentResult | undefined> {
    const o = this.o;
    const spec = this.taskSpec();
    let latest: { generation: number } | undefined;
    // Snapshots disabled: the task starts fresh unless a restore is asked for explicitly.
    const lookUp = this.snapshots || o.restore === true || o.generation !== undefined;
    try {
      latest =
        o.generation !== undefined
          ? { generation: o.generation }
          : lookUp
            ? await this.engine.latest({ signal: o.signal })
            : undefined;
    } catch (err) {
      return await this.restoreFailed(
        new AgentError(
          "AGENT_RESTORE_FAILED",
          `Cannot look up snapshots of task "${o.taskId}": ${(err as Error).message}`,
          { cause: err },
        ),
      );
    }
    // No snapshot but --restore: the engine's restore says why (e.g. the task finished and
    // its images were removed), and a snapshot committed since the lookup is still used.
    if (latest !== undefined || o.restore) {
      this.state = "restoring";
      try {
        const restored = await this.engine.restore(spec, { generation: o.generation, signal: o.signal });
        const before = (restored as { runtimeBeforeMs?: unknown }).runtimeBeforeMs;
        this.adopt(restored.task, typeof before === "number" && before >= 0 ? before : 0);
        this.restored = { generation: restored.generation, resumeMs: restored.resumeMs };
        this.logger.info(
          { generation: restored.generation, resumeMs: restored.resumeMs, skipped: restored.skipped },
          "task restored",
        );
        await this.report("restored", {
          generation: restored.generation,
          resumeMs: Math.round(restored.resumeMs),
          skipped: restored.skipped,
          lazy: restored.lazy,
          runtimeMs: this.runtimeMs(),
        });
        return undefined;
      } catch (err) {
        if (latest === undefined && (err as { code?: unknown })?.code === "CRIU_NO_SNAPSHOT")
          return await this.restoreFailed(
            new AgentError(
              "AGENT_NO_SNAPSHOT",
              `Task "${o.taskId}" has no committed snapshot in ${o.workDir} to restore: ${(err as Error).message}`,
              { cause: err },
            ),
          );
        return await this.restoreFailed(
          new AgentError(
            "AGENT_RESTORE_FAILED",
            `Cannot restore task "${o.taskId}" from ${o.workDir}: ${(err as Error).message}`,
            {
              cause: err,
            },
          ),
        );
      }
    }
    if (!o.command || o.command.length === 0)
      throw new AgentError("AGENT_NO_COMMAND", `Task "${o.taskId}" has no snapshot and no command to start`);
    // Through a child process: never a blocking call on our own mount.
    await execa("mkdir", ["-p", spec.cwd], { cancelSignal: o.signal });
    try {
      this.adopt(await this.engine.start(spec));
    } catch (err) {
      throw new AgentError(
        "AGENT_START_FAILED",
        `Cannot start task "${o.taskId}": ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.logger.info({ pid: this.task?.pid, command: o.command }, "task started");
    await this.report("started", {});
    return undefined;
  }

  private restored: AgentResult["restored"];

  // The main loop: checkpoints on the policy's schedule and on request until the task
  // exits or an interruption comes.
  private async loop(): Promise<AgentResult> {
    for (;;) {
      await this.armTimer();
      const trigger = await this.box.next();
      this.disarmTimer();
      if (trigger.kind === "exit") return await this.finishExited(trigger.exit);
      if (trigger.kind === "interrupt")
        return this.snapshots
          ? await this.finishInterrupted(trigger.reason, trigger.deadline)
          : await this.finishUncheckpointed(trigger.reason, trigger.deadline);
      // Snapshots disabled: nothing else is pushed, but a stray trigger is no checkpoint.
      if (!this.snapshots) continue;
      const waiting = [trigger, ...this.box.drainCheckpoints()];
      const reason = waiting.some((t) => t.kind === "manual")
        ? "manual"
        : trigger.kind === "rebalance"
          ? "rebalance"
          : "periodic";
      try {
        const result = await this.checkpoint(reason, true);
        for (const t of waiting) if (t.kind === "manual") t.resolve(result);
      } catch (err) {
        const error = asAgentError(err);
        for (const t of waiting) if (t.kind === "manual") t.reject(error);
        if (await this.endedWithin(EXIT_GRACE_MS)) continue;
        this.logger.error({ err: error, reason }, "checkpoint failed; the task keeps running");
        await this.report("checkpoint-failed", { error: error.message, reason });
      }
    }
  }

  // A notice or SIGTERM: a final checkpoint that stops the task, then "restore me" (175).
  private async finishInterrupted(reason: string, deadline: number | undefined): Promise<AgentResult> {
    this.finishing = true;
    this.box.rejectAll(
      new AgentError("AGENT_BUSY", `The agent of task "${this.o.taskId}" is stopping (${reason})`),
    );
    const estimateMs = this.policy.estimateFinalMs();
    this.logger.warn(
      { reason, deadline, estimateMs, msLeft: deadline ? deadline - Date.now() : undefined },
      "interrupted: final checkpoint",
    );
    await this.report("interrupted", { reason, ...(deadline ? { deadline } : {}) });
    try {
      const result = await this.checkpoint(reason, false);
      await this.flushFiles();
      if (deadline !== undefined)
        this.logger.info(
          { marginMs: deadline - Date.now() },
          "final checkpoint committed before the deadline",
        );
      return this.result(ExitCode.checkpointed, "checkpointed", { lastCheckpoint: result });
    } catch (err) {
      const error = asAgentError(err);
      const ended = await this.endedWithin(EXIT_GRACE_MS);
      if (ended && !this.task?.checkpointed) return await this.finishExited(ended);
      this.logger.error({ err: error }, "final checkpoint failed");
      await this.report("checkpoint-failed", { error: error.message, reason });
      await this.report("failed", {
        error: `final checkpoint failed: ${error.message}`,
        exitCode: ExitCode.checkpointFailed,
      });
      await this.stopTask();
      await this.flushFiles();
      return this.result(ExitCode.checkpointFailed, "checkpoint-failed", { error });
    }
  }

  // Snapshots disabled, and an interruption: no checkpoint. Under a spot notice the task
  // runs on (it may still finish) until STOP_MARGIN_MS before the reclaim or a SIGTERM;
  // then it is stopped: "interrupted, not checkpointed" (176), which the controller re-runs
  // from scratch. Only "interrupted" is reported: the task did not fail.
  private async finishUncheckpointed(reason: string, deadline: number | undefined): Promise<AgentResult> {
    this.finishing = true;
    this.box.rejectAll(
      new AgentError("AGENT_BUSY", `The agent of task "${this.o.taskId}" is stopping (${reason})`),
    );
    if (deadline !== undefined && this.task && !this.taskEnded) {
      const waitMs = Math.max(0, deadline - STOP_MARGIN_MS - Date.now());
      this.logger.warn(
        { reason, deadline, waitMs },
        "interrupted with snapshots disabled: the task runs on until shortly before the reclaim",
      );
      let timer: NodeJS.Timeout | undefined;
      const stop = new Promise<undefined>((resolve) => {
        this.stopNow = () => resolve(undefined);
        timer = setTimeout(() => resolve(undefined), waitMs);
      });
      const exit = await Promise.race([this.task.exited.catch(() => undefined), stop]);
      clearTimeout(timer);
      this.stopNow = undefined;
      if (exit && !this.task.checkpointed) return await this.finishExited(exit);
    }
    // It may have ended on its own just now: that is its exit, not an interruption.
    if (this.taskEnded) return await this.finishExited(this.taskEnded);
    this.logger.warn({ reason }, "interrupted with snapshots disabled: stopping the task, no checkpoint");
    await this.report("interrupted", { reason, checkpointed: false, ...(deadline ? { deadline } : {}) });
    await this.stopTask();
    this.state = "stopped";
    await this.flushFiles();
    return this.result(ExitCode.checkpointFailed, "interrupted");
  }

  // The task ended on its own: its images go, its files are flushed, its code is ours.
  private async finishExited(exit: TaskExit): Promise<AgentResult> {
    this.finishing = true;
    this.state = "exited";
    this.box.rejectAll(new AgentError("AGENT_BUSY", `Task "${this.o.taskId}" has exited`));
    const code = taskExitCode(exit);
    this.logger.info({ exit, code }, "task exited");
    // Recorded in the snapshot area's finished marker (engines that know it).
    const cleanupOptions = { signal: this.o.signal, detail: { exitCode: code, instanceId: this.instanceId } };
    await this.engine
      .cleanup(cleanupOptions)
      .catch((err: unknown) =>
        this.logger.warn({ err }, "cannot remove the task's snapshot images; they stay until the next GC"),
      );
    await this.flushFiles();
    if (code === 0) await this.report("succeeded", {});
    else
      await this.report("failed", {
        error:
          exit.exitCode !== null ? `task exited with code ${exit.exitCode}` : `task killed by ${exit.signal}`,
        exitCode: code,
      });
    return this.result(code, "exited", { taskExit: exit });
  }

  private async checkpoint(reason: string, leaveRunning: boolean): Promise<CheckpointResult> {
    const previous = this.state;
    this.state = "checkpointing";
    await this.report("checkpoint-started", { reason });
    const startedAt = Date.now();
    try {
      // The final checkpoint is what an abort asks for: it must not be aborted itself.
      const r = await this.engine.checkpoint({
        leaveRunning,
        reason,
        ...(leaveRunning && this.o.signal ? { signal: this.o.signal } : {}),
      });
      this.checkpoints.push(r);
      this.policy.recordCheckpoint({
        startedAt,
        totalMs: r.totalMs,
        freezeMs: r.freezeMs,
        bytesLogical: r.bytesLogical,
        bytesUploaded: r.bytesUploaded,
      });
      this.logger.info(
        {
          generation: r.generation,
          mode: r.mode,
          reason,
          totalMs: r.totalMs,
          freezeMs: r.freezeMs,
          bytesUploaded: r.bytesUploaded,
        },
        "checkpoint committed",
      );
      await this.report("checkpoint-committed", {
        snapshotId: String(r.generation),
        bytesStored: r.bytesUploaded,
        progressMs: Math.round(r.taskRuntimeMs),
        arch: ARCH,
        generation: r.generation,
        parentGeneration: r.parentGeneration,
        mode: r.mode,
        reason,
        bytesLogical: r.bytesLogical,
        bytesUploaded: r.bytesUploaded,
        durationMs: Math.round(r.totalMs),
        freezeMs: Math.round(r.freezeMs),
      });
      return r;
    } catch (err) {
      throw new AgentError(
        "AGENT_CHECKPOINT_FAILED",
        `Checkpoint (${reason}) of task "${this.o.taskId}" failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    } finally {
      this.state = previous === "checkpointing" ? "running" : previous;
    }
  }

  private adopt(task: RunningTask, runtimeBeforeMs = 0): void {
    this.task = task;
    this.state = "running";
    this.runtimeBeforeMs = runtimeBeforeMs;
    this.runStartedAt = Date.now();
    this.policy.taskStarted();
    this.startHeartbeat();
    task.exited.then(
      (exit) => {
        this.taskEndedAt ??= Date.now();
        this.taskEnded = exit;
        // A final checkpoint stops the task on purpose: that is not the task's own exit.
        if (!task.checkpointed) this.box.push({ kind: "exit", exit });
      },
      (err: unknown) => {
        this.logger.error({ err }, "cannot tell how the task ended");
        this.taskEndedAt ??= Date.now();
        const exit = { exitCode: null, signal: "SIGKILL" };
        this.taskEnded = exit;
        this.box.push({ kind: "exit", exit });
      },
    );
  }

  // Kills the task and waits for it to be gone: its processes close files on the mount as
  // they die, and the mount must still be served then.
  private async stopTask(): Promise<void> {
    if (!this.task || this.taskEnded) return;
    this.task.kill("SIGKILL");
    if (!(await this.endedWithin(10_000)))
      this.logger.error({ pid: this.task.pid }, "the task did not die within 10 s of SIGKILL");
  }

  // Resolves with the task's exit if it ends within `ms`.
  private async endedWithin(ms: number): Promise<TaskExit | undefined> {
    if (this.taskEnded || !this.task) return this.taskEnded;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    });
    try {
      return await Promise.race([this.task.exited.catch(() => undefined), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private interrupt(reason: string, deadline: number | undefined): void {
    // Waiting for the reclaim (snapshots disabled): SIGTERM means now.
    if (this.stopNow && deadline === undefined) {
      this.logger.info({ reason }, "stopping the task now");
      this.stopNow();
      return;
    }
    if (this.finishing) {
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
          `Snapshots are disabled for task "${this.o.taskId}" (compute environment snapshots.enabled: false)`,
        ),
      );
    if (this.finishing || this.state === "starting" || this.state === "restoring")
      return Promise.reject(
        new AgentError("AGENT_BUSY", `Task "${this.o.taskId}" cannot be checkpointed now (${this.state})`),
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
      taskId: this.o.taskId,
      state: this.state,
      pid: this.task?.pid,
      snapshots: this.snapshots,
      checkpoints: this.checkpoints.length,
      lastGeneration: this.checkpoints.at(-1)?.generation,
      computeMs: this.computeMs(),
      runtimeMs: this.runtimeMs(),
      next: this.o.checkpoints === false || !this.snapshots ? undefined : this.policy.next(),
      events: this.outbox?.stats,
    };
  }

  private async armTimer(): Promise<void> {
    if (this.o.checkpoints === false || !this.snapshots || this.finishing) return;
    // Before the first dump, the task's memory is what a final dump would have to move.
    if (this.checkpoints.length === 0 && this.task)
      this.policy.setTaskBytes(await treeResidentBytes(this.task.pid));
    const due = this.policy.next();
    this.timer = setTimeout(() => this.box.push({ kind: "timer" }), Math.max(0, due.at - Date.now()));
  }

  private disarmTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async restoreFailed(error: AgentError): Promise<AgentResult> {
    this.logger.error({ err: error }, "restore failed");
    await this.report("failed", { error: error.message, exitCode: ExitCode.restoreFailed });
    return this.result(ExitCode.restoreFailed, "restore-failed", { error });
  }

  // Writes the task's dirty files (its logs) to S3; failures are logged, never fatal.
  private async flushFiles(): Promise<void> {
    await this.mount
      ?.commit()
      .catch((err: unknown) => this.logger.error({ err }, "cannot flush the task's files"));
  }

  // How long the task has run on this instance (frozen once it ended), in whole ms: the
  // events' computeMs, which the registry keeps per instance and sums.
  private computeMs(now = Date.now()): number | undefined {
    if (this.runStartedAt === undefined) return undefined;
    return Math.max(0, Math.round((this.taskEndedAt ?? now) - this.runStartedAt));
  }

  // The task's accumulated run time, earlier instances included (what a re-run would redo).
  private runtimeMs(now = Date.now()): number | undefined {
    const here = this.computeMs(now);
    return here === undefined ? undefined : Math.round(this.runtimeBeforeMs) + here;
  }

  private startHeartbeat(): void {
    const every = this.o.heartbeatIntervalMs ?? 30_000;
    if (every <= 0 || this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      // While the task runs: also while the agent is stopping (a final checkpoint, or the
      // wait for the reclaim with snapshots disabled).
      if (this.taskEnded) return;
      const now = Date.now();
      void this.report("heartbeat", { runtimeMs: this.runtimeMs(now), state: this.state }, now);
    }, every);
    this.heartbeat.unref();
  }

  // Publishes an event; the outbox only needs the local disk, so this never waits for Redis.
  // Once the task runs, every event carries its computeMs on this instance.
  private async report(type: TaskEventType, extra: Record<string, unknown>, now = Date.now()): Promise<void> {
    if (!this.outbox || !this.events) return;
    const computeMs = this.computeMs(now);
    const fields = computeMs === undefined ? extra : { computeMs, ...extra };
    // biome-ignore lint/suspicious/noExplicitAny: the factory checks each type's own fields.
    const event = this.events.make(type, fields as any);
    await this.outbox.publish(event).catch((err: unknown) => this.logger.error({ err, event }, "event lost"));
  }

  // The task's spec: it runs in its work dir on the mount, its output appended to files
  // there. The engine starts it in that directory and records its exit code in
  // <workdir>/.exitcode, as Nextflow's wrapper does.
  private taskSpec(): TaskSpec {
    const cwd = workDirOnMount((this.mount as FusionMount).mountpoint, this.location);
    return {
      id: this.o.taskId,
      command: this.o.command ?? [],
      cwd,
      ...(this.o.env ? { env: this.o.env } : {}),
      stdoutPath: `${cwd}/${this.o.stdoutFile ?? ".command.out"}`,
      stderrPath: `${cwd}/${this.o.stderrFile ?? ".command.err"}`,
    };
  }

  private engineContext(): EngineContext {
    return {
      taskId: this.o.taskId,
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

  private result(
    exitCode: number,
    outcome: AgentResult["outcome"],
    extra: { error?: AgentError; taskExit?: TaskExit; lastCheckpoint?: CheckpointResult } = {},
  ): AgentResult {
    return {
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
    this.finishing = true;
    this.disarmTimer();
    clearInterval(this.heartbeat);
    this.box.rejectAll(new AgentError("AGENT_BUSY", `The agent of task "${this.o.taskId}" has stopped`));
    for (const cleanup of this.cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        this.logger.warn({ err }, "cleanup step failed");
      }
    }
    await this.watcher?.close().catch(() => {});
    await this.outbox
      ?.close({ flushTimeoutMs: this.o.eventsFlushTimeoutMs ?? 10_000 })
      .catch((err: unknown) => this.logger.warn({ err }, "cannot close the event outbox"));
    await this.mount?.close().catch((err: unknown) => this.logger.error({ err }, "cannot unmount"));
    await this.o.engine
      .close?.()
      .catch((err: unknown) => this.logger.warn({ err }, "cannot close the engine binding"));
    if (this.ownClient) this.client?.destroy();
  }
}

function asAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const code = (err as { code?: unknown })?.code;
  const message = (err as Error)?.message ?? String(err);
  return new AgentError("AGENT_INTERNAL", typeof code === "string" ? `${message} [${code}]` : message, {
    cause: err,
  });
}
