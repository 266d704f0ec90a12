import type { Command } from "commander";
import { formatBytes, formatMs, listGenerations, openTaskSnapshots } from "../../controller/index.js";
import { createS3Client } from "../../driver/index.js";
import { taskWorkDir } from "../../protocol/index.js";
import { clientFromEnv, printJson } from "./run.js";

// `snapctl inspect <task>`: the task's committed snapshot generations, from their manifests.
export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("Show a task's snapshot generations: sizes, modes, timings (from the manifests in S3)")
    .argument("<task>", "task id")
    .option("--json", "print the generations as JSON")
    .action(async (taskId: string, flags: { json?: boolean }) => {
      const client = await clientFromEnv();
      try {
        const task = await client.registry.requireTask(taskId);
        const env = await client.environment(taskId);
        const s3 = createS3Client({ region: env.region });
        const snapshots = openTaskSnapshots(s3, taskWorkDir(env.workDir, taskId), taskId);
        try {
          const generations = await listGenerations(snapshots.repository);
          if (flags.json) {
            printJson({ id: task.id, workDir: taskWorkDir(env.workDir, taskId), generations });
            return;
          }
          process.stdout.write(
            `task ${task.id}: ${generations.length} committed generation(s) in ${taskWorkDir(env.workDir, taskId)}\n`,
          );
          for (const g of generations) {
            process.stdout.write(
              `  gen ${g.generation}${g.parentGeneration ? ` (parent ${g.parentGeneration})` : ""}  ${g.createdAt}  ${g.mode}  ${g.arch}  ` +
                `images ${formatBytes(g.logicalBytes)}, uploaded ${formatBytes(g.uploadedBytes)}, deduplicated ${formatBytes(g.deduplicatedBytes)}  ` +
                `freeze ${formatMs(g.freezeMs)}, dump ${formatMs(g.dumpMs)}, upload ${formatMs(g.uploadMs)}, total ${formatMs(g.totalMs)}\n`,
            );
          }
        } finally {
          await snapshots.close();
          s3.destroy();
        }
      } finally {
        await client.close();
      }
    });
}
