import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeleteObjectsCommand, type S3Client } from "@aws-sdk/client-s3";
import { type Logger, silentLogger } from "../../common/log.js";
import type { FusionMount } from "../../driver/index.js";
import { ChunkStore, type QuickHashedFile, SnapshotRepository } from "../../store/index.js";
import { CriuError } from "../errors.js";
import { namespaceInit, pidNamespacePrefix } from "../runner/pidns.js";
import { checkpointTask } from "./checkpoint.js";
import { dumpCpuinfo } from "./host-info.js";
import { type SnapshotLayout, snapshotLayout } from "./layout.js";
import { type RestoreContext, restoreTask } from "./restore.js";
import { shimCommand, TaskHandle, taskExit } from "./running-task.js";
import { readTaskFile, removeTaskFile } from "./task-files.js";
import type {
  CheckpointOptions,
  CheckpointResult,
  RestoreOptions,
  RestoreResult,
  SnapshotEngineLike,
  SnapshotInfo,
  TaskSpec,
} from "./types.js";

export interface SnapshotEngineOptions {
  // The Fusion mount the task's files live on; its chunkedAreas must include
  // snapshotMountAreas({ store, workPrefix }).
  mount: FusionMount;
  // S3 client for manifests, open-file copies and exit codes.
  client: S3Client;
  bucket: string;
  // Key prefix of the task's work dir; snapshots go under <workPrefix>/.snapshots/.
  workPrefix: string;
  taskId: string;
  // The chunk store behind the mount's snapshot area. Default: the one found in
  // mount.options.chunkedAreas for this bucket and prefix.
  store?: ChunkStore;
  // Newest committed generations kept after each checkpoint. Default 2.
  keepGenerations?: number;
  // Chunks no manifest references are deleted only when older than this. Default 60 min.
  gcGraceMs?: number;
  // TCP connections: "established" keeps them (CRIU --tcp-established), "close" restores
  // them closed (--tcp-close). Default "close".
  tcpMode?: "close" | "established";
  // Local scratch directory (CRIU logs, restored images). Default <tmpdir>/snapctl-engine-<task>.
  workDir?: string;
  // Lazy restore default. Default false (see docs/snapshot-engine.md for why).
  lazy?: boolean;
  // Where `criu dump` writes the images. "local": a directory under workDir, uploaded
  // after the task resumed (the freeze lasts as long as the dump to disk); "mount": the
  // Fusion mount's snapshot area, uploaded as CRIU writes (the task stays frozen until the
  // last chunk is up, but no local disk is needed). "auto" (default): local when the disk
  // under workDir has room for the task's resident memory plus 25% and 256 MiB, else mount.
  staging?: "auto" | "local" | "mount";
  logger?: Logger;
  // Milliseconds since the epoch. Default Date.now.
  clock?: () => number;
}

// The snapshot engine: runs a task in its own PID namespace, checkpoints it into S3
// through the Fusion mount, and restores it from S3 on any machine.
export class SnapshotEngine implements SnapshotEngineLike {
  readonly layout: SnapshotLayout;
  readonly store: ChunkStore;
  readonly repo: SnapshotRepository;
  private readonly options: SnapshotEngineOptions;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly workDir: string;
  private current:
    | { spec: TaskSpec; task: TaskHandle; startedAt: number; runtimeBeforeMs: number }
    | undefined;
  private cpuinfo: Promise<string | null> | undefined;
  private busy = false;
  // The last committed generation's images with their quick hashes (see CheckpointContext).
  private readonly quickMemo: { generation?: number; files?: Record<string, QuickHashedFile> } = {};

  constructor(options: SnapshotEngineOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? Date.now;
    this.layout = snapshotLayout(options.bucket, options.workPrefix);
    this.workDir = options.workDir ?? join(tmpdir(), `snapctl-engine-${options.taskId}`);
    const area = options.mount.options.chunkedAreas.find(
      (a) => a.bucket === options.bucket && a.prefix === this.layout.imagesPrefix,
    );
    const store = options.store ?? area?.store;
    if (!(store instanceof ChunkStore)) {
      throw new CriuError(
        "CRIU_INVALID_OPTION",
        `The mount has no chunked area for s3://${options.bucket}/${this.layout.imagesPrefix}: mount it with chunkedAreas: snapshotMountAreas(...)`,
      );
    }
    this.store = store;
    this.repo = new SnapshotRepository({
      store,
      root: this.layout.root,
      task: options.taskId,
      ...(options.gcGraceMs === undefined ? {} : { gcGraceMs: options.gcGraceMs }),
      logger: this.logger,
      clock: this.clock,
    });
  }

  private get files() {
    return { client: this.options.client, mountpoint: this.options.mount.mountpoint };
  }

  // Starts the task in a fresh PID namespace behind the exit-code shim. A fresh start is
  // the task from scratch: what an earlier attempt left in its output files goes first
  // (as Nextflow's wrapper truncates .command.out), so a re-run's output is its own.
  async start(spec: TaskSpec): Promise<TaskHandle> {
    this.assertTask(spec);
    const exitCodePath = join(spec.cwd, ".exitcode");
    for (const path of [exitCodePath, spec.stdoutPath, spec.stderrPath])
      await removeTaskFile(this.files, path);
    const [cmd, ...args] = [...pidNamespacePrefix(), ...shimCommand(spec, exitCodePath)];
    // stdio is /dev/null: Node's pipes are socketpairs, which CRIU would see as external sockets.
    const child = spawn(cmd as string, args, {
      env: { ...process.env, ...spec.env },
      stdio: "ignore",
    });
    const exit = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    const pid = await namespaceInit(child.pid as number).catch(async (err: unknown) => {
      child.kill("SIGKILL");
      throw new CriuError("CRIU_START_FAILED", `Task "${spec.id}" did not start: ${(err as Error).message}`, {
        cause: err,
      });
    });
    const exited = exit.then(async ([, signal]) => {
      const recorded = await readTaskFile(this.files, exitCodePath).catch(() => undefined);
      return taskExit(recorded, signal);
    });
    const task = new TaskHandle(pid, exited);
    this.current = { spec, task, startedAt: this.clock(), runtimeBeforeMs: 0 };
    this.logger.info({ task: spec.id, pid }, "task started");
    return task;
  }

  // Adopts a task tree started elsewhere, so that this engine can checkpoint it: `pid` is
  // the init of the tree's own PID namespace (started as `unshare --pid --fork ...` with
  // no inherited pipes or sockets: stdio on /dev/null or on files). Embedders that launch
  // their own processes (the benchmarks) use it. The engine does not know the exit code
  // of an adopted task: `exited` resolves (exitCode null) once the process has gone.
  adopt(spec: TaskSpec, pid: number): TaskHandle {
    this.assertTask(spec);
    if (!Number.isInteger(pid) || pid <= 1) {
      throw new CriuError("CRIU_INVALID_OPTION", `Cannot adopt PID ${pid}: give the task's namespace init`);
    }
    const exited = (async () => {
      while (await pidAlive(pid)) await new Promise((r) => setTimeout(r, 100));
      return { exitCode: null, signal: null };
    })();
    const task = new TaskHandle(pid, exited);
    this.current = { spec, task, startedAt: this.clock(), runtimeBeforeMs: 0 };
    return task;
  }

  // Checkpoints the current task; then removes generations beyond keepGenerations.
  async checkpoint(options: CheckpointOptions = {}): Promise<CheckpointResult> {
    const current = this.current;
    if (!current)
      throw new CriuError("CRIU_NO_TASK", `No task of "${this.options.taskId}" is running under this engine`);
    if (this.busy)
      throw new CriuError("CRIU_BUSY", `A checkpoint of task "${this.options.taskId}" is already running`);
    this.busy = true;
    try {
      this.cpuinfo ??= dumpCpuinfo();
      const result = await checkpointTask(
        {
          ...this.context(),
          clock: this.clock,
          cpuinfo: () => this.cpuinfo as Promise<string | null>,
          staging: this.options.staging ?? "auto",
          quickMemo: this.quickMemo,
        },
        current,
        {
          leaveRunning: options.leaveRunning ?? true,
          reason: options.reason ?? "manual",
          ...(options.signal ? { signal: options.signal } : {}),
        },
      );
      await this.collectGarbage(options.signal).catch((err: unknown) =>
        this.logger.warn({ err }, "snapshot GC failed; old generations stay until the next one"),
      );
      return result;
    } finally {
      this.busy = false;
    }
  }

  // The newest generation whose manifest reads (damaged manifests are passed over; a
  // newer schema throws SNAPSHOT_SCHEMA_TOO_NEW). Chunks are not checked here.
  async latest(options: { signal?: AbortSignal } = {}): Promise<SnapshotInfo | undefined> {
    const found = await this.repo.loadLatestUsable({ ...options, verify: "none" });
    if (!found.found) return undefined;
    const m = found.manifest;
    return {
      generation: found.generation,
      createdAt: m.createdAt,
      mode: m.mode,
      bytesLogical: m.bytes.logical,
      bytesUploaded: m.bytes.uploaded,
    };
  }

  // The collaborators both checkpoints and restores work with.
  private context(): RestoreContext {
    return {
      mount: this.options.mount,
      client: this.options.client,
      store: this.store,
      repo: this.repo,
      layout: this.layout,
      workDir: this.workDir,
      tcpMode: this.options.tcpMode ?? "close",
      logger: this.logger,
    };
  }

  // Restores the task; its run time continues from the one recorded in the manifest
  // (`runtimeBeforeMs`, 0 for manifests written before task.runtimeMs existed).
  async restore(
    spec: TaskSpec,
    options: RestoreOptions = {},
  ): Promise<RestoreResult & { runtimeBeforeMs: number }> {
    this.assertTask(spec);
    await mkdir(this.workDir, { recursive: true });
    const restoring = restoreTask(this.context(), spec, {
      ...options,
      lazy: options.lazy ?? this.options.lazy ?? false,
    });
    const { manifest, ...result } = await restoring.catch(async (err: unknown) => {
      throw await this.explainFinished(err, options.signal);
    });
    const runtimeBeforeMs = manifest.task.runtimeMs ?? 0;
    this.current = { spec, task: result.task as TaskHandle, startedAt: this.clock(), runtimeBeforeMs };
    return { ...result, runtimeBeforeMs };
  }

  // The task's accumulated run time now (earlier instances included), or undefined when no
  // task runs under this engine.
  runtimeMs(): number | undefined {
    const c = this.current;
    return c ? c.runtimeBeforeMs + Math.max(0, this.clock() - c.startedAt) : undefined;
  }

  // A restore that found no snapshot of a task whose images cleanup() removed says so.
  private async explainFinished(err: unknown, signal?: AbortSignal): Promise<unknown> {
    if (!(err instanceof CriuError) || err.code !== "CRIU_NO_SNAPSHOT") return err;
    const finished = await this.repo.finished({ signal }).catch(() => undefined);
    if (!finished) return err;
    return new CriuError(
      "CRIU_NO_SNAPSHOT",
      `Task "${this.options.taskId}" has nothing to restore: it finished at ${finished.finishedAt} and cleanup removed its memory images (its manifests are kept under s3://${this.options.bucket}/${this.repo.taskPrefix}retired/)`,
      { cause: err },
    );
  }

  // After the task ended on its own: nothing of it is restorable any more. Its manifests
  // move to <task>/retired/ behind a finished marker, and every generation's memory images
  // go (the chunks no other task's manifest references), with the open-file copies; the
  // task's own files (logs, outputs) stay. See docs/snapshot-engine.md.
  async cleanup(options: { signal?: AbortSignal; detail?: Record<string, unknown> } = {}): Promise<void> {
    const { signal } = options;
    const report = await this.repo.retire({
      ...(signal ? { signal } : {}),
      ...(options.detail ? { detail: options.detail } : {}),
    });
    if (report.retiredGenerations.length === 0) return;
    await this.deleteGenerationFiles(report.retiredGenerations, signal);
    this.logger.info({ task: this.options.taskId, report }, "finished task's snapshot images removed");
  }

  // After a restore that failed for a reason that would repeat: every committed generation
  // goes to <task>/unusable/ (see SnapshotRepository.setAside), so nothing looks
  // restorable and the next attempt starts the task fresh.
  async setAside(options: { signal?: AbortSignal } = {}): Promise<number[]> {
    const generations = await this.repo.list(options);
    await this.repo.setAside(generations, options);
    return generations;
  }

  private async collectGarbage(
    signal?: AbortSignal,
    keep = this.options.keepGenerations ?? 2,
  ): Promise<void> {
    const report = await this.repo.gc({ keep, ...(signal ? { signal } : {}) });
    if (report.deletedGenerations.length === 0) return;
    await this.deleteGenerationFiles(report.deletedGenerations, signal);
    this.logger.info({ task: this.options.taskId, report }, "old snapshot generations removed");
  }

  // Open-file copies of the given generations, and their image dirs (which hold only
  // directory markers: the images themselves are chunks).
  private async deleteGenerationFiles(generations: number[], signal?: AbortSignal): Promise<void> {
    const keys: string[] = [];
    for (const g of generations) {
      const gen = String(g).padStart(6, "0");
      for (const prefix of [
        `${this.layout.root}${this.options.taskId}/files/gen-${gen}/`,
        `${this.layout.imagesPrefix}${this.options.taskId}/gen-${gen}/`,
      ]) {
        keys.push(...(await this.listKeys(prefix, signal)));
      }
    }
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = new DeleteObjectsCommand({
        Bucket: this.options.bucket,
        Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })) },
      });
      // Once more on failure: a batch may fail half done (s3rver answers 500 when a
      // concurrent request removed a folder it was cleaning up).
      await this.options.client
        .send(batch, { abortSignal: signal })
        .catch(() => this.options.client.send(batch, { abortSignal: signal }));
    }
  }

  private async listKeys(prefix: string, signal?: AbortSignal): Promise<string[]> {
    const { ListObjectsCommand } = await import("@aws-sdk/client-s3");
    const keys: string[] = [];
    let marker: string | undefined;
    for (;;) {
      const r = await this.options.client.send(
        new ListObjectsCommand({
          Bucket: this.options.bucket,
          Prefix: prefix,
          ...(marker ? { Marker: marker } : {}),
        }),
        { abortSignal: signal },
      );
      for (const o of r.Contents ?? []) if (o.Key) keys.push(o.Key);
      if (!r.IsTruncated || !r.Contents?.length) return keys;
      marker = r.Contents.at(-1)?.Key;
    }
  }

  private assertTask(spec: TaskSpec): void {
    if (spec.id !== this.options.taskId) {
      throw new CriuError(
        "CRIU_INVALID_OPTION",
        `This engine serves task "${this.options.taskId}", not "${spec.id}"`,
      );
    }
  }
}

// Whether a process is alive (a zombie counts as gone: it has nothing left to dump).
async function pidAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  if (!stat) return false;
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}
