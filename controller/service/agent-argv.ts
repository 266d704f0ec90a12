// argv of the agent for one launch, in the agent's CLI shape:
// snapctl agent run --task <id> --workdir <s3://...> --compute-env <file> [--restore [--snapshot <gen>]]
//   [--fencing-token <n>] -- <command...>
// (the local provider adds --mountpoint and --cache-dir per instance).
export interface AgentArgvOptions {
  taskId: string;
  workDir: string;
  computeEnvFile: string;
  command: string[];
  restore: boolean;
  // A restore of this generation rather than the newest usable one.
  generation?: number;
  // The restore lease token of the launch; the agent sends it with every event.
  fencingToken?: number;
}

export function agentArgv(options: AgentArgvOptions): string[] {
  const argv = [
    "snapctl",
    "agent",
    "run",
    "--task",
    options.taskId,
    "--workdir",
    options.workDir,
    "--compute-env",
    options.computeEnvFile,
  ];
  if (options.restore) argv.push("--restore");
  if (options.restore && options.generation !== undefined)
    argv.push("--snapshot", String(options.generation));
  if (options.fencingToken !== undefined) argv.push("--fencing-token", String(options.fencingToken));
  return [...argv, "--", ...options.command];
}
