import type { Command } from "commander";
import { clientFromEnv, positiveInt, printJson } from "./run.js";

// `snapctl restore <task> [--generation n] [--compute-env file]`: manual restore of an
// interrupted or failed task on a new instance (launched by the running controller).
export function registerRestore(program: Command): void {
  program
    .command("restore")
    .description("Restore an interrupted or failed task from its snapshot on a new instance")
    .argument("<task>", "task id")
    .option("--generation <n>", "snapshot generation to restore (default: the newest usable)", positiveInt)
    .option("--compute-env <file>", "compute environment to restore in (default: the task's)")
    .option("--json", "print the task as JSON")
    .action(async (taskId: string, flags: { generation?: number; computeEnv?: string; json?: boolean }) => {
      const client = await clientFromEnv();
      try {
        const task = await client.restore(taskId, {
          generation: flags.generation,
          computeEnvFile: flags.computeEnv,
        });
        if (flags.json) printJson({ id: task.id, state: task.state, reason: task.reason });
        else process.stdout.write(`task ${taskId}: ${task.state} (${task.reason})\n`);
      } finally {
        await client.close();
      }
    });
}
