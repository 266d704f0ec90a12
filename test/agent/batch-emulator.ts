// A stand-in for AWS Batch running a job with spot retries, for the agent's scheduler mode
// (Batch itself cannot run here: this harness does what it does to a job's container).
// Each attempt runs the same `snapctl agent run` command on a fresh local "instance": its
// own IMDS emulator, $SNAPCTL_HOME and (wiped) cache dir, no controller and no Redis. A
// reclaim is a spot notice on that instance's IMDS and, at its deadline, SIGKILL of
// everything the attempt started, its mount detached and its disk wiped; Batch then
// reports "Host EC2 (instance <id>) terminated." The retry strategy is the one
// docs/exit-codes.md gives: RETRY on that status reason and on the agent's exit codes
// 175, 176, 178 and 179, EXIT otherwise, at most `attempts` attempts.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { sendControlRequest } from "../../agent/index.js";
import { ImdsEmulator } from "../../cloud/index.js";
import { nodeEntry, repoRoot } from "../../common/entry.js";
import { killTree } from "../../common/process-tree.js";
import { RETRYABLE_EXIT_CODES, taskIdFromWorkDir } from "../../protocol/index.js";
import type { AgentFixture } from "./agent-fixture.js";

export interface AttemptPlan {
  // Runs before the attempt starts (e.g. damages the snapshot it will find).
  before?: () => Promise<void>;
  // Once the task runs: a spot notice this many seconds ahead of the reclaim.
  reclaimAfterStart?: { noticeSeconds: number; afterMs?: number };
}

export interface AttemptRecord {
  attempt: number;
  instanceId: string;
  // The container's exit code; null when it was killed with its instance.
  exitCode: number | null;
  statusReason: string;
  // The agent's --json outcome line, when it printed one.
  outcome?: {
    exitCode: number;
    outcome: string;
    restored?: { generation: number };
    error?: { code: string };
  };
}

export interface JobOptions {
  workDir: string;
  command: string[];
  // Agent flags the job definition adds (the same for every attempt).
  agentArgs?: string[];
  attempts?: number;
  // What happens to each attempt (by index; none: it just runs).
  plan?: AttemptPlan[];
}

export class BatchEmulator {
  private attemptsStarted = 0;

  constructor(private readonly f: AgentFixture) {}

  get mountpoint(): string {
    return join(this.f.dir, "batch-mnt");
  }

  // Runs the job until an attempt ends with a code the retry strategy does not retry.
  async runJob(options: JobOptions): Promise<AttemptRecord[]> {
    const records: AttemptRecord[] = [];
    const jobDir = join(this.f.dir, `job-${taskIdFromWorkDir(options.workDir)}`);
    for (let i = 0; i < (options.attempts ?? 4); i++) {
      await options.plan?.[i]?.before?.();
      const record = await this.attempt(options, i, jobDir);
      records.push(record);
      const retry = record.exitCode === null || RETRYABLE_EXIT_CODES.includes(record.exitCode);
      if (!retry) break;
    }
    return records;
  }

  private async attempt(options: JobOptions, index: number, jobDir: string): Promise<AttemptRecord> {
    this.attemptsStarted += 1;
    const instanceId = `i-batch${String(this.attemptsStarted).padStart(4, "0")}`;
    const imds = new ImdsEmulator({ instanceId });
    await imds.start();
    const instanceDir = join(jobDir, `attempt-${index + 1}`);
    const home = join(instanceDir, "home");
    const cacheDir = join(jobDir, "cache");
    await rm(cacheDir, { recursive: true, force: true });
    await mkdir(home, { recursive: true });
    const { command, args } = nodeEntry("cli/snapctl");
    const argv = [
      ...args,
      "agent",
      "run",
      "--workdir",
      options.workDir,
      "--mountpoint",
      this.mountpoint,
      "--cache-dir",
      cacheDir,
      "--imds-poll-interval",
      "200ms",
      "--json",
      ...(options.agentArgs ?? []),
      "--",
      ...options.command,
    ];
    const env: Record<string, string | undefined> = {
      ...process.env,
      ...this.f.env(),
      SNAPCTL_HOME: home,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
    };
    // A scheduler's container: no controller, so no Redis.
    delete env.SNAPCTL_REDIS_URL;
    const log = await open(join(instanceDir, "agent.stderr"), "a");
    const child = spawn(command, argv, {
      cwd: repoRoot,
      env,
      detached: true,
      stdio: ["ignore", "pipe", log.fd],
    });
    let stdout = "";
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString("utf8");
    });
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    let reclaimed = false;
    imds.on("deadline", () => {
      reclaimed = true;
      void killTree(child.pid as number);
    });
    const reclaim = options.plan?.[index]?.reclaimAfterStart;
    const taskId = taskIdFromWorkDir(options.workDir);
    if (reclaim) {
      void this.whenRunning(taskId, home, exited).then(async (running) => {
        if (!running) return;
        await new Promise((r) => setTimeout(r, reclaim.afterMs ?? 0));
        if (child.exitCode === null) imds.scheduleInterruption({ in: reclaim.noticeSeconds });
      });
    }
    const [code] = await exited;
    await log.close();
    await imds.stop();
    // What the reclaimed instance left: its mount (detached as the machine goes) and disk.
    const mounts = await readFile("/proc/self/mounts", "utf8");
    if (mounts.includes(` ${this.mountpoint} `))
      await execa("fusermount", ["-u", "-z", this.mountpoint], { reject: false });
    await rm(cacheDir, { recursive: true, force: true });
    const line = stdout.trim().split("\n").at(-1);
    return {
      attempt: index + 1,
      instanceId,
      exitCode: reclaimed ? null : code,
      statusReason: reclaimed
        ? `Host EC2 (instance ${instanceId}) terminated.`
        : `Essential container in task exited`,
      ...(line?.startsWith("{") ? { outcome: JSON.parse(line) } : {}),
    };
  }

  // Resolves true once the agent says its task runs, false if the agent ends first.
  private async whenRunning(taskId: string, home: string, exited: Promise<unknown>): Promise<boolean> {
    let ended = false;
    void exited.then(() => {
      ended = true;
    });
    while (!ended) {
      const status = await sendControlRequest(taskId, { command: "status" }, { home }).catch(() => undefined);
      if (status?.state === "running") return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }
}
