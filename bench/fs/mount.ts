import { readFile } from "node:fs/promises";
import { execa, type ResultPromise } from "execa";
import { BenchError } from "../errors.js";
import { run, waitFor } from "../harness/tools.js";

export interface FuseMount {
  readonly mountpoint: string;
  readonly pid: number | undefined;
  // Unmounts (fusermount -u), waits for the daemon to exit, kills it by PID if it does not.
  close(): Promise<void>;
}

// Whether `mountpoint` is currently a mount point.
export async function isMounted(mountpoint: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((line) => line.split(" ")[4] === mountpoint);
}

// Starts a FUSE daemon in the foreground as our child and waits for its mount to appear.
export async function startFuseDaemon(options: {
  name: string;
  command: string;
  args: string[];
  mountpoint: string;
  env?: Record<string, string>;
  // A daemon that unmounts itself on a signal (ours) gets it first; others get fusermount -u.
  stopSignal?: NodeJS.Signals;
  signal?: AbortSignal;
  timeoutMs?: number;
}): Promise<FuseMount> {
  // AWS_CA_BUNDLE (set on some machines) makes rclone 1.60 refuse plain-HTTP endpoints.
  const { AWS_CA_BUNDLE: _bundle, ...inherited } = process.env;
  const child: ResultPromise = execa(options.command, options.args, {
    env: { ...inherited, ...options.env },
    extendEnv: false,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    reject: false,
    buffer: { stderr: true },
  });
  let exited = false;
  const done = child.then((result) => {
    exited = true;
    return result;
  });
  try {
    await waitFor(
      `${options.name} to mount ${options.mountpoint}`,
      async () => {
        if (exited) {
          const result = await done;
          throw new BenchError(
            "BENCH_MOUNT_FAILED",
            `${options.name} exited (${result.exitCode ?? result.signal}) before mounting ${options.mountpoint}: ${String(result.stderr).trim().slice(-400)}`,
          );
        }
        return (await isMounted(options.mountpoint)) ? true : undefined;
      },
      { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 50, signal: options.signal },
    );
  } catch (error) {
    if (!exited && child.pid) process.kill(child.pid, "SIGKILL");
    await done;
    throw error;
  }
  let closing: Promise<void> | undefined;
  const close = async () => {
    if (options.stopSignal && !exited && child.pid) {
      process.kill(child.pid, options.stopSignal);
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    }
    for (let attempt = 0; attempt < 20 && (await isMounted(options.mountpoint)); attempt++) {
      try {
        await run("fusermount", ["-u", options.mountpoint]);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    if (await isMounted(options.mountpoint))
      await run("fusermount", ["-uz", options.mountpoint]).catch(() => "");
    const timer = setTimeout(() => {
      if (!exited && child.pid) process.kill(child.pid, "SIGKILL");
    }, 10_000);
    await done;
    clearTimeout(timer);
  };
  return {
    mountpoint: options.mountpoint,
    pid: child.pid,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
