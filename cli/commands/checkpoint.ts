import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { requestCheckpoint } from "../../agent/index.js";

interface CheckpointFlags {
  timeout?: string;
  json?: boolean;
}

// `snapctl checkpoint <task>`: asks the agent running the task on this machine (through its
// Unix socket, $SNAPCTL_HOME/agents/<task>.sock; no Redis needed) for a checkpoint now, and
// waits for it to commit.
export function registerCheckpoint(program: Command): void {
  program
    .command("checkpoint")
    .description("Checkpoint a running task now (asks its agent on this machine)")
    .argument("<task>", "task id")
    .option("--timeout <duration>", "give up waiting after this long (default: wait)")
    .option("--json", "print the checkpoint's result as JSON")
    .action(async (task: string, flags: CheckpointFlags) => {
      let timeoutMs: number | undefined;
      if (flags.timeout) {
        const { parseDuration } = await import("../../controller/index.js");
        timeoutMs = parseDuration(flags.timeout);
        if (timeoutMs === undefined)
          throw new InvalidArgumentError(`"${flags.timeout}" is not a duration such as 30s or 5m`);
      }
      const result = await requestCheckpoint(task, { timeoutMs });
      if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else
        process.stdout.write(
          `task ${task}: generation ${result.generation} committed (${result.mode}, ${result.bytesUploaded} bytes uploaded, frozen ${Math.round(Number(result.freezeMs))} ms, ${Math.round(Number(result.totalMs))} ms in all)\n`,
        );
    });
}
