import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { arch as hostArch } from "node:os";
import { join } from "node:path";
import { ImdsEmulator, type ScheduleOptions } from "../../cloud/index.js";
import { nodeEntry } from "../../common/entry.js";
import { type Logger, silentLogger } from "../../common/log.js";
import { descendants } from "../../common/process-tree.js";
import { ProviderError } from "../errors.js";
import type { Arch } from "../registry/task-record.js";
import type { LocalProviderOptions } from "./local-provider-options.js";
import type {
  InstanceDescription,
  LaunchedInstance,
  LaunchRequest,
  Provider,
  ProviderCallOptions,
} from "./provider.js";

export interface LocalProviderConfig extends LocalProviderOptions {
  // Architecture every instance reports. Default: the host's.
  arch?: Arch;
  logger?: Logger;
}

// What the local provider knows about one of its instances.
export interface LocalInstance extends InstanceDescription {
  pid?: number;
  // <baseDir>/<instanceId>: cache/, agent.log, agent.pid.
  dir: string;
  // <baseDir>/mnt/<taskId>: the same for every instance of a task, since CRIU restores
  // open files by path (two instances of one task never run at once: the controller
  // waits for a reclaimed instance to end before launching its replacement).
  mountpoint: string;
  imdsEndpoint: string;
  // Set when the instance was killed at its interruption deadline.
  reclaimed: boolean;
}

// Emitted as "exit" when an instance's agent process ends, for whatever reason.
export interface LocalInstanceExit {
  instanceId: string;
  taskId?: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  // True when the provider killed it at its interruption deadline (as the cloud would).
  reclaimed: boolean;
}

interface Entry {
  info: LocalInstance;
  imds: ImdsEmulator;
  child?: ChildProcess;
  exited: Promise<void>;
  stopping?: Promise<void>;
}

// The local "cloud": an instance is an agent process on this machine in its own process
// group, with its own directory (cache, mount point, log) and its own IMDS emulator
// (instance id, zone). At an interruption's deadline the instance is killed (SIGKILL of
// its process group and descendants) and its cache wiped, as EC2 would reclaim it.
// Instances live as long as this object: close() terminates them all.
export class LocalProvider extends EventEmitter implements Provider {
  readonly kind = "local";
  private readonly options: LocalProviderConfig;
  private readonly logger: Logger;
  private readonly instances = new Map<string, Entry>();
  private nextZone = 0;
  private closed = false;

  constructor(options: LocalProviderConfig) {
    super();
    this.options = options;
    this.logger = options.logger ?? silentLogger;
  }

  get zones(): string[] {
    return this.options.zones ?? ["local-1a", "local-1b"];
  }

  // Zones are handed out in turn; the one to avoid is skipped when another exists.
  private pickZone(avoid?: string): string {
    const zones = this.zones;
    for (let i = 0; i < zones.length; i++) {
      const zone = zones[(this.nextZone + i) % zones.length] as string;
      if (zone !== avoid || zones.length === 1) {
        this.nextZone = (this.nextZone + i + 1) % zones.length;
        return zone;
      }
    }
    return zones[0] as string;
  }

  async launch(request: LaunchRequest): Promise<LaunchedInstance> {
    request.signal?.throwIfAborted();
    if (this.closed) throw new ProviderError("PROVIDER_LAUNCH_FAILED", "The local provider is closed");
    const arch = this.options.arch ?? (hostArch() === "arm64" ? "arm64" : "x86_64");
    if (request.arch !== arch) {
      throw new ProviderError(
        "PROVIDER_NO_MATCHING_INSTANCE_TYPE",
        `The local provider runs ${arch} instances only; task "${request.task.id}" needs ${request.arch}`,
      );
    }
    const instanceId = `i-local${randomBytes(5).toString("hex")}`;
    const zone = this.pickZone(request.zonePreference.avoid);
    const instanceType = this.options.instanceType ?? "m5.large";
    const dir = join(this.options.baseDir, instanceId);
    await mkdir(join(dir, "cache"), { recursive: true });
    const mountpoint = join(this.options.baseDir, "mnt", request.task.id);
    await mkdir(mountpoint, { recursive: true });
    const imds = new ImdsEmulator({ instanceId, instanceType, availabilityZone: zone });
    await imds.start();
    const info: LocalInstance = {
      instanceId,
      zone,
      instanceType,
      market: request.market,
      arch,
      state: "pending",
      taskId: request.task.id,
      attempt: request.attempt,
      dir,
      mountpoint,
      imdsEndpoint: imds.endpoint,
      reclaimed: false,
    };
    const entry: Entry = { info, imds, exited: Promise.resolve() };
    this.instances.set(instanceId, entry);
    imds.on("deadline", () => {
      info.reclaimed = true;
      this.logger.info({ instanceId, taskId: info.taskId }, "interruption deadline: reclaiming instance");
      this.stop(entry).catch((err) => this.logger.error({ err, instanceId }, "reclaim failed"));
    });
    try {
      await this.spawnAgent(entry, request);
    } catch (err) {
      await this.stop(entry);
      throw new ProviderError(
        "PROVIDER_LAUNCH_FAILED",
        `Cannot start the agent of local instance "${instanceId}" for task "${request.task.id}": ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.logger.info({ instanceId, zone, taskId: request.task.id, pid: info.pid }, "local instance launched");
    return { instanceId, zone, instanceType, market: request.market, arch };
  }

  // Starts `userDataCommand` (argv[0] "snapctl" runs our own CLI) with the instance's
  // directories added after "agent run", its IMDS endpoint and the configured environment.
  private async spawnAgent(entry: Entry, request: LaunchRequest): Promise<void> {
    const { info } = entry;
    const [program, ...rest] = request.userDataCommand;
    if (!program) throw new Error("empty agent command");
    let command = program;
    let args = rest;
    if (program === "snapctl") {
      const entryPoint = nodeEntry(this.options.agentEntry ?? "cli/snapctl");
      command = entryPoint.command;
      args = [...entryPoint.args, ...rest];
    }
    const runAt = args.findIndex((a, i) => a === "run" && args[i - 1] === "agent");
    if (runAt >= 0) {
      args = [
        ...args.slice(0, runAt + 1),
        "--mountpoint",
        info.mountpoint,
        "--cache-dir",
        join(info.dir, "cache"),
        ...args.slice(runAt + 1),
      ];
    }
    const log = await open(join(info.dir, "agent.log"), "a");
    try {
      const child = spawn(command, args, {
        cwd: info.dir,
        detached: true,
        stdio: ["ignore", log.fd, log.fd],
        env: {
          ...process.env,
          ...this.options.env,
          ...request.userDataEnv,
          AWS_EC2_METADATA_SERVICE_ENDPOINT: info.imdsEndpoint,
          SNAPCTL_INSTANCE_ID: info.instanceId,
        },
      });
      entry.child = child;
      entry.exited = once(child, "exit").then(
        () => undefined,
        () => undefined,
      );
      await Promise.race([once(child, "spawn"), once(child, "error").then(([err]) => Promise.reject(err))]);
      info.pid = child.pid;
      info.state = "running";
      await writeFile(join(info.dir, "agent.pid"), `${child.pid}\n`);
      child.on("exit", (code, signal) => {
        info.state = "terminated";
        const exit: LocalInstanceExit = {
          instanceId: info.instanceId,
          taskId: info.taskId,
          exitCode: code,
          signal,
          reclaimed: info.reclaimed,
        };
        this.stop(entry)
          .catch((err) => this.logger.error({ err, instanceId: info.instanceId }, "instance cleanup failed"))
          .finally(() => this.emit("exit", exit));
      });
    } finally {
      await log.close();
    }
  }

  // Schedules a spot interruption on the instance's IMDS (`snapctl interrupt`).
  scheduleInterruption(instanceId: string, options: ScheduleOptions = {}): { deadline: number } {
    const entry = this.instances.get(instanceId);
    if (!entry || entry.info.state === "terminated") {
      throw new ProviderError(
        "PROVIDER_DESCRIBE_FAILED",
        `Local instance "${instanceId}" does not exist or is terminated`,
      );
    }
    const interruption = entry.imds.scheduleInterruption(options);
    return { deadline: interruption.deadline };
  }

  async terminate(instanceId: string, _options: ProviderCallOptions = {}): Promise<void> {
    const entry = this.instances.get(instanceId);
    if (entry) await this.stop(entry);
  }

  async describe(instanceId: string): Promise<InstanceDescription | undefined> {
    const entry = this.instances.get(instanceId);
    return entry ? { ...entry.info } : undefined;
  }

  instance(instanceId: string): LocalInstance | undefined {
    const entry = this.instances.get(instanceId);
    return entry ? { ...entry.info } : undefined;
  }

  async findTaskInstances(taskId: string): Promise<InstanceDescription[]> {
    return [...this.instances.values()]
      .filter((e) => e.info.taskId === taskId && e.info.state !== "terminated")
      .map((e) => ({ ...e.info }));
  }

  // Whether the instance's agent still runs, including an instance another provider
  // (another controller process) started under the same baseDir: from its agent.pid file.
  async isRunning(instanceId: string): Promise<boolean> {
    const entry = this.instances.get(instanceId);
    if (entry) return entry.info.state !== "terminated";
    const pid = Number(
      await readFile(join(this.options.baseDir, instanceId, "agent.pid"), "utf8").catch(() => ""),
    );
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  // Every instance launched so far (terminated ones included), oldest first.
  list(): LocalInstance[] {
    return [...this.instances.values()].map((e) => ({ ...e.info }));
  }

  // Terminates every instance. Idempotent.
  async close(): Promise<void> {
    this.closed = true;
    const entries = [...this.instances.values()];
    // Sequential: a handful of instances, and each stop is bounded by SIGKILL.
    for (const entry of entries) await this.stop(entry);
  }

  // Kills the instance (process group and every descendant), wipes its cache, unmounts
  // what its agent left mounted and stops its IMDS. Idempotent.
  private stop(entry: Entry): Promise<void> {
    entry.stopping ??= (async () => {
      const { info } = entry;
      const child = entry.child;
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        const victims = await descendants(child.pid);
        killGroup(child.pid);
        for (const pid of victims) killPid(pid);
        await entry.exited;
      } else if (child?.pid !== undefined) {
        // The agent exited on its own: whatever it left behind in its group goes too.
        killGroup(child.pid);
      }
      info.state = "terminated";
      await unmount(info.mountpoint);
      await rm(join(info.dir, "cache"), { recursive: true, force: true });
      await entry.imds.stop();
    })();
    // A second stop() (exit after a kill) must run again once the first has finished,
    // so the exit handler sees the cleanup done.
    return entry.stopping;
  }
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

// Lazily unmounts a FUSE mount an agent left behind; nothing to do when none is there.
async function unmount(path: string): Promise<void> {
  const mounts = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  if (!mounts.split("\n").some((line) => line.split(" ")[4] === path)) return;
  await new Promise<void>((resolve) => {
    execFile("fusermount", ["-uz", path], () => resolve());
  });
}
