import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EngineFixture, haveCc, WORK_PREFIX, waitFor, writtenBy } from "./engine-fixture.js";

const MIB = 64;
const STEPS = 20;
const CHURN = 64;
const SLEEP_MS = 100;

describe.skipIf(!haveCc())("snapshot engine: lazy restore (userfaultfd, pages read through Fusion)", () => {
  let f: EngineFixture;
  let expected = "";

  beforeAll(async () => {
    f = await EngineFixture.start();
    const ref = await mkdtemp(join(tmpdir(), "snap-ref-"));
    try {
      execFileSync(f.memtask, [String(MIB), String(STEPS), String(CHURN), "0", join(ref, "out")], {
        stdio: "ignore",
      });
    } catch (err) {
      if ((err as { status?: number }).status !== 7) throw err;
    }
    expected = await readFile(join(ref, "out"), "utf8");
    await rm(ref, { recursive: true, force: true });
  });

  afterAll(async () => {
    await f?.close();
  });

  it("restores a task whose memory is still in S3 and it finishes with the same output", async () => {
    await f.remount();
    const engine = f.engine();
    const cwd = await f.workDir();
    const output = join(cwd, "results.txt");
    const spec = {
      id: "t-1",
      command: [f.memtask, String(MIB), String(STEPS), String(CHURN), String(SLEEP_MS), output],
      cwd,
      stdoutPath: join(cwd, ".command.out"),
      stderrPath: join(cwd, ".command.err"),
    };
    const task = await engine.start(spec);
    f.tasks.push(task);
    await waitFor("3 steps", async () => (await writtenBy(task.pid, output)) >= 3 * 19);
    await engine.checkpoint({ leaveRunning: false });
    await task.exited;

    await f.remount();
    const restored = await f
      .engine({ workDir: join(f.dir, "engine-work-lazy") })
      .restore(spec, { lazy: true });
    f.tasks.push(restored.task);
    console.log(`[engine] lazy restore: running again after ${Math.round(restored.resumeMs)} ms`);
    expect(restored.lazy).toBe(true);
    // CRIU itself restores lazily: the restored tree's parent is `criu restore` (not
    // detached), run with --lazy-pages (without it, every page would be read in first).
    const stat = await readFile(`/proc/${restored.task.pid}/stat`, "utf8");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    const parent = (await readFile(`/proc/${ppid}/cmdline`, "utf8")).split("\0");
    expect(parent).toContain("restore");
    expect(parent).toContain("--lazy-pages");
    expect(await restored.task.exited).toEqual({ exitCode: 7, signal: null });
    expect(await f.getText(`${WORK_PREFIX}/results.txt`)).toBe(expected);
  });
});
