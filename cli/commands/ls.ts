import type { Command } from "commander";
import { formatTaskTable, summarizeTask } from "../../controller/index.js";
import { clientFromEnv, positiveInt, printJson } from "./run.js";

// `snapctl ls`: every task, oldest first.
export function registerLs(program: Command): void {
  program
    .command("ls")
    .description("List tasks: state, attempts, interruptions survived, snapshots, bytes stored, time saved")
    .option("--limit <n>", "at most this many tasks", positiveInt, 100)
    .option("--offset <n>", "skip this many tasks", positiveInt, 0)
    .option("--json", "print a JSON array of task summaries")
    .action(async (flags: { limit: number; offset: number; json?: boolean }) => {
      const client = await clientFromEnv();
      try {
        const tasks = await client.registry.listTasks({ limit: flags.limit, offset: flags.offset });
        if (flags.json) printJson(tasks.map(summarizeTask));
        else process.stdout.write(tasks.length === 0 ? "no tasks\n" : formatTaskTable(tasks));
      } finally {
        await client.close();
      }
    });
}
