import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { type AgentOptions, type OnCheckpointed, type RestoreMode, runAgent } from "../../agent/index.js";
import { createLogger } from "../../common/log.js";
import type { ComputeEnvironment } from "../../controller/index.js";

interface AgentRunFlags {
  task?: string;
  workdir: string;
  computeEnv?: string;
  mountpoint: string;
  cacheDir?: string;
  restore?: boolean | string;
  onCheckpointed?: string;
  reclaimGrace?: string;
  snapshot?: number;
  fencingToken?: number;
  checkpointInterval?: number;
  checkpoints: boolean;
  noticeWindow?: number;
  imdsPollInterval?: number;
  keepGenerations?: number;
  redisUrl?: string;
  instanceId?: string;
  json?: boolean;
}

// "90s", "5m", "250ms" -> ms, through the compute environment's own duration syntax.
async function duration(text: string): Promise<number> {
  const { parseDuration } = await import("../../controller/index.js");
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0)
    throw new InvalidArgumentError(`"${text}" is not a duration such as 20s, 5m or 250ms`);
  return ms;
}

function wholeNumber(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`"${text}" is not a whole number`);
  return n;
}

// commander parses synchronously: durations are kept as text and parsed in the action.
const keep = (text: string) => text;

// --restore [mode] / --no-restore -> the agent's restore mode.
function restoreMode(value: boolean | string | undefined): RestoreMode | undefined {
  if (value === undefined) return undefined;
  if (value === true) return "required";
  if (value === false) return "never";
  if (value === "auto" || value === "required" || value === "never") return value;
  throw new InvalidArgumentError(`--restore "${value}" is not one of auto, required (or --no-restore)`);
}

function onCheckpointed(value: string): OnCheckpointed {
  if (value === "exit" || value === "wait") return value;
  throw new InvalidArgumentError(`--on-checkpointed "${value}" is not one of exit, wait`);
}

// `snapctl agent run ... -- <command...>`: the in-container agent (docs/agent.md). Its exit
// code says how the task ended (docs/exit-codes.md): the task's own code, 175 "final
// checkpoint failed", 176 "restore failed", 178 "checkpointed, restore me", 179
// "interrupted, not checkpointed".
export function registerAgent(program: Command): void {
  const agent = program
    .command("agent")
    .description("The in-container agent that runs, checkpoints and restores a task");
  agent
    .command("run")
    .description(
      "Mount Fusion, restore the task from its newest snapshot or start it, checkpoint it until it ends",
    )
    .requiredOption("--workdir <s3url>", "the task's work dir, s3://bucket/prefix (its identity)")
    .option("--task <id>", "task id (default: derived from the work dir)")
    .option("--compute-env <file>", "compute environment file (snapshots and agent settings)")
    .option("--mountpoint <dir>", "where to mount Fusion (the same path on every machine)", "/fusion")
    .option("--cache-dir <dir>", "Fusion block cache directory (default: a temporary directory)")
    .option(
      "--restore [mode]",
      "auto: restore the newest usable snapshot if any, else start (the default); required (or no value): exit 176 without one",
    )
    .option("--no-restore", "never restore: start the command fresh (a re-run)")
    .option("--snapshot <generation>", "restore this snapshot generation", wholeNumber)
    .option(
      "--on-checkpointed <exit|wait>",
      "after a committed final checkpoint: wait for the reclaim (default) or exit 178 at once",
      onCheckpointed,
    )
    .option(
      "--reclaim-grace <duration>",
      "how long past the reclaim deadline to wait before exiting 178 (default 60s)",
      keep,
    )
    .option("--fencing-token <n>", "restore lease token of this launch (sent with every event)", wholeNumber)
    .option(
      "--checkpoint-interval <duration>",
      "periodic checkpoint interval (default: compute env, else 5m)",
      keep,
    )
    .option("--no-checkpoints", "no periodic checkpoints (a notice or SIGTERM still checkpoints)")
    .option(
      "--notice-window <duration>",
      "time between a spot notice and the reclaim (tests shorten it)",
      keep,
    )
    .option("--imds-poll-interval <duration>", "IMDS poll interval (default: compute env, else 2s)", keep)
    .option(
      "--keep-generations <n>",
      "snapshot generations to keep (default: compute env, else 2)",
      wholeNumber,
    )
    .option("--redis-url <url>", "controller's Redis (default: $SNAPCTL_REDIS_URL; none: events stay local)")
    .option("--instance-id <id>", "instance id for events (default: $SNAPCTL_INSTANCE_ID, else from IMDS)")
    .option("--json", "print the outcome as one JSON line on stdout")
    .argument("[command...]", "the task's command (after --); not needed to restore")
    .action(async (command: string[], flags: AgentRunFlags & Record<string, unknown>) => {
      // The agent's log also goes to a private local file, which the agent uploads to the
      // task's work dir (.snapctl/logs/) before it exits: the instance's disk may be gone.
      const logDir = await mkdtemp(join(tmpdir(), "snapctl-agent-log-"));
      const logFile = join(logDir, "agent.log");
      const logger = createLogger("snapctl-agent", undefined, { copyTo: logFile });
      try {
        let env: ComputeEnvironment | undefined;
        if (flags.computeEnv) {
          const { loadComputeEnvironment } = await import("../../controller/index.js");
          env = await loadComputeEnvironment(flags.computeEnv);
        }
        const interval = flags.checkpointInterval as unknown as string | undefined;
        const window = flags.noticeWindow as unknown as string | undefined;
        const poll = flags.imdsPollInterval as unknown as string | undefined;
        const { criuEngineBinding } = await import("../../agent/index.js");
        const options: AgentOptions = {
          ...(flags.task ? { taskId: flags.task } : {}),
          workDir: flags.workdir,
          command,
          engine: criuEngineBinding({
            ...(env
              ? { compressionLevel: env.snapshots.compressionLevel, tcpMode: env.snapshots.tcpMode }
              : {}),
          }),
          mountpoint: flags.mountpoint,
          cacheDir: flags.cacheDir,
          restore: restoreMode(flags.restore),
          ...(flags.onCheckpointed ? { onCheckpointed: flags.onCheckpointed as OnCheckpointed } : {}),
          ...(flags.reclaimGrace ? { reclaimGraceMs: await duration(flags.reclaimGrace) } : {}),
          generation: flags.snapshot,
          fencingToken: flags.fencingToken,
          checkpoints: flags.checkpoints,
          // snapshots.enabled: false in the compute environment: no checkpoint at all.
          ...(env ? { snapshots: env.snapshots.enabled } : {}),
          checkpointIntervalMs: interval ? await duration(interval) : env?.snapshots.intervalMs,
          noticeWindowMs: window ? await duration(window) : (env?.agent.noticeWindowMs ?? null),
          imdsPollIntervalMs: poll ? await duration(poll) : env?.agent.imdsPollIntervalMs,
          keepGenerations: flags.keepGenerations ?? env?.agent.keepGenerations,
          redisUrl: flags.redisUrl ?? (process.env.SNAPCTL_REDIS_URL || undefined),
          instanceId: flags.instanceId ?? (process.env.SNAPCTL_INSTANCE_ID || undefined),
          logFile,
          logger,
        };
        const result = await runAgent(options);
        if (flags.json) {
          process.stdout.write(
            `${JSON.stringify({
              taskId: result.taskId,
              exitCode: result.exitCode,
              outcome: result.outcome,
              taskExit: result.taskExit,
              restored: result.restored,
              checkpoints: result.checkpoints,
              error: result.error ? { code: result.error.code, message: result.error.message } : undefined,
            })}\n`,
          );
        } else if (result.error) {
          process.stderr.write(`snapctl agent: ${result.error.message} [${result.error.code}]\n`);
        }
        process.exitCode = result.exitCode;
      } finally {
        await rm(logDir, { recursive: true, force: true });
      }
    });
}
