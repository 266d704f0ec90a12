import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { BenchError } from "../errors.js";
import { toolVersion } from "../harness/tools.js";
import type { CheckpointTarget } from "./checkpoint-target.js";
import { criuBinary, criuDump } from "./criu.js";

// The floor: `criu dump` into tmpfs (/dev/shm) and nothing else. No checkpoint that
// ends up in S3 can freeze the task for less. It uploads nothing and cannot restore.
const tmpfsRoot = process.env.SNAPBENCH_TMPFS ?? "/dev/shm";

export const floorTarget: CheckpointTarget = {
  name: "tmpfs-floor",
  settings: `criu dump to tmpfs (${tmpfsRoot}) alone`,
  restoreModes: [],
  async unavailable() {
    if (!(await toolVersion(criuBinary()))) return `CRIU is not runnable (${criuBinary()})`;
    return undefined;
  },
  async checkpoint(task, context, { key }) {
    await mkdir(tmpfsRoot, { recursive: true });
    const imagesDir = await mkdtemp(join(tmpfsRoot, `snapbench-${key}-`));
    try {
      const started = performance.now();
      const dump = await criuDump({
        pid: task.pid,
        imagesDir,
        logFile: join(context.workDir, `floor-${key}.dump.log`),
        signal: context.signal,
      });
      const committedSeconds = (performance.now() - started) / 1000;
      return {
        freezeSeconds: (dump.stats?.frozenTimeUs ?? dump.seconds * 1e6) / 1e6,
        committedSeconds,
        bytesUploaded: 0,
      };
    } finally {
      // The images would hold the task's memory twice in RAM: drop them at once.
      await rm(imagesDir, { recursive: true, force: true });
    }
  },
  async restore() {
    throw new BenchError("BENCH_BAD_OPTION", "The tmpfs floor cannot restore: it uploads nothing");
  },
  async forget() {},
};
