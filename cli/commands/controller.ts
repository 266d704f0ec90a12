import { join } from "node:path";
import type { Command } from "commander";
import { snapctlHome } from "../../common/home.js";
import { createLogger } from "../../common/log.js";
import { ControllerService, parseDuration, ServiceError } from "../../controller/index.js";
import { applyLocalCloudEnv } from "../environment.js";

// `snapctl controller`: the controller service in the foreground until SIGINT/SIGTERM.
// Local-provider instances are its child processes: they end with it.
export function registerController(program: Command): void {
  program
    .command("controller")
    .description(
      "Run the controller service (consumes agent events, recovers and launches tasks) in the foreground",
    )
    .option("--state-dir <dir>", "local instances and agent files (default: $SNAPCTL_HOME/controller)")
    .option("--lease-ttl <duration>", "restore lease TTL, longer than a launch takes", "5m")
    .option("--sweep-interval <duration>", "how often every unfinished task is reconciled", "5s")
    .action(async (flags: { stateDir?: string; leaseTtl: string; sweepInterval: string }) => {
      await applyLocalCloudEnv();
      const redisUrl = process.env.SNAPCTL_REDIS_URL;
      if (!redisUrl) {
        throw new ServiceError(
          "CONTROLLER_NOT_RUNNING",
          "No Redis configured: set SNAPCTL_REDIS_URL, or start the local cloud with: snapctl local up",
        );
      }
      const logger = createLogger("snapctl-controller");
      const agentEnv: Record<string, string> = {};
      for (const key of Object.keys(process.env)) {
        if (key.startsWith("AWS_") || key.startsWith("SNAPCTL_")) agentEnv[key] = process.env[key] as string;
      }
      const service = new ControllerService({
        redisUrl,
        prefix: process.env.SNAPCTL_PREFIX,
        stateDir: flags.stateDir ?? join(snapctlHome(), "controller"),
        leaseTtlMs: parseDuration(flags.leaseTtl),
        sweepIntervalMs: parseDuration(flags.sweepInterval),
        local: { env: agentEnv },
        logger,
      });
      await service.ready();
      process.stderr.write(`controller ${service.owner} running; stop with Ctrl-C\n`);
      const signal = await new Promise<string>((resolve) => {
        process.once("SIGINT", () => resolve("SIGINT"));
        process.once("SIGTERM", () => resolve("SIGTERM"));
      });
      logger.info({ signal }, "stopping");
      await service.close();
    });
}
