import { hostname } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
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
import type { AgentOptions, AgentResult, RestoreMode } from "./agent-options.js";
import { type AgentState, AgentStateMachine } from "./agent-state.js";
import { AttemptLogs, attemptName } from "./attempt-logs.js";
import type { EngineContext } from "./engine-binding.js";
import { taskExitCode } from "./exit-code.js";
import { TaskClock } from "./task-clock.js";
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
  private readonly taskId: string;
  private readonly logger: Logger;
  private readonly location: WorkDirLocation;
  private readonly box = new TriggerBox();
  private readonly policy: CheckpointPolicy;
  private readonly checkpoints: CheckpointResult[] = [];
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private readonly machine = new AgentStateMachine();
  private readonly clock = new TaskClock();
  private readonly startedAt = Date.now();
  private client!: S3Client;
  private ownClient = false;
  private outbox: EventOutbox | undefined;
  private events!: TaskEventFactory;
  private instanceId = "";
  private logs: AttemptLogs | undefined;
  private watcher: ImdsWatcher | undefined;
  private mount: FusionMount | undefined;
  private engine!: SnapshotEngineLike;
  private task: RunningTask | undefined;
  private taskEnded: TaskExit | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly snapshots: boolean;
  private heartbeat: NodeJS.Timeout | undefined;
  private restored: AgentResult["restored"];
  // Aborted by a second SIGINT (or the abort signal) during the final checkpoint: the user
  // wants out now, and the checkpoint is given up (exit 175).
  private readonly forced = new AbortController();
  // Ends a wait of the agent's own (the reclaim, with or without snapshots) at once; a
  // signal that comes before the wait begins cuts it short too (waitCut).
  private wakeWait: (() => void) | undefined;
  private waitCut = false;

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
  }

  private get state(): AgentState {
    return this.machine.state;
  }

  private get restoreMode(): RestoreMode {
    return this.o.generation !== undefined ? "required" : (this.o.restore ?? "auto");
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
    const stateDir = join(agentsDir(o.home), this.taskId);
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
      file: join(stateDir, "outbox.jsonl"),
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
    const instanceId = o.instanceId ?? (await this.lookUpInstanceId(watcher));
    this.instanceId = instanceId;
    this.events = new TaskEventFactory({
      taskId: this.taskId,
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
    this.logs = new AttemptLogs({
      client: this.client,
      location: this.location,
      attempt: attemptName(this.startedAt, instanceId),
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

  // Restores the task if the restore mode and its snapshots say so, else starts it.
  // Returns a result only on failure.
  private async begin(): Promise<AgentResult | undefined> {
    const o = this.o;
    const spec = this.taskSpec();
    const mode = this.restoreMode;
    // Snapshots disabled: no lookup unless a restore is asked for explicitly.
    const lookUp = mode === "required" || (mode === "auto" && this.snapshots);
    let latest: { generation: number } | undefined;
    try {
      latest =
        o.generation !== undefined
          ? { generation: o.generation }
          : lookUp
            ? await this.engine.latest({ signal: o.signal })
            : undefined;
    } catch (err) {
      if (hasS3ErrorName(err, "NoSuchBucket"))
        throw new AgentError(
          "AGENT_NO_BUCKET",
          `The bucket of work dir ${o.workDir} does not exist: create it, or give a work dir in an existing bucket`,
          { cause: err },
        );
      return await this.restoreFailed(
        new AgentError(
          "AGENT_RESTORE_FAILED",
          `Cannot look up snapshots of task "${this.taskId}": ${(err as Error).message}`,
          { cause: err },
        ),
      );
    }
    this.logger.info({ restore: mode, workDir: o.workDir, latest: latest?.generation }, "snapshot lookup");
    // No snapshot but "required": the engine's restore says why (e.g. the task finished and
    // its images were removed), and a snapshot committed since the lookup is still used.
    if (latest !== undefined || mode === "required") return await this.restore(spec, latest);
    if (!o.command || o.command.length === 0)
      throw new AgentError(
        "AGENT_NO_COMMAND",
        `Task "${this.taskId}" has no snapshot and no command to start`,
      );
    // Through a child process: never a blocking call on our own mount.
    await execa("mkdir", ["-p", spec.cwd], { cancelSignal: o.signal });
    try {
      this.adopt(await this.engine.start(spec));
    } catch (err) {
      throw new AgentError(
        "AGENT_START_FAILED",
        `Cannot start task "${this.taskId}": ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.logger.info({ pid: this.task?.pid, command: o.command }, "task started");
    await this.report("started", {});
    return undefined;
  }

  private async restore(
    spec: TaskSpec,
    latest: { generation: number } | undefined,
  ): Promise<AgentResult | undefined> {
    this.machine.to("restoring");
    try {
      const restored = await this.engine.restore(spec, {
        generation: this.o.generation,
        signal: this.o.signal,
      });
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
        runtimeMs: this.clock.runtimeMs(),
      });
      return undefined;
    } catch (err) {
      await this.logs?.putCriuLog("restore", criuLogOf(err));
      if (latest === undefined && (err as { code?: unknown })?.code === "CRIU_NO_SNAPSHOT")
        return await this.restoreFailed(
          new AgentError(
            "AGENT_NO_SNAPSHOT",
            `Task "${this.taskId}" has no committed snapshot in ${this.o.workDir} to restore: ${(err as Error).message}`,
            { cause: err },
          ),
        );
      return await this.restoreFailed(
        new AgentError(
          "AGENT_RESTORE_FAILED",
          `Cannot restore task "${this.taskId}" from ${this.o.workDir}: ${(err as Error).message}`,
          { cause: err },
        ),
      );
    }
  }

  // The main loop: checkpoints on the policy's schedule and on request until the task
  // exits or an interruption comes.
  private async loop(): Promise<AgentResult> {
    for (;;) {
      await this.armTimer();
      const trigger = await this.box.next();
      this.disarmTimer();
      if (trigger.kind === "exit") return await this.finishExited(trigger.exit);
      if (trigger.kind === "interrupt") {
        if (this.snapshots) return await this.finishInterrupted(trigger.reason, trigger.deadline);
        const stopped = await this.finishUncheckpointed(trigger.reason, trigger.deadline);
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
        const result = await this.checkpoint(reason, true);
        for (const t of waiting) if (t.kind === "manual") t.resolve(result);
      } catch (err) {
        const error = asAgentError(err);
        for (const t of waiting) if (t.kind === "manual") t.reject(error);
        if (await this.endedWithin(EXIT_GRACE_MS)) continue;
        this.logger.error({ err: error, reason }, "checkpoint failed; the task keeps running");
        await this.logs?.putCriuLog("dump", criuLogOf(err));
        await this.report("checkpoint-failed", { error: error.message, reason });
      }
    }
  }

  // Leaves the running states: no checkpoint request is taken any more.
  private beginFinishing(why: string): void {
    this.machine.to("finishing");
    this.box.rejectAll(
      new AgentError("AGENT_BUSY", `The agent of task "${this.taskId}" is stopping (${why})`),
    );
  }

  // A notice or SIGTERM: a final checkpoint that stops the task. Committed: "checkpointed,
  // restore me" (178), at once or after the reclaim did not come (onCheckpointed).
  // Failed: 175, Fusion's "checkpoint dump failed".
  private async finishInterrupted(reason: string, deadline: number | undefined): Promise<AgentResult> {
    this.beginFinishing(reason);
    const estimateMs = this.policy.estimateFinalMs();
    this.logger.warn(
      { reason, deadline, estimateMs, msLeft: deadline ? deadline - Date.now() : undefined },
      "interrupted: final checkpoint",
    );
    await this.report("interrupted", { reason, ...(deadline ? { deadline } : {}) });
    let committed: CheckpointResult;
    try {
      committed = await this.checkpoint(reason, false);
    } catch (err) {
      const error = asAgentError(err);
      const ended = await this.endedWithin(EXIT_GRACE_MS);
      if (ended && !this.task?.checkpointed) return await this.finishExited(ended);
      this.logger.error(
        { err: error },
        "final checkpoint failed: the task's progress since the last snapshot is lost",
      );
      await this.logs?.putCriuLog("dump", criuLogOf(err));
      await this.report("checkpoint-failed", { error: error.message, reason });
      await this.report("failed", {
        error: `final checkpoint failed: ${error.message}`,
        exitCode: ExitCode.dumpFailed,
      });
      await this.stopTask();
      await this.flushFiles();
      return this.result(ExitCode.dumpFailed, "checkpoint-failed", { error });
    }
    await this.flushFiles();
    if (deadline !== undefined)
      this.logger.info(
        { marginMs: deadline - Date.now(), generation: committed.generation },
        "final checkpoint committed before the deadline",
      );
    if ((this.o.onCheckpointed ?? "wait") === "wait") await this.waitForReclaim(deadline);
    return this.result(ExitCode.checkpointed, "checkpointed");
  }

  // After a committed final checkpoint under a scheduler: the container must end the way it
  // would have without snapshots (with its instance), so that the scheduler's spot
  // retries apply and restore the task. Everything a reclaim would lose goes out first.
  private async waitForReclaim(deadline: number | undefined): Promise<void> {
    this.machine.to("waiting-for-reclaim");
    const grace = this.o.reclaimGraceMs ?? 60_000;
    const until = (deadline ?? Date.now()) + grace;
    this.logger.warn(
      { waitMs: Math.max(0, until - Date.now()), graceMs: grace },
      "task checkpointed and stopped: waiting for the instance to be reclaimed",
    );
    await this.logs?.putAgentLog();
    if (this.o.redisUrl) await this.outbox?.flush({ timeoutMs: 10_000 }).catch(() => {});
    if (!this.forced.signal.aborted) await this.sleep(until - Date.now());
    this.logger.warn(
      { exitCode: ExitCode.checkpointed },
      "not reclaimed: exiting with 'checkpointed, restore me' (retry the task to restore it)",
    );
  }

  // Snapshots disabled, and an interruption: no checkpoint. SIGTERM stops the task at once.
  // Under a spot notice, with onCheckpointed "exit" (the controller), the task runs on (it
  // may still finish) until STOP_MARGIN_MS before the reclaim and is then stopped:
  // "interrupted, not checkpointed" (179), which the controller re-runs from scratch; under
  // a scheduler ("wait") it simply runs on until the reclaim ends it, as without this agent.
  // Returns undefined when the agent goes on as before.
  private async finishUncheckpointed(
    reason: string,
    deadline: number | undefined,
  ): Promise<AgentResult | undefined> {
    if (deadline !== undefined && (this.o.onCheckpointed ?? "wait") === "wait") {
      this.logger.warn(
        { reason, deadline },
        "interrupted with snapshots disabled: the task runs on until the reclaim",
      );
      await this.report("interrupted", { reason, checkpointed: false, deadline });
      return undefined;
    }
    this.beginFinishing(reason);
    if (deadline !== undefined && this.task && !this.taskEnded) {
      const waitMs = Math.max(0, deadline - STOP_MARGIN_MS - Date.now());
      this.logger.warn(
        { reason, deadline, waitMs },
        "interrupted with snapshots disabled: the task runs on until shortly before the reclaim",
      );
      const exit = await Promise.race([this.task.exited.catch(() => undefined), this.sleep(waitMs)]);
      if (exit && !this.task.checkpointed) return await this.finishExited(exit);
    }
    // It may have ended on its own just now: that is its exit, not an interruption.
    if (this.taskEnded) return await this.finishExited(this.taskEnded);
    this.logger.warn({ reason }, "interrupted with snapshots disabled: stopping the task, no checkpoint");
    await this.report("interrupted", { reason, checkpointed: false, ...(deadline ? { deadline } : {}) });
    await this.stopTask();
    await this.flushFiles();
    return this.result(ExitCode.interrupted, "interrupted");
  }

  // The task ended on its own: its images go, its files are flushed, its code is ours.
  private async finishExited(exit: TaskExit): Promise<AgentResult> {
    if (!this.machine.finishing) this.beginFinishing("the task exited");
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

  // One checkpoint; `leaveRunning` false is the final one, which stops the task.
  private async checkpoint(reason: string, leaveRunning: boolean): Promise<CheckpointResult> {
    if (leaveRunning) this.machine.to("checkpointing");
    await this.report("checkpoint-started", { reason });
    const startedAt = Date.now();
    // A periodic one stops when the agent is told to stop; the final one is what stopping
    // asks for, so only a forced exit (a second SIGINT) gives it up.
    const signal = leaveRunning ? this.o.signal : this.forced.signal;
    try {
      const r = await this.engine.checkpoint({ leaveRunning, reason, ...(signal ? { signal } : {}) });
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
        `Checkpoint (${reason}) of task "${this.taskId}" failed: ${(err as Error).message}`,
        { cause: err },
      );
    } finally {
      if (this.state === "checkpointing") this.machine.to("running");
    }
  }

  private adopt(task: RunningTask, runtimeBeforeMs = 0): void {
    this.task = task;
    this.machine.to("running");
    this.clock.started(runtimeBeforeMs);
    this.policy.taskStarted();
    this.startHeartbeat();
    task.exited.then(
      (exit) => {
        this.clock.ended();
        this.taskEnded = exit;
        // A final checkpoint stops the task on purpose: that is not the task's own exit.
        if (!task.checkpointed) this.box.push({ kind: "exit", exit });
      },
      (err: unknown) => {
        this.logger.error({ err }, "cannot tell how the task ended");
        this.clock.ended();
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

  // Sleeps `ms`, or less when a signal ends the agent's wait (wakeWait, waitCut).
  private async sleep(ms: number): Promise<undefined> {
    if (this.waitCut) return undefined;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.wakeWait = resolve;
      timer = setTimeout(resolve, Math.max(0, ms));
    });
    clearTimeout(timer);
    this.wakeWait = undefined;
    return undefined;
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
    this.waitCut = true;
    if (this.wakeWait || this.state === "waiting-for-reclaim") {
      this.logger.warn({ signal }, "signal: not waiting any longer");
      this.wakeWait?.();
      return;
    }
    if (signal !== "SIGTERM" && !this.forced.signal.aborted) {
      this.logger.warn({ signal }, "second signal: giving up the final checkpoint and exiting");
      this.forced.abort(new AgentError("AGENT_BUSY", `Task "${this.taskId}": forced to exit by ${signal}`));
      return;
    }
    this.logger.info({ signal }, "already stopping; signal noted");
  }

  private interrupt(reason: string, deadline: number | undefined): void {
    // Waiting (for the reclaim, snapshots disabled): a signal means now.
    if (this.wakeWait && deadline === undefined) {
      this.logger.info({ reason }, "stopping the task now");
      this.wakeWait();
      return;
    }
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
    if (this.machine.finishing || this.state === "starting" || this.state === "restoring")
      return Promise.reject(
        new AgentError("AGENT_BUSY", `Task "${this.taskId}" cannot be checkpointed now (${this.state})`),
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
      state: this.state,
      pid: this.task?.pid,
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
    if (this.checkpoints.length === 0 && this.task)
      this.policy.setTaskBytes(await treeResidentBytes(this.task.pid));
    const due = this.policy.next();
    this.timer = setTimeout(() => this.box.push({ kind: "timer" }), Math.max(0, due.at - Date.now()));
  }

  private disarmTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  // The restore failed: 176. Unless the failure was transient (S3 unreachable, aborted),
  // every committed generation is set aside, so that the next attempt starts fresh rather
  // than failing on the same snapshot again.
  private async restoreFailed(error: AgentError): Promise<AgentResult> {
    this.logger.error({ err: error }, "restore failed");
    if (!isTransient(error) && this.engine?.setAside) {
      await this.engine
        .setAside({ signal: this.o.signal })
        .then((generations) => {
          if (generations.length > 0)
            this.logger.warn(
              { generations },
              "snapshot generations set aside: the next attempt starts the task fresh",
            );
        })
        .catch((err: unknown) =>
          this.logger.error({ err }, "cannot set the failed snapshot generations aside"),
        );
    }
    await this.report("failed", { error: error.message, exitCode: ExitCode.restoreFailed });
    return this.result(ExitCode.restoreFailed, "restore-failed", { error });
  }

  // Writes the task's dirty files (its logs) to S3; failures are logged, never fatal.
  private async flushFiles(): Promise<void> {
    await this.mount
      ?.commit()
      .catch((err: unknown) => this.logger.error({ err }, "cannot flush the task's files"));
  }

  private startHeartbeat(): void {
    const every = this.o.heartbeatIntervalMs ?? 30_000;
    if (every <= 0 || this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      // While the task runs: also while the agent is stopping (a final checkpoint, or the
      // wait for the reclaim with snapshots disabled).
      if (this.taskEnded) return;
      const now = Date.now();
      void this.report("heartbeat", { runtimeMs: this.clock.runtimeMs(now), state: this.state }, now);
    }, every);
    this.heartbeat.unref();
  }

  // Publishes an event; the outbox only needs the local disk, so this never waits for Redis.
  // Once the task runs, every event carries its computeMs on this instance.
  private async report(type: TaskEventType, extra: Record<string, unknown>, now = Date.now()): Promise<void> {
    if (!this.outbox || !this.events) return;
    const computeMs = this.clock.computeMs(now);
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

  private result(
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
    if (this.state !== "stopped") this.machine.to(this.machine.finishing ? "stopped" : "finishing");
    if (this.state !== "stopped") this.machine.to("stopped");
    this.disarmTimer();
    clearInterval(this.heartbeat);
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
    await this.outbox
      ?.close({ flushTimeoutMs: this.o.eventsFlushTimeoutMs ?? (this.o.redisUrl ? 10_000 : 0) })
      .catch((err: unknown) => this.logger.warn({ err }, "cannot close the event outbox"));
    await this.mount?.close().catch((err: unknown) => this.logger.error({ err }, "cannot unmount"));
    await this.o.engine
      .close?.()
      .catch((err: unknown) => this.logger.warn({ err }, "cannot close the engine binding"));
    await this.logs?.putAgentLog();
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

// Whether a failure may not repeat on the next attempt: an abort, or an error marked
// retryable (S3 unreachable) anywhere in its chain of causes.
function isTransient(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if ((e as { retryable?: unknown }).retryable === true) return true;
    if (typeof code === "string" && code.endsWith("_ABORTED")) return true;
    if (e.name === "AbortError") return true;
  }
  return false;
}

// Whether an AWS SDK error with this name (its exception type) is in `err`'s chain.
function hasS3ErrorName(err: unknown, name: string): boolean {
  for (let e = err; e instanceof Error; e = e.cause) if (e.name === name) return true;
  return false;
}
