import type { Command } from "commander";
import { formatTaskStatus, summarizeTask } from "../../controller/index.js";
import { clientFromEnv, printJson } from "./run.js";

// `snapctl status <task>`: one task in detail, with its transitions (--transitions).
export function registerStatus(program: Command): void {
  program
    .command("status")
    .description("Show a task: state, attempts, interruptions survived, snapshots, bytes stored, time saved")
    .argument("<task>", "task id")
    .option("--transitions", "also list every state transition with its time")
    .option("--json", "print the task summary (and transitions) as JSON")
    .action(async (taskId: string, flags: { transitions?: boolean; json?: boolean }) => {
      const client = await clientFromEnv();
      try {
        const task = await client.registry.requireTask(taskId);
        const transitions = flags.transitions ? await client.registry.transitions(taskId) : undefined;
        if (flags.json) {
          printJson({ ...summarizeTask(task), exitCode: task.exitCode, error: task.error, transitions });
          return;
        }
        process.stdout.write(formatTaskStatus(task));
        for (const t of transitions ?? []) {
          process.stdout.write(
            `  ${new Date(t.at).toISOString()}  ${t.from ?? "-"} -> ${t.to}  ${t.reason}\n`,
          );
        }
      } finally {
        await client.close();
      }
    });
}
