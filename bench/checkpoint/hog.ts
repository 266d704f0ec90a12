import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { BenchError } from "../errors.js";
import { run, waitFor } from "../harness/tools.js";

const source = join(dirname(fileURLToPath(import.meta.url)), "hog.c");

// Compiles the memory-hog task (hog.c) into `dir`; returns the binary's path.
export async function buildHog(dir: string, signal?: AbortSignal): Promise<string> {
  await mkdir(dir, { recursive: true });
  const binary = join(dir, "hog");
  await run("cc", ["-O2", "-o", binary, source], { signal });
  return binary;
}

// Reads a note the hog wrote (padded to a fixed size), trimmed; undefined if absent.
export async function readNote(dir: string, name: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dir, name), "utf8")).trim() || undefined;
  } catch {
    return undefined;
  }
}

// The epoch time (ms) of the hog's last heartbeat in `dir`, if any.
export async function lastHeartbeat(dir: string): Promise<number | undefined> {
  const text = await readNote(dir, "heartbeat");
  const ns = text?.split(/\s+/)[1];
  return ns ? Number(BigInt(ns) / 1000n) / 1000 : undefined;
}

// A running hog: the namespace's init, started as `unshare --pid --fork setsid hog`, so
// that CRIU can dump it and restore it with its own PIDs free.
export class HogTask {
  private constructor(
    readonly pid: number,
    readonly dir: string,
    private readonly launcher: ResultPromise,
  ) {}

  static async start(options: {
    binary: string;
    mib: number;
    dir: string;
    percent?: number;
    signal?: AbortSignal;
  }) {
    await rm(options.dir, { recursive: true, force: true });
    await mkdir(options.dir, { recursive: true });
    const launcher = execa(
      "unshare",
      [
        "--pid",
        "--fork",
        "setsid",
        options.binary,
        String(options.mib),
        options.dir,
        String(options.percent ?? 10),
      ],
      { cwd: options.dir, stdio: "ignore", reject: false },
    );
    const launcherPid = launcher.pid;
    if (!launcherPid) throw new BenchError("BENCH_TOOL_FAILED", "Cannot start unshare for the hog task");
    const pid = await waitFor(
      `the hog task (${options.mib} MiB) to start`,
      async () => {
        const children = await readFile(`/proc/${launcherPid}/task/${launcherPid}/children`, "utf8").catch(
          () => "",
        );
        return Number(children.trim().split(/\s+/)[0]) || undefined;
      },
      { timeoutMs: 10_000, signal: options.signal },
    );
    const task = new HogTask(pid, options.dir, launcher);
    await waitFor(`the hog task to fill ${options.mib} MiB`, () => readNote(options.dir, "ready"), {
      timeoutMs: 600_000,
      intervalMs: 50,
      signal: options.signal,
    });
    return task;
  }

  // Rewrites the configured fraction of its pages; resolves when the task says so.
  async change(generation: number, signal?: AbortSignal): Promise<void> {
    process.kill(this.pid, "SIGUSR1");
    await waitFor(
      `the hog task to change its memory (generation ${generation})`,
      async () => ((await readNote(this.dir, "changed")) === String(generation) ? true : undefined),
      { timeoutMs: 600_000, intervalMs: 20, signal },
    );
  }

  // Kills the task and waits for its launcher to exit.
  async kill(): Promise<void> {
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await this.launcher;
  }
}

// Waits for a (restored) hog to be running: a heartbeat written after `since` (epoch ms).
export async function waitRunning(dir: string, since: number, signal?: AbortSignal): Promise<number> {
  return await waitFor(
    "the restored task's first heartbeat",
    async () => {
      const beat = await lastHeartbeat(dir);
      return beat !== undefined && beat > since ? beat : undefined;
    },
    { timeoutMs: 600_000, intervalMs: 2, signal },
  );
}

// Asks a (restored) hog to finish its work (read all its memory) and waits until it has.
export async function finish(pid: number, dir: string, signal?: AbortSignal): Promise<number> {
  await rm(join(dir, "done"), { force: true });
  process.kill(pid, "SIGUSR2");
  await waitFor("the restored task to finish", () => readNote(dir, "done"), {
    timeoutMs: 600_000,
    intervalMs: 5,
    signal,
  });
  return Date.now();
}
