// The agent process itself dies (kill -9) in the middle of a checkpoint, while CRIU writes
// the images: the checkpoint runs in a child Node process (fixtures/dump-agent.ts) that
// also serves the Fusion mount, as the agent does. Then, on a fresh mount with a clean
// cache, the previous generation must still be the latest, and restoring it must give
// the output of an uninterrupted run. What became of the original task is recorded too:
// nothing is left to resume or kill it once its dumper is gone.
import { execFileSync, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeEntry, repoRoot } from "../../../common/entry.js";
import type { TaskSpec } from "../../../criu/index.js";
import { BUCKET, EngineFixture, haveCc, WORK_PREFIX, waitFor } from "./engine-fixture.js";

const MIB = 192;
const STEPS = 40;
const CHURN = 64;
const SLEEP_MS = 100;
// Killed once CRIU has written this much of generation 2's images.
const KILL_AFTER_BYTES = 24 * 1024 * 1024;

// Process state letter from /proc/<pid>/stat ("R", "S", "T" stopped, "Z"), or "gone".
async function state(pid: number): Promise<string> {
  const s = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return s ? s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3) : "gone";
}

// The states of the task tree under `root` (its namespace init), root first.
async function treeStates(root: number): Promise<string[]> {
  const out: string[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift() as number;
    out.push(await state(pid));
    const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
    for (const c of children.trim().split(/\s+/)) if (c) queue.push(Number(c));
  }
  return out;
}

// The `criu dump` of task `pid`: its PID and images dir (-D), if one runs.
async function criuDump(pid: number): Promise<{ pid: number; dir: string } | undefined> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const args = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).split("\0");
    const t = args.indexOf("-t");
    if (args.includes("dump") && t > 0 && args[t + 1] === String(pid)) {
      return { pid: Number(entry), dir: args[args.indexOf("-D") + 1] as string };
    }
  }
  return undefined;
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    n += (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size;
  }
  return n;
}

describe.skipIf(!haveCc())("snapshot engine: the agent process killed -9 mid-dump", () => {
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
    // What the killed agents staged in memory for generation 2 (nobody else removes it).
    for (const staging of ["mount", "local"]) {
      await rm(`/dev/shm/snapctl-agent-work-t-crash-${staging}-2`, { recursive: true, force: true });
    }
  });

  // "mount": CRIU writes the images through the agent's own FUSE mount, which dies with
  // it. "local": CRIU writes them to local disk and outlives the agent.
  it.each(["mount", "local"] as const)(
    "staging %s: the previous generation restores; the original task is accounted for",
    async (staging) => {
      await f.unmount();
      const mnt = join(f.dir, "mnt");
      const cwd = join(mnt, "s3", BUCKET, WORK_PREFIX);
      const output = join(cwd, `results-${staging}.txt`);
      const spec: TaskSpec = {
        id: `t-crash-${staging}`,
        command: [f.memtask, String(MIB), String(STEPS), String(CHURN), String(SLEEP_MS), output],
        cwd,
        stdoutPath: join(cwd, `.${staging}.out`),
        stderrPath: join(cwd, `.${staging}.err`),
      };
      const { command, args } = nodeEntry("test/criu/engine/fixtures/dump-agent");
      const agentLog = join(f.dir, `agent-${staging}.log`);
      const agent = spawn(
        command,
        [...args, JSON.stringify({ endpoint: f.server.endpoint, dir: f.dir, spec, output, staging })],
        { cwd: repoRoot, stdio: ["ignore", "pipe", openSync(agentLog, "w")] },
      );
      const events: Array<{ event: string; pid?: number; generation?: number }> = [];
      let buf = "";
      agent.stdout?.setEncoding("utf8").on("data", (d: string) => {
        buf += d;
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          events.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
      });
      let agentExit: number | null | undefined;
      agent.on("exit", (code, signal) => {
        agentExit = code ?? (signal ? -1 : null);
      });
      const has = (event: string) => events.some((e) => e.event === event);
      const agentFailed = async () => {
        throw new Error(`the agent exited with ${agentExit}:\n${await readFile(agentLog, "utf8")}`);
      };
      await waitFor(
        "the agent to start dumping generation 2",
        async () => {
          if (agentExit !== undefined) await agentFailed();
          return has("dumping");
        },
        120_000,
      );
      const taskPid = events.find((e) => e.event === "started")?.pid as number;
      f.tasks.push({
        kill: () => {
          try {
            process.kill(taskPid, "SIGKILL");
          } catch {
            // gone
          }
        },
        exited: Promise.resolve(),
      });

      // kill -9 while CRIU writes the images of generation 2. To local disk CRIU writes the
      // task's 64 MiB in a fraction of a second: the agent dies as soon as the dump is seen.
      const killAfter = staging === "local" ? 0 : KILL_AFTER_BYTES;
      let dump: { pid: number; dir: string } | undefined;
      await waitFor(
        "criu dump to write its images",
        async () => {
          dump ??= await criuDump(taskPid);
          if (!dump) return false;
          if ((await state(dump.pid)) === "gone")
            throw new Error("criu dump ended before the agent was killed");
          return (await dirBytes(dump.dir)) >= killAfter;
        },
        60_000,
      );
      agent.kill("SIGKILL");
      await waitFor("the agent to die", async () => agentExit !== undefined);
      expect(events.filter((e) => e.event === "checkpointed")).toEqual([
        { event: "checkpointed", generation: 1 },
      ]);

      // CRIU is not the agent: it goes on alone, until it ends on its own.
      const criuPid = (dump as { pid: number }).pid;
      await waitFor(
        "the orphaned criu dump to end",
        async () => ["gone", "Z"].includes(await state(criuPid)),
        120_000,
      );
      const dumpLog = await readFile(join(f.dir, "agent-work", "dump-2", "dump.log"), "utf8").catch(() => "");
      const criuFinished = dumpLog.includes("Dumping finished successfully");
      const states = await treeStates(taskPid);
      console.log(
        `[agent-crash] staging ${staging}: criu dump ${criuFinished ? "finished" : "failed"} after the agent died; the original task's processes: ${states.join(" ")}`,
      );
      if (criuFinished) {
        // --leave-stopped, and no engine left to resume or kill the tree: it stays stopped.
        expect(states.every((s) => s === "T")).toBe(true);
      } else {
        // The images could not be written (the mount died with the agent): CRIU resumed
        // the task, which runs on, orphaned, with its files on a dead mount.
        expect(states).not.toContain("T");
        expect(dumpLog).toContain("Dumping FAILED");
      }
      try {
        process.kill(taskPid, "SIGKILL");
      } catch {
        // It may have ended by itself meanwhile: its files were on the dead mount.
      }
      await waitFor("the original task to end", async () => ["gone", "Z"].includes(await state(taskPid)));

      // The agent's mount is dead: detach it, and mount afresh with a clean cache.
      await execa("fusermount", ["-u", "-z", mnt], { reject: false });
      await f.remount();
      const engine = f.engine({ taskId: spec.id, workDir: join(f.dir, `restore-${staging}`) });
      expect((await engine.latest())?.generation).toBe(1);
      const restored = await engine.restore(spec);
      f.tasks.push(restored.task);
      expect(restored.generation).toBe(1);
      expect(restored.skipped).toEqual([]);
      expect(await restored.task.exited).toEqual({ exitCode: 7, signal: null });
      expect(await f.getText(`${WORK_PREFIX}/results-${staging}.txt`)).toBe(expected);
    },
    300_000,
  );
});
