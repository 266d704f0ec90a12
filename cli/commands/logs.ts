import type { Command } from "commander";
import { isFinal } from "../../controller/index.js";
import { createS3Client } from "../../driver/index.js";
import { taskWorkDir } from "../../protocol/index.js";
import { applyLocalCloudEnv } from "../environment.js";
import { agentLogs, copyTaskOutput } from "../logs/task-output.js";
import { clientFromEnv } from "./run.js";

interface LogsFlags {
  follow?: boolean;
  stderr?: boolean;
  agent?: boolean;
}

// `snapctl logs <task | s3://workdir> [--follow] [--stderr] [--agent]`: a task's output from
// its work dir in S3, wherever it ran; a work dir URL works without a controller (tasks a
// scheduler runs under the agent).
export function registerLogs(program: Command): void {
  program
    .command("logs")
    .description("Print a task's output (.command.out) from its work dir in S3, following it with --follow")
    .argument("<task>", "task id, or the task's work dir as s3://bucket/prefix")
    .option("-f, --follow", "keep printing what the task writes until it ends (across restores)")
    .option("--stderr", "print .command.err instead of .command.out")
    .option("--agent", "print the agent's own log of every attempt (.snapctl/logs/)")
    .action(async (target: string, flags: LogsFlags) => {
      await applyLocalCloudEnv();
      let workDir = target;
      let done: (() => Promise<boolean>) | undefined;
      const controller = target.startsWith("s3://") ? undefined : await clientFromEnv();
      try {
        if (controller) {
          await controller.registry.requireTask(target);
          const env = await controller.environment(target);
          workDir = taskWorkDir(env.workDir, target);
          done = async () => isFinal((await controller.registry.requireTask(target)).state);
        }
        const s3 = createS3Client();
        try {
          if (flags.agent) {
            for (const [attempt, text] of await agentLogs(s3, workDir)) {
              process.stdout.write(`==> ${attempt} <==\n${text}${text.endsWith("\n") || !text ? "" : "\n"}`);
            }
            return;
          }
          const stop = new AbortController();
          const onSignal = () => stop.abort();
          process.once("SIGINT", onSignal);
          try {
            await copyTaskOutput(s3, workDir, (chunk) => process.stdout.write(chunk), {
              stream: flags.stderr ? "stderr" : "stdout",
              follow: flags.follow === true,
              ...(done ? { done } : {}),
              onRewind: (from, to) =>
                process.stderr.write(
                  `snapctl logs: the task was restored from a checkpoint: its output went back from ${from} to ${to} bytes and continues from there\n`,
                ),
              signal: stop.signal,
            });
          } finally {
            process.off("SIGINT", onSignal);
          }
        } finally {
          s3.destroy();
        }
      } finally {
        await controller?.close();
      }
    });
}
