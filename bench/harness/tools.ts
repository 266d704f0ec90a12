import { execa } from "execa";
import { BenchError } from "../errors.js";

// Runs a command to completion; a failure names the command and keeps its stderr.
export async function run(
  command: string,
  args: string[],
  options: { signal?: AbortSignal; env?: Record<string, string>; cwd?: string } = {},
): Promise<string> {
  try {
    const result = await execa(command, args, {
      cancelSignal: options.signal,
      env: options.env,
      cwd: options.cwd,
      stdin: "ignore",
    });
    return result.stdout;
  } catch (cause) {
    const stderr = (cause as { stderr?: string }).stderr ?? "";
    throw new BenchError(
      "BENCH_TOOL_FAILED",
      `"${command} ${args.join(" ")}" failed: ${stderr.trim().split("\n").slice(-3).join(" | ") || String(cause)}`,
      { cause },
    );
  }
}

// The first line of `command --version`-style output, or undefined if the tool is missing.
export async function toolVersion(command: string, args = ["--version"]): Promise<string | undefined> {
  try {
    const result = await execa(command, args, { stdin: "ignore", all: true, reject: false, timeout: 10_000 });
    if (result.failed && result.exitCode === undefined) return undefined;
    return (result.all ?? "")
      .split("\n")
      .find((line) => line.trim())
      ?.trim();
  } catch {
    return undefined;
  }
}

// Resolves once `check` returns a value, polling every `intervalMs`; fails after `timeoutMs`.
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  options: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    options.signal?.throwIfAborted();
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new BenchError(
        "BENCH_TIMEOUT",
        `Timed out after ${options.timeoutMs ?? 30_000} ms waiting for ${what}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

// Drops the kernel page cache so a read starts cold; best effort (needs root).
// Flushes the machine's dirty pages before a checkpoint is measured: the writes of the run
// before it (the naive path's dump on disk, s3rver storing objects) were otherwise written
// back during this one, and landed in its freeze (a 4 GiB freeze of this project measured
// 2.4-5.8 s across runs depending on what ran before it, against 2.2-2.6 s for the floor).
export async function settleWrites(): Promise<void> {
  await execa("sync", [], { stdin: "ignore" });
}

export async function dropCaches(): Promise<void> {
  try {
    await execa("sh", ["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], { stdin: "ignore" });
  } catch {
    // Not root: reads may be warmer than on a fresh machine; the report says so.
  }
}
