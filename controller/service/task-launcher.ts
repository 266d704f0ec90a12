import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { hasCode } from "../../common/errors.js";
import { type Logger, silentLogger } from "../../common/log.js";
import { taskWorkDir } from "../../protocol/index.js";
import type { ComputeEnvironment } from "../config/index.js";
import type { LaunchedInstance, Provider } from "../providers/index.js";
import { planRecovery } from "../recovery/index.js";
import { type Arch, LAUNCH_STATES, type TaskRecord, type TaskRegistry } from "../registry/index.js";
import { agentArgv } from "./agent-argv.js";
import { launchParams } from "./launch-params.js";
import type { TaskEnvironments } from "./task-environments.js";

export interface TaskLauncherOptions {
  registry: TaskRegistry;
  environments: TaskEnvironments;
  providerFor: (env: ComputeEnvironment) => Provider;
  // Lease owner name of this controller.
  owner: string;
  leaseTtlMs: number;
  // Where compute environment files for local agents are written.
  envDir: string;
  defaultArch: Arch;
  // Longest wait for a reclaimed instance to end before recovering its task. Default
  // 150000 (spot gives 120 s of notice).
  drainMs?: number;
  logger?: Logger;
}

// What the controller does for one task: recover an interrupted task (restore, re-run,
// give up, wait) and launch the instance a pending or restoring task needs, always under
// the task's restore lease so that two controllers never launch twice.
export class TaskLauncher {
  private readonly logger: Logger;
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly options: TaskLauncherOptions) {
    this.logger = options.logger ?? silentLogger;
  }

  // Brings one task forward from whatever state it is in; a no-op when nothing is needed
  // or another controller holds its lease.
  async reconcile(taskId: string, signal?: AbortSignal): Promise<void> {
    // One reconcile per task at a time in this process: the lease is re-entrant for its
    // owner, so it alone would not keep the sweep and an event from both launching.
    const previous = this.running.get(taskId) ?? Promise.resolve();
    const current = previous.catch(() => {}).then(() => this.reconcileNow(taskId, signal));
    const tail = current.catch(() => {});
    this.running.set(taskId, tail);
    try {
      return await current;
    } finally {
      if (this.running.get(taskId) === tail) this.running.delete(taskId);
    }
  }

  private async reconcileNow(taskId: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const task = await this.options.registry.getTask(taskId, { signal });
    if (!task) return;
    if (task.state === "interrupted") await this.recover(task, signal);
    else if (LAUNCH_STATES.includes(task.state) && task.launch === "needed") {
      const token = await this.acquire(task.id);
      if (token !== null) await this.launchUnderLease(task.id, token, signal);
    }
  }

  private acquire(taskId: string): Promise<number | null> {
    return this.options.registry.acquireRestoreLease(taskId, this.options.owner, this.options.leaseTtlMs);
  }

  private async recover(task: TaskRecord, signal?: AbortSignal): Promise<void> {
    const { registry } = this.options;
    const env = await this.options.environments.load(task.id);
    const log = this.logger.child({ taskId: task.id });
    if (await this.stillDraining(task, env)) {
      log.info(
        { instanceId: task.instanceId },
        "waiting for the reclaimed instance to end (final checkpoint)",
      );
      return;
    }
    const plan = planRecovery(task, env, { defaultArch: this.options.defaultArch });
    if (plan.action === "wait") {
      log.info({ reason: plan.reason }, "interrupted task waits for snapctl restore");
      return;
    }
    if (plan.action === "give-up") {
      await ignoreConflict(
        registry.transition(task.id, "failed", { from: "interrupted", reason: plan.reason }),
      );
      log.warn({ reason: plan.reason }, "giving up");
      return;
    }
    const token = await this.acquire(task.id);
    if (token === null) return;
    try {
      const where = `${plan.market}, ${plan.arch}${plan.avoidZone ? `, avoiding ${plan.avoidZone}` : ""}`;
      if (plan.action === "restore") {
        await registry.transition(task.id, "restoring", {
          from: "interrupted",
          fencingToken: token,
          reason: `restore snapshot ${plan.snapshotId} (attempt ${plan.attempt}, ${where})`,
        });
      } else {
        const why = env.snapshots.enabled ? "no snapshot committed" : "snapshots disabled";
        await registry.transition(task.id, "pending", {
          from: "interrupted",
          reason: `re-run from scratch: ${why} (attempt ${plan.attempt}, ${where})`,
        });
      }
      log.info({ plan }, "recovering interrupted task");
    } catch (err) {
      await this.release(task.id, token);
      // Another controller (or a late event) moved it first: nothing to do here.
      if (hasCode(err, "REGISTRY_STATE_CONFLICT") || hasCode(err, "REGISTRY_STALE_FENCING_TOKEN")) return;
      throw err;
    }
    await this.launchUnderLease(task.id, token, signal);
  }

  // An agent reports "interrupted" when the notice comes and then takes its final
  // checkpoint: the decision (restore or re-run) waits until the reclaimed instance has
  // ended, or `drainMs` after the interruption at most.
  private async stillDraining(task: TaskRecord, env: ComputeEnvironment): Promise<boolean> {
    if (!task.instanceId) return false;
    if (Date.now() - task.stateSince > (this.options.drainMs ?? 150_000)) return false;
    const provider = this.options.providerFor(env);
    const old = await provider.describe?.(task.instanceId).catch(() => undefined);
    return old !== undefined && ["pending", "running", "stopping"].includes(old.state);
  }

  // Launches (or adopts) the instance of the task's next attempt and records it; the
  // lease is released at the end whatever happens.
  private async launchUnderLease(taskId: string, token: number, signal?: AbortSignal): Promise<void> {
    const { registry } = this.options;
    const log = this.logger.child({ taskId, fencingToken: token });
    try {
      const task = await registry.requireTask(taskId, { signal });
      if (!LAUNCH_STATES.includes(task.state) || task.launch !== "needed") return;
      const env = await this.options.environments.load(taskId);
      const provider = this.options.providerFor(env);
      const attempt = task.attempts + 1;
      const params = launchParams(task, env, this.options.defaultArch);
      const adopted = await this.adoptOrphan(provider, taskId, attempt, log);
      let instance: LaunchedInstance;
      if (adopted) {
        instance = adopted;
        log.info(
          { instanceId: instance.instanceId, attempt },
          "adopting an instance launched before a takeover",
        );
      } else {
        const envFile = await this.writeEnvFile(taskId);
        instance = await provider.launch({
          task: { id: taskId, name: task.name },
          attempt,
          zonePreference: { avoid: params.avoidZone },
          market: params.market,
          arch: params.arch,
          userDataCommand: agentArgv({
            taskId,
            workDir: taskWorkDir(env.workDir, taskId),
            computeEnvFile: envFile,
            command: task.command,
            restore: params.restore,
            generation: params.restore
              ? await this.options.environments.restoreGeneration(taskId)
              : undefined,
            fencingToken: token,
          }),
          userDataEnv: { SNAPCTL_FENCING_TOKEN: String(token), SNAPCTL_ATTEMPT: String(attempt) },
          signal,
        });
        log.info({ ...instance, attempt, restore: params.restore }, "instance launched");
      }
      try {
        await registry.recordLaunch(taskId, { fencingToken: token, ...instance });
        if (params.restore) await this.options.environments.setRestoreGeneration(taskId, undefined);
      } catch (err) {
        if (hasCode(err, "REGISTRY_STALE_FENCING_TOKEN") || hasCode(err, "REGISTRY_LAUNCH_NOT_NEEDED")) {
          log.warn(
            { instanceId: instance.instanceId, err: (err as Error).message },
            "launch refused: terminating",
          );
          await provider.terminate(instance.instanceId);
          return;
        }
        // Redis unreachable: the instance stays; the next reconcile adopts it.
        throw err;
      }
    } finally {
      await this.release(taskId, token);
    }
  }

  // An instance launched for this very attempt by a controller that stopped before it
  // recorded it is adopted; instances of earlier attempts still alive are terminated, so
  // that at most one instance ever works for the task.
  private async adoptOrphan(
    provider: Provider,
    taskId: string,
    attempt: number,
    log: Logger,
  ): Promise<LaunchedInstance | undefined> {
    const found = (await provider.findTaskInstances?.(taskId)) ?? [];
    let adopted: LaunchedInstance | undefined;
    for (const instance of found) {
      if (!adopted && instance.attempt === attempt && instance.state !== "terminated") {
        adopted = instance;
        continue;
      }
      log.info(
        { instanceId: instance.instanceId, attempt: instance.attempt },
        "terminating a stale instance",
      );
      await provider.terminate(instance.instanceId);
    }
    if (!adopted) return undefined;
    const { instanceId, zone, instanceType, market, arch } = adopted;
    return { instanceId, zone, instanceType, market, arch };
  }

  // The task's compute environment file as submitted, for the agent's --compute-env.
  private async writeEnvFile(taskId: string): Promise<string> {
    const { text } = await this.options.environments.text(taskId);
    await mkdir(this.options.envDir, { recursive: true });
    const path = join(this.options.envDir, `${taskId}.yaml`);
    await writeFile(path, text);
    return path;
  }

  private async release(taskId: string, token: number): Promise<void> {
    try {
      await this.options.registry.releaseRestoreLease(taskId, this.options.owner, token);
    } catch (err) {
      // It expires on its own; a failed release only delays the next controller.
      this.logger.warn({ taskId, err: (err as Error).message }, "cannot release the restore lease");
    }
  }
}

async function ignoreConflict(operation: Promise<unknown>): Promise<void> {
  try {
    await operation;
  } catch (err) {
    if (!hasCode(err, "REGISTRY_STATE_CONFLICT")) throw err;
  }
}
