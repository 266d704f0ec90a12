// argv of the agent for one launch, in the agent's CLI shape:
// snapctl agent run --task <id> --workdir <s3://...> --compute-env <file> --on-checkpointed exit
//   (--restore [--snapshot <gen>] | --no-restore) [--fencing-token <n>] -- <command...>
// The controller restores interrupted tasks itself, so its agents exit as soon as the final
// checkpoint is committed; and it decides restore or re-run, so an agent never guesses.
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
  argv.push("--on-checkpointed", "exit");
  if (!options.restore) argv.push("--no-restore");
  else if (options.generation !== undefined) argv.push("--restore", "--snapshot", String(options.generation));
  else argv.push("--restore");
  if (options.fencingToken !== undefined) argv.push("--fencing-token", String(options.fencingToken));
  return [...argv, "--", ...options.command];
}
