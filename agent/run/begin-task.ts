import { execa } from "execa";
import { criuLogOf, type TaskSpec } from "../../criu/index.js";
import { ExitCode } from "../../protocol/index.js";
import { AgentError } from "../errors.js";
import type { AgentCore } from "./agent-core.js";
import { hasErrorName, isTransient } from "./agent-failures.js";
import type { AgentResult, RestoreMode } from "./agent-options.js";

// The restore mode in effect: a generation asked for is a restore that must happen.
export function restoreModeOf(core: AgentCore): RestoreMode {
  return core.o.generation !== undefined ? "required" : (core.o.restore ?? "auto");
}

// Restores the task if the restore mode and its snapshots say so, else starts it.
// Returns a result only on failure.
export async function beginTask(core: AgentCore): Promise<AgentResult | undefined> {
  const { o } = core;
  const spec = core.taskSpec();
  const mode = restoreModeOf(core);
  // Snapshots disabled: no lookup unless a restore is asked for explicitly.
  const lookUp = mode === "required" || (mode === "auto" && core.snapshots);
  let latest: { generation: number } | undefined;
  try {
    latest =
      o.generation !== undefined
        ? { generation: o.generation }
        : lookUp
          ? await core.engine.latest({ signal: o.signal })
          : undefined;
  } catch (err) {
    if (hasErrorName(err, "NoSuchBucket"))
      throw new AgentError(
        "AGENT_NO_BUCKET",
        `The bucket of work dir ${o.workDir} does not exist: create it, or give a work dir in an existing bucket`,
        { cause: err },
      );
    return await restoreFailed(
      core,
      new AgentError(
        "AGENT_RESTORE_FAILED",
        `Cannot look up snapshots of task "${core.taskId}": ${(err as Error).message}`,
        { cause: err },
      ),
    );
  }
  core.logger.info({ restore: mode, workDir: o.workDir, latest: latest?.generation }, "snapshot lookup");
  // No snapshot but "required": the engine's restore says why (e.g. the task finished and
  // its images were removed), and a snapshot committed since the lookup is still used.
  if (latest !== undefined || mode === "required") return await restoreTask(core, spec, latest);
  if (!o.command || o.command.length === 0)
    throw new AgentError("AGENT_NO_COMMAND", `Task "${core.taskId}" has no snapshot and no command to start`);
  // Through a child process: never a blocking call on our own mount.
  await execa("mkdir", ["-p", spec.cwd], { cancelSignal: o.signal });
  try {
    core.adopt(await core.engine.start(spec));
  } catch (err) {
    throw new AgentError(
      "AGENT_START_FAILED",
      `Cannot start task "${core.taskId}": ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  core.logger.info({ pid: core.slot.task?.pid, command: o.command }, "task started");
  await core.reporter.report("started", {});
  return undefined;
}

async function restoreTask(
  core: AgentCore,
  spec: TaskSpec,
  latest: { generation: number } | undefined,
): Promise<AgentResult | undefined> {
  core.machine.to("restoring");
  try {
    const restored = await core.engine.restore(spec, {
      generation: core.o.generation,
      signal: core.o.signal,
    });
    const before = (restored as { runtimeBeforeMs?: unknown }).runtimeBeforeMs;
    core.adopt(restored.task, typeof before === "number" && before >= 0 ? before : 0);
    core.restored = { generation: restored.generation, resumeMs: restored.resumeMs };
    core.logger.info(
      { generation: restored.generation, resumeMs: restored.resumeMs, skipped: restored.skipped },
      "task restored",
    );
    await core.reporter.report("restored", {
      generation: restored.generation,
      resumeMs: Math.round(restored.resumeMs),
      skipped: restored.skipped,
      lazy: restored.lazy,
      runtimeMs: core.clock.runtimeMs(),
    });
    return undefined;
  } catch (err) {
    await core.logs?.putCriuLog("restore", criuLogOf(err));
    if (latest === undefined && (err as { code?: unknown })?.code === "CRIU_NO_SNAPSHOT")
      return await restoreFailed(
        core,
        new AgentError(
          "AGENT_NO_SNAPSHOT",
          `Task "${core.taskId}" has no committed snapshot in ${core.o.workDir} to restore: ${(err as Error).message}`,
          { cause: err },
        ),
      );
    return await restoreFailed(
      core,
      new AgentError(
        "AGENT_RESTORE_FAILED",
        `Cannot restore task "${core.taskId}" from ${core.o.workDir}: ${(err as Error).message}`,
        { cause: err },
      ),
    );
  }
}

// The restore failed: 176. Unless the failure was transient (S3 unreachable, aborted),
// every committed generation is set aside, so that the next attempt starts fresh rather
// than failing on the same snapshot again.
async function restoreFailed(core: AgentCore, error: AgentError): Promise<AgentResult> {
  core.logger.error({ err: error }, "restore failed");
  if (!isTransient(error) && core.engine?.setAside) {
    await core.engine
      .setAside({ signal: core.o.signal })
      .then((generations) => {
        if (generations.length > 0)
          core.logger.warn(
            { generations },
            "snapshot generations set aside: the next attempt starts the task fresh",
          );
      })
      .catch((err: unknown) =>
        core.logger.error({ err }, "cannot set the failed snapshot generations aside"),
      );
  }
  await core.reporter.report("failed", { error: error.message, exitCode: ExitCode.restoreFailed });
  return core.result(ExitCode.restoreFailed, "restore-failed", { error });
}
