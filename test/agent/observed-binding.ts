// The production engine binding (criu/'s SnapshotEngine), observed: a test can run code
// just before each checkpoint reaches the engine (to make an interruption or the task's
// exit happen at that moment) and sees the tasks the engine starts. Nothing is faked:
// every start, checkpoint and restore is the real engine's.

import type { EngineBinding } from "../../agent/index.js";
import { criuEngineBinding } from "../../agent/run/criu-binding.js";
import type { CheckpointOptions, RunningTask, SnapshotEngineLike } from "../../criu/index.js";

export interface Observed {
  binding: EngineBinding;
  tasks: RunningTask[];
}

export function observedBinding(
  beforeCheckpoint?: (options: CheckpointOptions, tasks: RunningTask[]) => Promise<void>,
): Observed {
  const real = criuEngineBinding();
  const tasks: RunningTask[] = [];
  const binding: EngineBinding = {
    mountOptions: (context) => real.mountOptions?.(context) ?? {},
    close: () => real.close?.() ?? Promise.resolve(),
    create: async (context) => {
      const engine = await real.create(context);
      const observed: SnapshotEngineLike = {
        start: async (spec) => {
          const task = await engine.start(spec);
          tasks.push(task);
          return task;
        },
        restore: async (spec, options) => {
          const result = await engine.restore(spec, options);
          tasks.push(result.task);
          return result;
        },
        checkpoint: async (options = {}) => {
          await beforeCheckpoint?.(options, tasks);
          return await engine.checkpoint(options);
        },
        latest: (options) => engine.latest(options),
        cleanup: (options) => engine.cleanup(options),
      };
      return observed;
    },
  };
  return { binding, tasks };
}
