import { type Command, InvalidArgumentError } from "commander";
import { ControllerClient, ServiceError } from "../../controller/index.js";
import { ExitCode, taskWorkDir } from "../../protocol/index.js";
import { applyLocalCloudEnv } from "../environment.js";

// A client for the controller's Redis: $SNAPCTL_REDIS_URL, else the running local cloud's.
export async function clientFromEnv(options: { prefix?: string } = {}): Promise<ControllerClient> {
  await applyLocalCloudEnv();
  const redisUrl = process.env.SNAPCTL_REDIS_URL;
  if (!redisUrl) {
    throw new ServiceError(
      "CONTROLLER_NOT_RUNNING",
      "No controller Redis configured: set SNAPCTL_REDIS_URL, or start the local cloud with: snapctl local up",
    );
  }
  return new ControllerClient({ redisUrl, prefix: options.prefix ?? process.env.SNAPCTL_PREFIX });
}

export function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`"${text}" is not a whole number`);
  return n;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

interface RunFlags {
  computeEnv: string;
  name?: string;
  wait?: boolean;
  logs?: boolean;
  json?: boolean;
}

// `snapctl run --compute-env <file> [--name n] [--wait] -- <command...>`.
export function registerRun(program: Command): void {
  program
    .command("run")
    .description("Submit a task; prints its id (with --wait, follows it and exits with its exit code)")
    .requiredOption("--compute-env <file>", "compute environment file (YAML or JSON)")
    .option("--name <name>", "a name for the task (default: its id)")
    .option("--wait", "follow the task to the end and exit with its exit code")
    .option("--logs", "with --wait: print the task's output (.command.out) as it reaches S3")
    .option("--json", "print the task as JSON (with --wait: one line per state change)")
    .argument("<command...>", "the task's command line (after --)")
    .action(async (command: string[], flags: RunFlags) => {
      const client = await clientFromEnv();
      try {
        const task = await client.submit({ command, computeEnvFile: flags.computeEnv, name: flags.name });
        if (flags.json) printJson({ id: task.id, name: task.name, state: task.state });
        else process.stdout.write(`${task.id}\n`);
        if (!flags.wait) return;
        let ended = false;
        const output = flags.logs ? followOutput(client, task.id, () => ended) : undefined;
        const done = await client
          .wait(task.id, {
            onChange: (t) => {
              if (flags.json) printJson({ id: t.id, state: t.state, reason: t.reason, attempts: t.attempts });
              else process.stderr.write(`${t.id}: ${t.state}${t.reason ? ` (${t.reason})` : ""}\n`);
            },
          })
          .finally(() => {
            ended = true;
          });
        await output;
        process.exitCode = done.state === "succeeded" ? ExitCode.ok : done.exitCode || ExitCode.failure;
      } finally {
        await client.close();
      }
    });
}

// The task's output while `run --wait` follows it (stdout, as `snapctl logs -f` prints it);
// a failure to read it is said once and never changes the exit code.
async function followOutput(client: ControllerClient, taskId: string, ended: () => boolean): Promise<void> {
  const { copyTaskOutput } = await import("../logs/task-output.js");
  const { createS3Client } = await import("../../driver/index.js");
  const env = await client.environment(taskId);
  const s3 = createS3Client();
  try {
    await copyTaskOutput(s3, taskWorkDir(env.workDir, taskId), (chunk) => process.stdout.write(chunk), {
      stream: "stdout",
      follow: true,
      done: async () => ended(),
    });
  } catch (err) {
    process.stderr.write(`snapctl run: cannot read the task's output: ${(err as Error).message}\n`);
  } finally {
    s3.destroy();
  }
}
