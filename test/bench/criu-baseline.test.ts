import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { criuBinary, criuDump, criuRestore } from "../../bench/checkpoint/criu.js";
import { buildHog, finish, HogTask, readNote, waitRunning } from "../../bench/checkpoint/hog.js";
import { toolVersion } from "../../bench/harness/tools.js";

const criuWorks = (await toolVersion(criuBinary())) !== undefined && process.getuid?.() === 0;

// The machinery of the CRIU baselines: the hog task, a dump with CRIU's stats, a restore
// that the heartbeat sees, and the finish signal. Real CRIU, real processes.
describe.skipIf(!criuWorks)("CRIU baseline machinery", () => {
  let dir: string;
  let binary: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bench-criu-"));
    binary = await buildHog(join(dir, "bin"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("dumps the hog with stats, changes its memory, and restores it running", async () => {
    const taskDir = join(dir, "task");
    const task = await HogTask.start({ binary, mib: 32, dir: taskDir });
    let restoredPid: number | undefined;
    try {
      const images = join(dir, "images");
      const dump = await criuDump({ pid: task.pid, imagesDir: images, logFile: join(dir, "dump.log") });
      expect(dump.stats?.frozenTimeUs).toBeGreaterThan(0);
      // 32 MiB is 8192 pages; CRIU writes them all (plus the stack and binary's pages).
      expect(dump.stats?.pagesWritten).toBeGreaterThanOrEqual(8192);
      // --leave-running: the same task still answers.
      await task.change(1);
      expect(await readNote(taskDir, "changed")).toBe("1");
      await task.kill();
      const since = Date.now();
      restoredPid = await criuRestore({
        imagesDir: images,
        logFile: join(dir, "restore.log"),
        pidFile: join(dir, "restored.pid"),
      });
      expect(restoredPid).toBeGreaterThan(1);
      expect(await waitRunning(taskDir, since)).toBeGreaterThan(since);
      await finish(restoredPid, taskDir);
      expect(await readNote(taskDir, "done")).toMatch(/^done \d+$/);
    } finally {
      await task.kill();
      if (restoredPid) {
        try {
          process.kill(restoredPid, "SIGKILL");
        } catch {
          // It exits by itself after "done".
        }
      }
    }
  });
});
