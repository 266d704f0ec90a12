// The agent command line and the boot script that runs it. Kept here, apart from the
// providers, because the agent's CLI is still being written: only these functions know
// its shape.

export interface AgentCommandOptions {
  taskId: string;
  workDir: string;
  // Restore from a snapshot instead of starting the command afresh.
  restore?: { snapshotId?: string };
  // The restore lease token the launch was made under; the agent hands it back so a
  // stale launch can be recognised.
  fencingToken?: number;
  // Default "snapctl".
  executable?: string;
}

// argv of `snapctl agent run` for a task.
export function agentCommand(options: AgentCommandOptions): string[] {
  const argv = [
    options.executable ?? "snapctl",
    "agent",
    "run",
    "--task",
    options.taskId,
    "--workdir",
    options.workDir,
  ];
  if (options.restore) {
    argv.push("--restore");
    if (options.restore.snapshotId) argv.push("--snapshot", options.restore.snapshotId);
  }
  if (options.fencingToken !== undefined) argv.push("--fencing-token", String(options.fencingToken));
  return argv;
}

// Quotes one word for bash: anything inside single quotes is literal except ' itself.
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'"'"'`)}'`;
}

export interface UserDataOptions {
  env?: Record<string, string>;
  // Power the instance off when the agent exits, so a finished or crashed agent never
  // leaves an instance running (EC2 launches use shutdown behaviour "terminate").
  // Default true.
  shutdownOnExit?: boolean;
  // Default /var/log/snapctl-agent.log.
  logFile?: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

// The bash script an instance runs at boot (EC2 user data, before base64).
export function userDataScript(command: string[], options: UserDataOptions = {}): string {
  const log = options.logFile ?? "/var/log/snapctl-agent.log";
  const lines = [
    "#!/bin/bash",
    "# Started by the snapctl controller: runs the task's agent.",
    "set -uo pipefail",
  ];
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (!ENV_NAME.test(name))
      throw new TypeError(`Invalid environment variable name ${JSON.stringify(name)} for user data`);
    lines.push(`export ${name}=${shellQuote(value)}`);
  }
  lines.push(`${command.map(shellQuote).join(" ")} >>${shellQuote(log)} 2>&1`);
  if (options.shutdownOnExit ?? true) {
    lines.push(
      "status=$?",
      `echo "snapctl agent exited with status $status" >>${shellQuote(log)}`,
      "shutdown -h now",
    );
  }
  return `${lines.join("\n")}\n`;
}
