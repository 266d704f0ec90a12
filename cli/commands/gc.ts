import type { Command } from "commander";
import { formatBytes, isFinal, listGenerations, openTaskSnapshots } from "../../controller/index.js";
import { createS3Client } from "../../driver/index.js";
import { taskWorkDir } from "../../protocol/index.js";
import { clientFromEnv, printJson } from "./run.js";

interface GcEntry {
  id: string;
  state: string;
  workDir: string;
  generations: number[];
  bytes: number;
}

// `snapctl gc [--delete]`: the snapshots of finished tasks. Shows what it would delete;
// deletes only with --delete (each generation's manifest, then the chunks no manifest
// of the work dir references any more, past store/'s grace period).
export function registerGc(program: Command): void {
  program
    .command("gc")
    .description("Delete the snapshots of finished tasks (shows what it would delete unless --delete)")
    .option("--delete", "delete for real")
    .option("--json", "print the plan or result as JSON")
    .action(async (flags: { delete?: boolean; json?: boolean }) => {
      const client = await clientFromEnv();
      const entries: GcEntry[] = [];
      let chunksDeleted = 0;
      let bytesFreed = 0;
      try {
        for (let offset = 0; ; offset += 100) {
          const tasks = await client.registry.listTasks({ offset, limit: 100 });
          for (const task of tasks) {
            if (!isFinal(task.state)) continue;
            const env = await client.environment(task.id).catch(() => undefined);
            if (!env) continue;
            const s3 = createS3Client({ region: env.region });
            const snapshots = openTaskSnapshots(s3, taskWorkDir(env.workDir, task.id), task.id);
            try {
              const generations = await listGenerations(snapshots.repository);
              if (generations.length === 0) continue;
              entries.push({
                id: task.id,
                state: task.state,
                workDir: taskWorkDir(env.workDir, task.id),
                generations: generations.map((g) => g.generation),
                bytes: generations.reduce((n, g) => n + g.uploadedBytes, 0),
              });
              if (!flags.delete) continue;
              // Keep one generation for the sweep's reference, then drop it too.
              const report = await snapshots.repository.gc({ keep: 1 });
              chunksDeleted += report.chunksDeleted;
              bytesFreed += report.bytesFreed;
              for (const g of report.keptGenerations) await snapshots.repository.deleteGeneration(g);
            } finally {
              await snapshots.close();
              s3.destroy();
            }
          }
          if (tasks.length < 100) break;
        }
        if (flags.json) {
          printJson({ deleted: Boolean(flags.delete), tasks: entries, chunksDeleted, bytesFreed });
          return;
        }
        if (entries.length === 0) {
          process.stdout.write("no snapshots of finished tasks\n");
          return;
        }
        for (const e of entries) {
          process.stdout.write(
            `${flags.delete ? "deleted" : "would delete"} ${e.id} (${e.state}): generations ${e.generations.join(", ")} (${formatBytes(e.bytes)} uploaded)\n`,
          );
        }
        if (flags.delete)
          process.stdout.write(`${chunksDeleted} chunks deleted, ${formatBytes(bytesFreed)} freed\n`);
        else process.stdout.write("run with --delete to delete them\n");
      } finally {
        await client.close();
      }
    });
}
