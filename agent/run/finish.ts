import { type CheckpointResult, criuLogOf, type TaskExit } from "../../criu/index.js";
import { ExitCode } from "../../protocol/index.js";
import { AgentError } from "../errors.js";
import type { AgentCore } from "./agent-core.js";
import { asAgentError } from "./agent-failures.js";
import type { AgentResult } from "./agent-options.js";
import { taskExitCode } from "./exit-code.js";
import { takeCheckpoint } from "./take-checkpoint.js";

// After a failed checkpoint, how long to wait for news that the task itself ended (a dump
// fails when its task exits under it, and that is an exit, not a checkpoint failure).
export const EXIT_GRACE_MS = 3_000;
// With snapshots disabled, a task under a spot notice runs until this long before the
// reclaim, then is stopped (its files flushed, its events sent before the machine goes).
const STOP_MARGIN_MS = 10_000;

// The ways an agent run ends: an interruption (with or without snapshots) or the task's
// own exit. Each returns the run's result.

// Leaves the running states: no checkpoint request is taken any more.
export function beginFinishing(core: AgentCore, why: string): void {
  core.machine.to("finishing");
  core.box.rejectAll(new AgentError("AGENT_BUSY", `The agent of task "${core.taskId}" is stopping (${why})`));
}

// A notice or SIGTERM: a final checkpoint that stops the task. Committed: "checkpointed,
// restore me" (178), at once or after the reclaim did not come (onCheckpointed).
// Failed: 175, Fusion's "checkpoint dump failed".
export async function finishInterrupted(
  core: AgentCore,
  reason: string,
  deadline: number | undefined,
): Promise<AgentResult> {
  beginFinishing(core, reason);
  const estimateMs = core.policy.estimateFinalMs();
  core.logger.warn(
    { reason, deadline, estimateMs, msLeft: deadline ? deadline - Date.now() : undefined },
    "interrupted: final checkpoint",
  );
  await core.reporter.report("interrupted", { reason, ...(deadline ? { deadline } : {}) });
  let committed: CheckpointResult;
  try {
    committed = await takeCheckpoint(core, reason, false);
  } catch (err) {
    const error = asAgentError(err);
    const ended = await core.slot.endedWithin(EXIT_GRACE_MS);
    if (ended && !core.slot.task?.checkpointed) return await finishExited(core, ended);
    core.logger.error(
      { err: error },
      "final checkpoint failed: the task's progress since the last snapshot is lost",
    );
    await core.logs?.putCriuLog("dump", criuLogOf(err));
    await core.reporter.report("checkpoint-failed", { error: error.message, reason });
    await core.reporter.report("failed", {
      error: `final checkpoint failed: ${error.message}`,
      exitCode: ExitCode.dumpFailed,
    });
    await core.slot.stop();
    await core.flushFiles();
    return core.result(ExitCode.dumpFailed, "checkpoint-failed", { error });
  }
  await core.flushFiles();
  if (deadline !== undefined)
    core.logger.info(
      { marginMs: deadline - Date.now(), generation: committed.generation },
      "final checkpoint committed before the deadline",
    );
  if ((core.o.onCheckpointed ?? "wait") === "wait") await waitForReclaim(core, deadline);
  return core.result(ExitCode.checkpointed, "checkpointed");
}

// After a committed final checkpoint under a scheduler: the container must end the way it
// would have without snapshots (with its instance), so that the scheduler's spot retries
// apply and restore the task. Everything a reclaim would lose goes out first.
async function waitForReclaim(core: AgentCore, deadline: number | undefined): Promise<void> {
  core.machine.to("waiting-for-reclaim");
  const grace = core.o.reclaimGraceMs ?? 60_000;
  const until = (deadline ?? Date.now()) + grace;
  core.logger.warn(
    { waitMs: Math.max(0, until - Date.now()), graceMs: grace },
    "task checkpointed and stopped: waiting for the instance to be reclaimed",
  );
  await core.logs?.putAgentLog();
  if (core.o.redisUrl) await core.outbox?.flush({ timeoutMs: 10_000 }).catch(() => {});
  if (!core.waits.forced.signal.aborted) await core.waits.sleep(until - Date.now());
  core.logger.warn(
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
export async function finishUncheckpointed(
  core: AgentCore,
  reason: string,
  deadline: number | undefined,
): Promise<AgentResult | undefined> {
  if (deadline !== undefined && (core.o.onCheckpointed ?? "wait") === "wait") {
    core.logger.warn(
      { reason, deadline },
      "interrupted with snapshots disabled: the task runs on until the reclaim",
    );
    await core.reporter.report("interrupted", { reason, checkpointed: false, deadline });
    return undefined;
  }
  beginFinishing(core, reason);
  const task = core.slot.task;
  if (deadline !== undefined && task && !core.slot.ended) {
    const waitMs = Math.max(0, deadline - STOP_MARGIN_MS - Date.now());
    core.logger.warn(
      { reason, deadline, waitMs },
      "interrupted with snapshots disabled: the task runs on until shortly before the reclaim",
    );
    const exit = await Promise.race([task.exited.catch(() => undefined), core.waits.sleep(waitMs)]);
    if (exit && !task.checkpointed) return await finishExited(core, exit);
  }
  // It may have ended on its own just now: that is its exit, not an interruption.
  if (core.slot.ended) return await finishExited(core, core.slot.ended);
  core.logger.warn({ reason }, "interrupted with snapshots disabled: stopping the task, no checkpoint");
  await core.reporter.report("interrupted", {
    reason,
    checkpointed: false,
    ...(deadline ? { deadline } : {}),
  });
  await core.slot.stop();
  await core.flushFiles();
  return core.result(ExitCode.interrupted, "interrupted");
}

// The task ended on its own: its images go, its files are flushed, its code is ours.
export async function finishExited(core: AgentCore, exit: TaskExit): Promise<AgentResult> {
  if (!core.machine.finishing) beginFinishing(core, "the task exited");
  const code = taskExitCode(exit);
  core.logger.info({ exit, code }, "task exited");
  // Recorded in the snapshot area's finished marker (engines that know it).
  const cleanupOptions = { signal: core.o.signal, detail: { exitCode: code, instanceId: core.instanceId } };
  await core.engine
    .cleanup(cleanupOptions)
    .catch((err: unknown) =>
      core.logger.warn({ err }, "cannot remove the task's snapshot images; they stay until the next GC"),
    );
  await core.flushFiles();
  if (code === 0) await core.reporter.report("succeeded", {});
  else
    await core.reporter.report("failed", {
      error:
        exit.exitCode !== null ? `task exited with code ${exit.exitCode}` : `task killed by ${exit.signal}`,
      exitCode: code,
    });
  return core.result(code, "exited", { taskExit: exit });
}
