import { access, mkdir, readFile, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "../../common/log.js";
import type { FusionMount } from "../../driver/index.js";
import {
  type ChunkStore,
  downloadImageDir,
  type Manifest,
  SnapshotError,
  type SnapshotRepository,
} from "../../store/index.js";
import { CriuError } from "../errors.js";
import { criuLogTail, runCriu } from "../runner/run-criu.js";
import { tcpArgs } from "../runner/tcp.js";
import { imagesKeyPrefix, type SnapshotLayout } from "./layout.js";
import { restoreOpenFiles } from "./open-files.js";
import { preflight } from "./preflight.js";
import { TaskHandle, taskExit } from "./running-task.js";
import { readTaskFile, removeTaskFile } from "./task-files.js";
import type { RestoreResult, TaskSpec } from "./types.js";

export interface RestoreContext {
  mount: FusionMount;
  client: S3Client;
  store: ChunkStore;
  repo: SnapshotRepository;
  layout: SnapshotLayout;
  workDir: string;
  tcpMode: "close" | "established";
  logger: Logger;
}

// Damage that makes one generation unusable while an older one may still be fine.
const FALLBACK = new Set([
  "SNAPSHOT_CORRUPT_CHUNK",
  "SNAPSHOT_MISSING_CHUNK",
  "SNAPSHOT_MANIFEST_CORRUPT",
  "SNAPSHOT_NOT_FOUND",
]);

type Skipped = RestoreResult["skipped"];

// Finds the newest generation (or the requested one) whose manifest loads, that this
// machine can restore (preflight, before any large download) and whose images download
// intact into `dir`; a damaged one is recorded in `skipped` and the next older one tried.
async function fetchGeneration(
  ctx: RestoreContext,
  dir: string,
  options: {
    generation?: number;
    signal?: AbortSignal;
    skip?: (name: string) => boolean;
    // Called as each step ends (the restore's log lists them).
    phases?: (name: string) => void;
  },
): Promise<{ manifest: Manifest; skipped: Skipped }> {
  const { signal } = options;
  const all = await ctx.repo.list({ signal });
  const candidates = options.generation === undefined ? all.reverse() : [options.generation];
  if (candidates.length === 0) {
    throw new CriuError("CRIU_NO_SNAPSHOT", `Task "${ctx.repo.task}" has no snapshot to restore`);
  }
  const skipped: Skipped = [];
  for (const generation of candidates) {
    try {
      const manifest = await ctx.repo.load(generation, { signal });
      options.phases?.("manifest");
      await rm(dir, { recursive: true, force: true });
      const wanted = Object.fromEntries(
        Object.entries(manifest.images).filter(([name]) => !options.skip?.(name)),
      );
      const checked = preflight(manifest, { workDir: ctx.workDir, signal }).then(() =>
        options.phases?.("preflight"),
      );
      // An eager restore downloads the whole memory: only once the preflight passed (disk
      // space, CPU, CRIU). A lazy one downloads a few small images: at the same time as
      // the checks, which wait on CRIU and S3, not on each other. A failed check throws
      // before anything is restored; what was downloaded goes with `dir` (the next
      // generation tried starts from an empty one).
      if (!options.skip) await checked;
      await Promise.all([
        checked,
        ctx.repo.verify(manifest, "quick", { signal }).then(() => options.phases?.("verified")),
        downloadImageDir(ctx.store, wanted, dir, { signal }).then(() => options.phases?.("downloaded")),
      ]);
      return { manifest, skipped };
    } catch (err) {
      if (err instanceof SnapshotError && err.code === "SNAPSHOT_SCHEMA_TOO_NEW") {
        throw new CriuError("CRIU_SNAPSHOT_TOO_NEW", err.message, { cause: err });
      }
      if (!(err instanceof SnapshotError) || !FALLBACK.has(err.code)) throw err;
      ctx.logger.warn(
        { generation, code: err.code, err },
        "snapshot generation unusable; trying an older one",
      );
      skipped.push({ generation, code: err.code, message: err.message });
    }
  }
  const detail = skipped.map((s) => `generation ${s.generation}: ${s.message}`).join("; ");
  throw new CriuError("CRIU_NO_USABLE_SNAPSHOT", `Task "${ctx.repo.task}" has no usable snapshot: ${detail}`);
}

// Restores a task: images downloaded (verified chunk by chunk) to local disk, open files
// put back to their state at the freeze, then `criu restore` in the foreground: CRIU stays
// the parent of the restored tree (which keeps unshare's PDEATHSIG) and exits when it ends.
export async function restoreTask(
  ctx: RestoreContext,
  spec: TaskSpec,
  options: { generation?: number; lazy?: boolean; signal?: AbortSignal },
): Promise<RestoreResult & { manifest: Manifest }> {
  const { signal } = options;
  const started = performance.now();
  const dir = join(ctx.workDir, `restore-${process.pid}-${Date.now().toString(36)}`);
  await mkdir(ctx.workDir, { recursive: true });
  const lazy = options.lazy === true;
  const images = join(dir, "images");
  const phases: Record<string, number> = {};
  const { manifest, skipped } = await fetchGeneration(ctx, images, {
    ...options,
    ...(lazy ? { skip: isPages } : {}),
    phases: (name) => {
      phases[name] = performance.now() - started;
    },
  });
  phases.fetched = performance.now() - started;
  const lazyDaemon = lazy ? await startLazyPages(ctx, manifest, images) : undefined;
  phases.lazyPages = performance.now() - started;
  const filesCtx = { mount: ctx.mount, client: ctx.client, signal };
  await restoreOpenFiles(filesCtx, manifest.openFiles);
  phases.openFiles = performance.now() - started;
  const exitCodePath = join(spec.cwd, ".exitcode");
  await removeTaskFile({ client: ctx.client, mountpoint: ctx.mount.mountpoint }, exitCodePath, signal);

  const pidfile = join(dir, "restored.pid");
  const logFile = join(dir, "restore.log");
  const criu = runCriu(
    [
      "restore",
      "-D",
      join(dir, "images"),
      "--log-file",
      logFile,
      "--pidfile",
      pidfile,
      ...tcpArgs(ctx.tcpMode),
      "--file-locks",
      // Anonymous private memory is not copied in but registered with userfaultfd and
      // served by the lazy-pages daemon on first touch (and streamed in the background).
      ...(lazy ? ["--lazy-pages"] : []),
    ],
    { logFile, reject: false },
  );
  // The pidfile appears once the tree is restored, before CRIU resumes it.
  let ended = false;
  const done = criu.finally(() => {
    ended = true;
  });
  let pid = 0;
  while (!pid) {
    const text = await readFile(pidfile, "utf8").catch(() => "");
    if (text.trim()) pid = Number(text.trim());
    else if (ended) break;
    else await new Promise((r) => setTimeout(r, 10));
  }
  if (!pid) {
    const r = await done;
    lazyDaemon?.stop();
    const log = await readFile(logFile, "utf8").catch(() => "");
    const tail = criuLogTail(log).replaceAll("\n", "\n  ");
    await rm(dir, { recursive: true, force: true });
    throw new CriuError(
      "CRIU_RESTORE_FAILED",
      `criu restore of task "${spec.id}" generation ${manifest.generation} exited with ${r.exitCode}:\n  ${tail || r.stderr}`,
      { log },
    );
  }
  const resumeMs = performance.now() - started;
  phases.resumed = resumeMs;
  const exited = done.then(async (r) => {
    // The tree is gone: lazy-pages has nothing left to serve (it would wait on its socket).
    lazyDaemon?.stop();
    await lazyDaemon?.finished;
    const recorded = await readTaskFile(
      { client: ctx.client, mountpoint: ctx.mount.mountpoint },
      exitCodePath,
    );
    await rm(dir, { recursive: true, force: true });
    return taskExit(recorded, r.signal ?? null);
  });
  const task = new TaskHandle(pid, exited);
  ctx.logger.info(
    // phases: ms since the start when each step was done.
    { task: spec.id, generation: manifest.generation, pid, resumeMs, skipped, lazy, phases },
    "task restored",
  );
  return { task, generation: manifest.generation, skipped, resumeMs, lazy, manifest };
}

const isPages = (name: string) => /^pages-\d+\.img$/.test(name);

// Lazy restore: the memory images stay in S3, presented read-only through the mount and
// linked into the local images dir; `criu lazy-pages` serves the restored task's page
// faults from them (userfaultfd) and streams the rest in the background.
async function startLazyPages(
  ctx: RestoreContext,
  manifest: Manifest,
  images: string,
): Promise<{ finished: Promise<void>; stop(): void }> {
  const keyPrefix = imagesKeyPrefix(ctx.layout, ctx.repo.task, manifest.generation);
  const pages = Object.entries(manifest.images).filter(([name]) => isPages(name));
  await ctx.mount.presentChunkedFiles({
    bucket: ctx.store.bucket,
    prefix: keyPrefix,
    files: pages.map(([name, file]) => ({ name, file })),
  });
  for (const [name] of pages) {
    await symlink(join(ctx.mount.mountpoint, "s3", ctx.store.bucket, keyPrefix, name), join(images, name));
  }
  const controller = new AbortController();
  const logFile = join(images, "..", "lazy-pages.log");
  const daemon = runCriu(["lazy-pages", "-D", images, "--log-file", logFile], {
    logFile,
    reject: false,
    signal: controller.signal,
  });
  const socket = join(images, "lazy-pages.socket");
  for (let i = 0; !(await exists(socket)); i++) {
    if (i > 500) {
      controller.abort();
      throw new CriuError("CRIU_RESTORE_FAILED", `criu lazy-pages did not open ${socket}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    finished: daemon.then(
      () => {},
      () => {},
    ),
    stop: () => controller.abort(),
  };
}

async function exists(path: string): Promise<boolean> {
  return await access(path).then(
    () => true,
    () => false,
  );
}
