import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { CriuError } from "../errors.js";
import { requireCriu } from "./bundle.js";
import { withoutFuseFds } from "./fuse-fds.js";

export interface RunCriuOptions {
  signal?: AbortSignal;
  cwd?: string;
  // CRIU's own log (--log-file); its tail is quoted in errors. Relative paths are
  // relative to the images directory, as CRIU does.
  logFile?: string;
  // File descriptors for the child beyond stdio (e.g. pipes handed over with --inherit-fd).
  extraFds?: Array<number | "ignore" | "pipe">;
  // Kill CRIU after this many milliseconds. Default: no limit.
  timeoutMs?: number;
  // Whether a non-zero exit throws. Default true.
  reject?: boolean;
}

export interface CriuResult {
  command: string[];
  exitCode: number;
  signal?: string;
  stdout: string;
  stderr: string;
  durationMs: number;
}

// Runs the bundled CRIU with `args`. Every caller goes through here so that the bundle's
// own loader and libraries are always used. On failure, throws CRIU_FAILED with the
// command, the exit code and the tail of CRIU's log.
export async function runCriu(args: string[], options: RunCriuOptions = {}): Promise<CriuResult> {
  const launcher = requireCriu();
  const started = performance.now();
  // Never with the mount's /dev/fuse descriptor: a criu outliving this process would keep
  // the dead mount open and hang on it (see withoutFuseFds).
  const [bash, ...wrapped] = withoutFuseFds([launcher, ...args]);
  const result = await execa(bash as string, wrapped, {
    cwd: options.cwd,
    cancelSignal: options.signal,
    timeout: options.timeoutMs,
    reject: false,
    // execa passes numbers through as inherited descriptors; its types only list them for fds 0-2.
    stdio: ["ignore", "pipe", "pipe", ...((options.extraFds ?? []) as never[])],
    forceKillAfterDelay: 2_000,
  });
  const out: CriuResult = {
    command: ["criu", ...args],
    exitCode: result.exitCode ?? -1,
    signal: result.signal,
    stdout: String(result.stdout ?? ""),
    stderr: String(result.stderr ?? ""),
    durationMs: performance.now() - started,
  };
  if (result.isCanceled) {
    throw new CriuError("CRIU_ABORTED", `criu ${args[0]} was cancelled`, { cause: options.signal?.reason });
  }
  if (out.exitCode !== 0 && options.reject !== false) {
    const log = options.logFile ? criuLogTail(await readFile(options.logFile, "utf8").catch(() => "")) : "";
    const detail = (log || out.stderr).trim().split("\n").slice(-8).join("\n  ");
    throw new CriuError(
      "CRIU_FAILED",
      `criu ${args[0]} exited with ${result.timedOut ? "a timeout" : out.signal ? `signal ${out.signal}` : `code ${out.exitCode}`}${detail ? `:\n  ${detail}` : ""}`,
    );
  }
  return out;
}

// CRIU prints this error on every run here, and it is harmless (ENVIRONMENT.md).
const NOISE = /RLIMIT_NOFILE|kdat cache/;

// The lines of a CRIU log (or output) that say what went wrong, `count` at most from the
// end: the lines matching `errors` when there are any, else the last lines; never the
// harmless noise CRIU always prints. The one reading of CRIU's logs for messages.
export function criuLogTail(text: string, options: { errors?: RegExp; count?: number } = {}): string {
  const lines = text.split("\n").filter((l) => l.trim() && !NOISE.test(l));
  const errors = lines.filter((l) => (options.errors ?? /Error|error|failed|fail|Can't/).test(l));
  return (errors.length ? errors : lines).slice(-(options.count ?? 8)).join("\n");
}
