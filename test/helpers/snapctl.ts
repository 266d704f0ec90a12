import { execa, type Result } from "execa";
import { nodeEntry, repoRoot } from "../../common/entry.js";

// Runs snapctl (from source, through tsx) as a child process, never rejecting: tests
// look at the exit code and output.
export async function snapctl(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Result> {
  const { command, args: nodeArgs } = nodeEntry("cli/snapctl");
  return await execa(command, [...nodeArgs, ...args], {
    cwd: repoRoot,
    env: { SNAPCTL_LOG_LEVEL: "warn", ...options.env },
    reject: false,
    timeout: options.timeoutMs ?? 60_000,
    stdin: "ignore",
  });
}
