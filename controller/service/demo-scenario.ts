import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { LocalCloud } from "../../cloud/index.js";
import { type Logger, silentLogger } from "../../common/log.js";
import { ExitCode } from "../../protocol/index.js";
import type { LocalInstanceExit } from "../providers/local-provider.js";
import type { TaskRecord } from "../registry/index.js";
import { ControllerClient } from "./controller-client.js";
import { ControllerService } from "./controller-service.js";
import { formatBytes, formatMs } from "./task-view.js";

export interface DemoOptions {
  // Work units of the task; each is `iterationsPerStep` steps of a Park-Miller generator
  // (about 1 s per 9 million here). Default 150 (a few minutes).
  steps?: number;
  iterationsPerStep?: number;
  // Periodic checkpoint interval (a compute environment duration, at least "10s"). Default "30s".
  checkpointInterval?: string;
  // Seconds between the interruption notice and the reclaim. Default 30 (120 on AWS).
  noticeSeconds?: number;
  // Progress lines; default none.
  onProgress?: (line: string) => void;
  logger?: Logger;
  signal?: AbortSignal;
}

export interface DemoResult {
  taskId: string;
  state: string;
  expected: number;
  result?: number;
  correct: boolean;
  // Whether the story happened: the task survived the interruption by a restore.
  restored: boolean;
  wallMs: number;
  computeMs: number;
  savedMs: number;
  // From the interruption to the task running again on the replacement.
  downtimeMs: number;
  snapshotsTaken: number;
  bytesStored: number;
  attempts: number;
  task: TaskRecord;
}

const MODULUS = 2147483647n;
const MULTIPLIER = 16807n;

// The generator's value after n steps from 1: 16807^n mod (2^31 - 1).
export function expectedResult(n: number): number {
  let result = 1n;
  let base = MULTIPLIER;
  let e = BigInt(n);
  while (e > 0n) {
    if (e & 1n) result = (result * base) % MODULUS;
    base = (base * base) % MODULUS;
    e >>= 1n;
  }
  return Number(result);
}

// The whole story on the embedded local cloud: a real compute task on a "spot instance",
// a checkpoint, an interruption, the old instance's end at its deadline, the restore on
// a new instance in another zone, and the task finishing with the correct result.
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const steps = options.steps ?? 150;
  const iterations = options.iterationsPerStep ?? 9_000_000;
  const notice = options.noticeSeconds ?? 30;
  const say = options.onProgress ?? (() => {});
  const started = Date.now();
  const clock = () => `[${formatMs(Date.now() - started).padStart(9)}]`;
  const dir = await mkdtemp(join(tmpdir(), "snapctl-demo-"));
  const cloud = await LocalCloud.start({ directory: join(dir, "cloud"), buckets: ["snapctl-demo"] });
  let service: ControllerService | undefined;
  let client: ControllerClient | undefined;
  const ended = new Set<string>();
  try {
    say(`${clock()} local cloud up: S3 ${cloud.s3.endpoint}, Redis ${cloud.redis.url}`);
    const agentEnv = cloud.env();
    delete agentEnv.AWS_EC2_METADATA_SERVICE_ENDPOINT;
    const envFile = join(dir, "compute-env.yaml");
    await writeFile(
      envFile,
      [
        "name: demo",
        "provider: local",
        "region: us-east-1",
        "workDir: s3://snapctl-demo/demo",
        "market: spot",
        "local:",
        "  zones: [local-1a, local-1b, local-1c]",
        "snapshots:",
        "  enabled: true",
        `  interval: ${options.checkpointInterval ?? "30s"}`,
        "  maxSpotAttempts: 3",
        "  onDemandAfter: 2",
        "agent:",
        "  imdsPollInterval: 500ms",
        "",
      ].join("\n"),
    );
    service = new ControllerService({
      redisUrl: cloud.redis.url,
      stateDir: join(dir, "controller"),
      sweepIntervalMs: 1000,
      local: { env: agentEnv },
      onInstanceExit: (exit: LocalInstanceExit) => {
        ended.add(exit.instanceId);
        const how = exit.reclaimed
          ? "killed (SIGKILL) at its interruption deadline, cache wiped"
          : `ended: agent exit ${exit.exitCode ?? exit.signal}${exit.exitCode === ExitCode.checkpointed ? " (checkpointed)" : ""}`;
        say(`${clock()} instance ${exit.instanceId} ${how}`);
      },
      logger: options.logger ?? silentLogger,
    });
    await service.ready();
    client = new ControllerClient({ redisUrl: cloud.redis.url });
    const program = `BEGIN { x = 1; for (s = 1; s <= ${steps}; s++) { for (i = 0; i < ${iterations}; i++) x = (x * 16807) % 2147483647; printf "step %d/%d x=%d\\n", s, ${steps}, x; fflush() } print "result", x }`;
    const task = await client.submit({ command: ["awk", program], computeEnvFile: envFile, name: "demo" });
    say(`${clock()} task ${task.id} submitted: ${steps} steps of ${iterations} generator iterations (awk)`);
    let interrupted = false;
    let seen = 0;
    const done = await client.wait(task.id, {
      pollMs: 500,
      signal: options.signal,
      onChange: (t) => {
        void (async () => {
          const log = await client?.registry.transitions(t.id).catch(() => []);
          for (const entry of (log ?? []).slice(seen)) {
            const where =
              entry.to === "running" && t.instanceId ? ` on ${t.instanceId} (${t.zone}, ${t.market})` : "";
            let reason = entry.reason;
            if (reason === "checkpoint-failed") {
              reason += `: ${(await client?.lastCheckpointError(t.id).catch(() => undefined)) ?? "?"}`;
            }
            say(`${clock()} ${entry.from ?? "-"} -> ${entry.to}${where}: ${reason}`);
          }
          seen = Math.max(seen, log?.length ?? 0);
        })();
        if (t.snapshotsTaken > 0 && !interrupted && t.attempts === 1 && t.state === "running") {
          interrupted = true;
          say(
            `${clock()} snapshot ${t.snapshotsTaken} committed (${formatBytes(t.bytesStored)} stored so far)`,
          );
          client
            ?.interrupt(t.id, notice)
            .then((r) =>
              say(
                `${clock()} spot interruption notice on ${r.instanceId}: reclaimed in ${notice} s (${new Date(r.deadline).toISOString()})`,
              ),
            )
            .catch((err) => say(`${clock()} could not interrupt: ${(err as Error).message}`));
        }
      },
    });
    // The agent uploads the task's output and cleans up after reporting the end: let it.
    for (let i = 0; i < 300 && done.instanceId && !ended.has(done.instanceId); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const output = await readOutput(agentEnv, task.id);
    const match = /^result (\d+)$/m.exec(output ?? "");
    const expected = expectedResult(steps * iterations);
    const result = match ? Number(match[1]) : undefined;
    const log = await client.registry.transitions(task.id);
    const downAt = log.find((e) => e.to === "interrupted")?.at;
    const backAt = log.find((e) => e.from === "restoring" && e.to === "running")?.at;
    const summary: DemoResult = {
      taskId: task.id,
      state: done.state,
      expected,
      result,
      correct: done.state === "succeeded" && result === expected,
      restored: done.restores > 0,
      wallMs: Date.now() - started,
      computeMs: done.computeMs,
      savedMs: done.savedMs,
      downtimeMs: downAt !== undefined && backAt !== undefined ? backAt - downAt : 0,
      snapshotsTaken: done.snapshotsTaken,
      bytesStored: done.bytesStored,
      attempts: done.attempts,
      task: done,
    };
    say(
      `${clock()} task ${done.state}; result ${result ?? "(none)"}, expected ${expected}: ${summary.correct ? "correct" : "WRONG"}`,
    );
    if (!summary.restored) {
      say(
        `${clock()} the task was not restored from a snapshot (${done.snapshotsTaken} committed; last checkpoint error: ${(await client.lastCheckpointError(task.id)) ?? "none"})`,
      );
    }
    say(
      `summary: ${done.attempts} instances, ${done.interruptions} interruption(s) survived by ${done.restores} restore(s), ${done.snapshotsTaken} snapshots (${formatBytes(done.bytesStored)} stored); ` +
        `re-running from scratch would have repeated ${formatMs(done.savedMs)} of compute; the restore cost ${formatMs(summary.downtimeMs)} from the interruption to running again`,
    );
    return summary;
  } finally {
    await client?.close().catch(() => {});
    await service?.close().catch(() => {});
    await cloud.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

// The task's stdout, as the agent keeps it in the task's work dir (.command.out).
async function readOutput(env: Record<string, string>, taskId: string): Promise<string | undefined> {
  const s3 = new S3Client({
    endpoint: env.AWS_ENDPOINT_URL_S3,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID as string,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY as string,
    },
  });
  try {
    const r = await s3.send(
      new GetObjectCommand({ Bucket: "snapctl-demo", Key: `demo/${taskId}/.command.out` }),
    );
    return await r.Body?.transformToString("utf8");
  } catch {
    return undefined;
  } finally {
    s3.destroy();
  }
}
