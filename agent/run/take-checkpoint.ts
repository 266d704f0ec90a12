import type { CheckpointResult } from "../../criu/index.js";
import { AgentError } from "../errors.js";
import type { AgentCore } from "./agent-core.js";

const ARCH = process.arch === "arm64" ? "arm64" : "x86_64";

// One checkpoint, recorded in the policy and reported; `leaveRunning` false is the final
// one, which stops the task.
export async function takeCheckpoint(
  core: AgentCore,
  reason: string,
  leaveRunning: boolean,
): Promise<CheckpointResult> {
  if (leaveRunning) core.machine.to("checkpointing");
  await core.reporter.report("checkpoint-started", { reason });
  const startedAt = Date.now();
  // A periodic one stops when the agent is told to stop; the final one is what stopping
  // asks for, so only a forced exit (a second SIGINT) gives it up.
  const signal = leaveRunning ? core.o.signal : core.waits.forced.signal;
  try {
    const r = await core.engine.checkpoint({ leaveRunning, reason, ...(signal ? { signal } : {}) });
    core.checkpoints.push(r);
    core.policy.recordCheckpoint({
      startedAt,
      totalMs: r.totalMs,
      freezeMs: r.freezeMs,
      bytesLogical: r.bytesLogical,
      bytesUploaded: r.bytesUploaded,
    });
    core.logger.info(
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
    await core.reporter.report("checkpoint-committed", {
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
      `Checkpoint (${reason}) of task "${core.taskId}" failed: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    if (core.machine.state === "checkpointing") core.machine.to("running");
  }
}
