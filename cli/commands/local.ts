import type { Command } from "commander";
import {
  localCloudEnv,
  readDaemonState,
  startLocalCloudDaemon,
  stopLocalCloudDaemon,
} from "../../cloud/index.js";

// `snapctl local up|down|status|env`: the embedded local cloud as a background service.
export function registerLocal(program: Command): void {
  const local = program
    .command("local")
    .description("Run the embedded local cloud (S3, Redis, IMDS) on loopback");

  local
    .command("up")
    .description("Start the local cloud in the background (or show the running one)")
    .option("--json", "print the endpoints as JSON")
    .action(async (options: { json?: boolean }) => {
      const { state, started } = await startLocalCloudDaemon();
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ ...state.endpoints, pid: state.pid, started })}\n`);
        return;
      }
      const e = state.endpoints;
      process.stdout.write(
        [
          `local cloud ${started ? "started" : "already running"} (pid ${state.pid}, data in ${e.directory})`,
          `  S3    ${e.s3}  buckets: ${e.buckets.join(", ")}`,
          `  Redis ${e.redis}`,
          `  IMDS  ${e.imds}`,
          'point a shell at it with: eval "$(snapctl local env)"',
          "",
        ].join("\n"),
      );
    });

  local
    .command("down")
    .description("Stop the local cloud")
    .option("--json", "print the result as JSON")
    .action(async (options: { json?: boolean }) => {
      const stopped = await stopLocalCloudDaemon();
      if (options.json)
        process.stdout.write(`${JSON.stringify({ stopped: Boolean(stopped), pid: stopped?.pid })}\n`);
      else
        process.stdout.write(
          stopped ? `local cloud stopped (pid ${stopped.pid})\n` : "no local cloud was running\n",
        );
    });

  local
    .command("status")
    .description("Show whether the local cloud runs, and its endpoints")
    .option("--json", "print as JSON")
    .action(async (options: { json?: boolean }) => {
      const state = await readDaemonState();
      if (options.json) process.stdout.write(`${JSON.stringify(state ?? null)}\n`);
      else
        process.stdout.write(
          state ? `running (pid ${state.pid}): ${JSON.stringify(state.endpoints)}\n` : "not running\n",
        );
      if (!state) process.exitCode = 1;
    });

  local
    .command("env")
    .description("Print shell exports that point AWS SDKs and snapctl at the running local cloud")
    .action(async () => {
      const state = await readDaemonState();
      if (!state) {
        process.stderr.write("snapctl: no local cloud is running; start one with: snapctl local up\n");
        process.exitCode = 1;
        return;
      }
      for (const [k, v] of Object.entries(localCloudEnv(state.endpoints)))
        process.stdout.write(`export ${k}=${v}\n`);
    });
}
