import type { Command } from "commander";
import { runDemo } from "../../controller/index.js";
import { ExitCode } from "../../protocol/index.js";
import { positiveInt, printJson } from "./run.js";

// `snapctl demo`: checkpoint/restore of a real task across a spot interruption, on the
// embedded local cloud (its own S3, Redis, controller and local instances; nothing to set up).
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "Run a real task on a local spot instance, interrupt it, restore it elsewhere, check its result",
    )
    .option("--steps <n>", "work units of the task (about 1 s each)", positiveInt, 150)
    .option("--checkpoint-interval <duration>", "periodic checkpoint interval (at least 10s)", "30s")
    .option("--notice <seconds>", "seconds between the interruption notice and the reclaim", positiveInt, 30)
    .option("--json", "print the summary as JSON (progress still on stderr)")
    .action(async (flags: { steps: number; checkpointInterval: string; notice: number; json?: boolean }) => {
      const result = await runDemo({
        steps: flags.steps,
        checkpointInterval: flags.checkpointInterval,
        noticeSeconds: flags.notice,
        onProgress: (line) => (flags.json ? process.stderr : process.stdout).write(`${line}\n`),
      });
      if (flags.json) {
        const { task: _task, ...summary } = result;
        printJson(summary);
      }
      process.exitCode = result.correct && result.restored ? ExitCode.ok : ExitCode.failure;
    });
}
