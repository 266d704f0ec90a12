import { join } from "node:path";
import { deletePrefix } from "../fs/fs-workloads.js";
import type { BenchContext } from "../harness/context.js";
import { dropCaches, settleWrites } from "../harness/tools.js";
import type { CheckpointResult, CheckpointTarget } from "./checkpoint-target.js";
import { finish, HogTask, waitRunning } from "./hog.js";

export const CHECKPOINT_WORKLOADS = ["checkpoint", "incremental", "restore"] as const;
export type CheckpointWorkload = (typeof CHECKPOINT_WORKLOADS)[number];

export interface RestoreResult {
  // From the start of the restore until the task's first heartbeat.
  runningSeconds: number;
  // Until the task has read all its memory and said "done".
  finishedSeconds: number;
}

export interface CheckpointCycle {
  checkpoint?: CheckpointResult;
  incremental?: CheckpointResult;
  restore: Record<string, RestoreResult>;
}

// One run of the checkpoint workloads on a fresh task: a first checkpoint, the next one
// after `percent`% of the memory changed, then restores of the latest snapshot with the
// original task gone (a clean machine: nothing local, page cache dropped).
export async function runCheckpointCycle(
  target: CheckpointTarget,
  context: BenchContext,
  options: {
    binary: string;
    mib: number;
    percent: number;
    workloads: readonly CheckpointWorkload[];
    run: number;
  },
): Promise<CheckpointCycle> {
  const key = `ckpt-${target.name}-${context.endpoint.profile}-${options.mib}m-${options.run}`;
  const dir = join(context.workDir, "tasks", key);
  const result: CheckpointCycle = { restore: {} };
  const wants = (workload: CheckpointWorkload) => options.workloads.includes(workload);
  let task: HogTask | undefined = await HogTask.start({
    binary: options.binary,
    mib: options.mib,
    dir,
    percent: options.percent,
    signal: context.signal,
  });
  try {
    context.log(
      `${target.name} ${context.endpoint.profile} ${options.mib} MiB run ${options.run}: checkpoint`,
    );
    await settleWrites();
    result.checkpoint = await target.checkpoint(task, context, { key });
    let latest = key;
    if (wants("incremental")) {
      await task.change(1, context.signal);
      context.log(
        `${target.name} ${context.endpoint.profile} ${options.mib} MiB run ${options.run}: incremental`,
      );
      latest = `${key}-inc`;
      await settleWrites();
      result.incremental = await target.checkpoint(task, context, { key: latest, parent: key });
    }
    if (wants("restore") && target.restoreModes.length > 0) {
      await task.kill();
      task = undefined;
      for (const mode of target.restoreModes) {
        context.log(
          `${target.name} ${context.endpoint.profile} ${options.mib} MiB run ${options.run}: restore ${mode}`,
        );
        await dropCaches();
        const since = Date.now();
        const restored = await target.restore(context, { key: latest, mode, task: { pid: 0, dir } });
        try {
          const running = await waitRunning(dir, since, context.signal);
          const finished = await finish(restored.pid, dir, context.signal);
          result.restore[mode] = {
            runningSeconds: (running - since) / 1000,
            finishedSeconds: (finished - since) / 1000,
          };
        } finally {
          try {
            process.kill(restored.pid, "SIGKILL");
          } catch {
            // It exits by itself once done.
          }
          await restored.close();
        }
      }
    }
    return result;
  } finally {
    await task?.kill();
    await target.forget(context, key);
    await target.forget(context, `${key}-inc`);
    await deletePrefix(context.s3, context.endpoint.bucket, key);
  }
}
