import type { Command } from "commander";
import { clientFromEnv, positiveInt, printJson } from "./run.js";

// `snapctl interrupt <task> [--in <seconds>]`: a spot interruption notice on the task's
// current local instance, answered by the running controller.
export function registerInterrupt(program: Command): void {
  program
    .command("interrupt")
    .description("Schedule a spot interruption on the local instance running a task (local provider)")
    .argument("<task>", "task id")
    .option("--in <seconds>", "seconds from now until the instance is reclaimed", positiveInt, 120)
    .option("--json", "print the result as JSON")
    .action(async (taskId: string, flags: { in: number; json?: boolean }) => {
      const client = await clientFromEnv();
      try {
        const result = await client.interrupt(taskId, flags.in);
        if (flags.json) printJson(result);
        else
          process.stdout.write(
            `task ${taskId}: instance ${result.instanceId} will be reclaimed at ${new Date(result.deadline).toISOString()}\n`,
          );
      } finally {
        await client.close();
      }
    });
}
