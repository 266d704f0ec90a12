import { execa } from "execa";
import { nodeEntry, repoRoot } from "../../common/entry.js";

// Runs snapctl (from source, through tsx) as a child process, never rejecting: tests
// look at the exit code and output.
export async function snapctl(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }> {
  const { command, args: nodeArgs } = nodeEntry("cli/snapctl");
  const result = await execa(command, [...nodeArgs, ...args], {
    cwd: repoRoot,
    env: { SNAPCTL_LOG_LEVEL: "warn", ...options.env },
    reject: false,
    timeout: options.timeoutMs ?? 60_000,
    stdin: "ignore",
  });
  return { exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) };
}
