import { mkdir, readFile, rm, statfs } from "node:fs/promises";
import { userInfo } from "node:os";
import { basename, join } from "node:path";
import type { ChunkedFile, QuickHashedFile } from "../../store/index.js";
import { type Manifest, manifestSchemaFor, uploadImageDir } from "../../store/index.js";
import { CriuError } from "../errors.js";
import { detectCriuFeatures, predumpStatus } from "../runner/features.js";
import { createPostDumpHook } from "../runner/post-dump-hook.js";
import { runCriu } from "../runner/run-criu.js";
import { socketOptionsRefused, tcpArgs } from "../runner/tcp.js";
import { kernelRelease, machineArch } from "./host-info.js";
import { imagesKeyPrefix, openFileCopyKey } from "./layout.js";
import { captureOpenFiles } from "./open-files.js";
import { openFilesForWriting, processTree, signalTree } from "./process-tree.js";
import type { RestoreContext } from "./restore.js";
import type { TaskHandle } from "./running-task.js";
import { sh } from "./task-files.js";
import type { CheckpointMode, CheckpointResult, TaskSpec } from "./types.js";

// What a checkpoint needs beyond what a restore does.
export interface CheckpointContext extends RestoreContext {
  clock: () => number;
  cpuinfo: () => Promise<string | null>;
  // Where CRIU writes the images (see SnapshotEngineOptions.staging).
  staging: "auto" | "local" | "mount";
  // The images of the last generation this engine committed, with their chunks' quick
  // hashes: the next checkpoint skips the SHA-256 of every chunk whose quick hash is
  // unchanged at the same place (updated here after each commit).
  quickMemo: { generation?: number; files?: Record<string, QuickHashedFile> };
}

export interface CheckpointTarget {
  spec: TaskSpec;
  task: TaskHandle;
  // When the task (first) started, for its accumulated runtime.
  startedAt: number;
  runtimeBeforeMs: number;
}

// One checkpoint: criu dump straight into the images dir on the mount (a chunked area, so
// chunks are hashed, compressed and uploaded while CRIU writes), the task left stopped,
// its open files committed and copied at that same freeze, then resumed (or killed for a
// final checkpoint), and the manifest committed last.
export async function checkpointTask(
  ctx: CheckpointContext,
  target: CheckpointTarget,
  options: { leaveRunning: boolean; reason: string; signal?: AbortSignal },
): Promise<CheckpointResult> {
  const { signal } = options;
  const started = performance.now();
  const features = await detectCriuFeatures({ signal });
  const parentGeneration = (await ctx.repo.latest({ signal })) ?? null;
  const generation = (parentGeneration ?? 0) + 1;
  // Chunks in packs are deduplicated only against what the store knows of: on a machine
  // that has not written the parent (a restore elsewhere), learn it from its manifest.
  if (parentGeneration !== null && ctx.store.knownPackedChunks === 0) {
    const parent = await ctx.repo.load(parentGeneration, { signal }).catch(() => undefined);
    if (parent) ctx.store.learn(Object.values(parent.images));
  }
  const keyPrefix = imagesKeyPrefix(ctx.layout, target.spec.id, generation);
  const logDir = join(ctx.workDir, `dump-${generation}`);
  await rm(logDir, { recursive: true, force: true });
  await mkdir(logDir, { recursive: true });
  // Local staging: CRIU writes at disk speed and the task resumes before the upload; the
  // mount: CRIU's writes become chunks as they go, and the task waits for the upload.
  const staged = await stagingDir(ctx, target.task.pid, logDir, `${target.spec.id}-${generation}`);
  const local = staged !== undefined;
  const imagesDir = staged ?? join(ctx.mount.mountpoint, "s3", ctx.layout.bucket, keyPrefix.slice(0, -1));
  if (local) {
    await rm(imagesDir, { recursive: true, force: true });
    await mkdir(imagesDir, { recursive: true });
  } else await sh('mkdir -p "$1"', [imagesDir], signal);
  const cpuinfo = await ctx.cpuinfo();
  const before = { ...ctx.store.stats };
  const mode: CheckpointMode = parentGeneration === null ? "full" : "incremental-chunks";
  const logFile = join(logDir, "dump.log");

  const freezeStart = performance.now();
  // The task's accumulated run time at the freeze (earlier instances included).
  const taskRuntimeMs = target.runtimeBeforeMs + Math.max(0, ctx.clock() - target.startedAt);
  let resumed = false;
  const resume = async () => {
    if (resumed) return;
    resumed = true;
    if (options.leaveRunning) await signalTree(target.task.pid, "SIGCONT");
    else {
      target.task.checkpointed = true;
      await signalTree(target.task.pid, "SIGKILL");
    }
  };
  let dumpMs = 0;
  let openFiles: Manifest["openFiles"] = [];
  // Established connections of a task that goes on running: CRIU must unlock them itself
  // (--leave-running), so the freeze for the open files is CRIU's post-dump hook.
  const hook =
    ctx.tcpMode === "established" && options.leaveRunning ? await createPostDumpHook(logDir) : undefined;
  const captureFiles = async () => {
    const paths = await openFilesForWriting(target.task.pid, ctx.mount.mountpoint);
    openFiles = await captureOpenFiles({ mount: ctx.mount, client: ctx.client, signal }, paths, (i) =>
      openFileCopyKey(ctx.layout, target.spec.id, generation, i),
    );
  };
  try {
    const dumping = runCriu(
      [
        "dump",
        "-t",
        String(target.task.pid),
        "-D",
        imagesDir,
        "--log-file",
        logFile,
        // Stopped (or held in the post-dump hook), not running or killed: open files are
        // committed at this same freeze.
        hook ? "--leave-running" : "--leave-stopped",
        ...tcpArgs(ctx.tcpMode),
        "--file-locks",
        ...(hook?.args ?? []),
      ],
      { signal, logFile },
    ).catch(async (err: unknown) => {
      if (await socketOptionsRefused(logFile)) {
        const features = await detectCriuFeatures({ signal }).catch(() => undefined);
        throw new CriuError(
          "CRIU_SOCKETS_UNSUPPORTED",
          `Checkpoint of task "${target.spec.id}" generation ${generation} failed: the task holds TCP/UDP sockets, which CRIU ${features?.version ?? "(unknown version)"} cannot dump on Linux ${kernelRelease()} (the kernel refuses SO_PASSCRED/SO_PASSSEC on them since 6.16; CRIU 4.2 handles it). The task goes on running.`,
          { cause: err },
        );
      }
      throw new CriuError(
        err instanceof CriuError && err.code === "CRIU_ABORTED" ? "CRIU_ABORTED" : "CRIU_DUMP_FAILED",
        `Checkpoint of task "${target.spec.id}" generation ${generation} failed: ${(err as Error).message}`,
        { cause: err, log: await readFile(logFile, "utf8").catch(() => "") },
      );
    });
    if (hook) {
      if (await hook.frozen(dumping, signal).catch(() => false)) {
        await captureFiles().catch(async (err: unknown) => {
          await hook.release(false);
          await dumping.catch(() => {});
          throw err;
        });
        await hook.release(true);
      }
      dumpMs = (await dumping).durationMs;
    } else {
      dumpMs = (await dumping).durationMs;
      await captureFiles();
    }
  } catch (err) {
    // A failed dump leaves the task as it was: running (CRIU resumes it on failure; a
    // --leave-stopped tree that we could not finish with is continued here).
    resumed = true;
    await signalTree(target.task.pid, "SIGCONT");
    if (local) await rm(imagesDir, { recursive: true, force: true });
    throw err;
  }
  await resume();
  const freezeMs = performance.now() - freezeStart;

  const uploadStart = performance.now();
  const memo = ctx.quickMemo;
  const previous = parentGeneration !== null && memo.generation === parentGeneration ? memo.files : undefined;
  let quickHashed: Record<string, QuickHashedFile> | undefined;
  const images = local
    ? await uploadImageDir(ctx.store, imagesDir, {
        ...(signal ? { signal } : {}),
        quick: previous ? { previous } : {},
      }).then(
        (r) => {
          quickHashed = r.quickHashed;
          return r.images;
        },
        async (err: unknown) => {
          await rm(imagesDir, { recursive: true, force: true });
          throw new CriuError(
            err instanceof CriuError && err.code === "CRIU_ABORTED" ? "CRIU_ABORTED" : "CRIU_DUMP_FAILED",
            `Checkpoint of task "${target.spec.id}" generation ${generation}: uploading its images failed (nothing was committed): ${(err as Error).message}`,
            { cause: err },
          );
        },
      )
    : await imageFiles(ctx, imagesDir, signal);
  // Uploaded: the local copy goes at once (in memory, it holds as much RAM as the task).
  if (local) await rm(imagesDir, { recursive: true, force: true });
  const uploadMs = performance.now() - uploadStart;
  const logical = Object.values(images).reduce((n, f) => n + f.size, 0);
  const identity = userInfo();
  const manifest: Manifest = {
    schemaVersion: manifestSchemaFor(images),
    generation,
    parentGeneration,
    createdAt: new Date(ctx.clock()).toISOString(),
    mode,
    chunkStore: { bucket: ctx.store.bucket, prefix: ctx.store.prefix, chunkSize: ctx.store.chunkSize },
    task: {
      id: target.spec.id,
      command: target.spec.command,
      cwd: target.spec.cwd,
      identity: { uid: identity.uid, gid: identity.gid },
      runtimeMs: Math.round(taskRuntimeMs),
    },
    host: {
      criuVersion: features.version,
      kernel: kernelRelease(),
      arch: machineArch(),
      cpuinfo: cpuinfo === null ? null : { inline: cpuinfo },
    },
    images,
    openFiles,
    timings: {
      freezeMs: Math.round(freezeMs),
      dumpMs: Math.round(dumpMs),
      uploadMs: Math.round(uploadMs),
      totalMs: Math.round(performance.now() - started),
    },
    bytes: {
      logical,
      uploaded: ctx.store.stats.bytesUploaded - before.bytesUploaded,
      deduplicated: ctx.store.stats.bytesDeduplicated - before.bytesDeduplicated,
    },
  };
  manifest.timings.totalMs = Math.round(performance.now() - started);
  await ctx.repo.commit(manifest, { signal });
  const chunksUnchanged = ctx.store.stats.chunksUnchanged - before.chunksUnchanged;
  const chunksPatched = ctx.store.stats.chunksPatched - before.chunksPatched;
  memo.generation = generation;
  memo.files = quickHashed;
  ctx.logger.info(
    {
      task: target.spec.id,
      generation,
      mode,
      staging: local ? "local" : "mount",
      predump: predumpStatus(features),
      freezeMs: manifest.timings.freezeMs,
      dumpMs: manifest.timings.dumpMs,
      stagingDir: staged,
      uploadMs: manifest.timings.uploadMs,
      totalMs: manifest.timings.totalMs,
      bytes: manifest.bytes,
      chunksUnchanged,
      chunksPatched,
    },
    "checkpoint committed",
  );
  await rm(logDir, { recursive: true, force: true });
  return {
    generation,
    parentGeneration,
    mode,
    freezeMs: manifest.timings.freezeMs,
    totalMs: manifest.timings.totalMs,
    bytesLogical: logical,
    bytesUploaded: manifest.bytes.uploaded,
    chunksUnchanged,
    chunksPatched,
    taskRuntimeMs,
  };
}

// Every image CRIU wrote, with its chunk list from the driver (the files were flushed, and
// their last chunks uploaded, when CRIU closed them).
async function imageFiles(
  ctx: CheckpointContext,
  imagesDir: string,
  signal?: AbortSignal,
): Promise<Record<string, ChunkedFile>> {
  const names = (await sh('ls -1 "$1"', [imagesDir], signal)).split("\n").filter((n) => n.trim() !== "");
  const committed = await ctx.mount.commit({ paths: names.map((n) => join(imagesDir, n)), signal });
  const images: Record<string, ChunkedFile> = {};
  for (const [i, file] of committed.entries()) {
    const name = names[i] as string;
    if (!file.chunks) {
      throw new CriuError(
        "CRIU_DUMP_FAILED",
        `Image ${name} of ${imagesDir} was not written as chunks: is the snapshot area among the mount's chunkedAreas (snapshotMountAreas)?`,
      );
    }
    images[name] = file.chunks;
  }
  return images;
}

// Where this checkpoint's images go first, or undefined to stream them through the mount.
// "auto" and "local": memory (tmpfs /dev/shm) when the machine has the task's resident size
// twice over plus 1 GiB available, so the dump runs at the speed of the tmpfs floor; else
// the local disk under the engine's work dir when it has that size plus 25% and 256 MiB
// free; else, for "auto", the mount ("local" insists on the disk). "mount": the mount.
async function stagingDir(
  ctx: CheckpointContext,
  root: number,
  logDir: string,
  // "<task>-<generation>": names the tmpfs directory, with the work dir's name.
  name: string,
): Promise<string | undefined> {
  if (ctx.staging === "mount") return undefined;
  let resident = 0;
  for (const pid of await processTree(root)) {
    const statm = await readFile(`/proc/${pid}/statm`, "utf8").catch(() => "");
    resident += (Number(statm.split(" ")[1]) || 0) * 4096;
  }
  const need = resident * 1.25 + 256 * 1024 * 1024;
  const freeBytes = async (dir: string) => {
    const fs = await statfs(dir).catch(() => undefined);
    return fs ? fs.bavail * fs.bsize : 0;
  };
  const meminfo = await readFile("/proc/meminfo", "utf8").catch(() => "");
  const available = Number(/MemAvailable:\s+(\d+) kB/.exec(meminfo)?.[1] ?? 0) * 1024;
  if (available > resident * 2 + 1024 * 1024 * 1024 && (await freeBytes("/dev/shm")) > need) {
    return join("/dev/shm", `snapctl-${basename(ctx.workDir)}-${name}`);
  }
  if ((await freeBytes(logDir)) > need || ctx.staging === "local") return join(logDir, "images");
  return undefined;
}
