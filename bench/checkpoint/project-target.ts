import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { Agent as HttpAgent } from "node:http";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { createLogger } from "../../common/log.js";
import {
  createSnapshotStore,
  type RunningTask,
  SnapshotEngine,
  snapshotMountAreas,
  type TaskSpec,
} from "../../criu/index.js";
import { type FusionMount, mountFusion } from "../../driver/index.js";
import type { ChunkStore } from "../../store/index.js";
import { BenchError } from "../errors.js";
import type { BenchContext } from "../harness/context.js";
import { toolVersion } from "../harness/tools.js";
import type { CheckpointTarget, TaskRef } from "./checkpoint-target.js";
import { criuBinary } from "./criu.js";

// This project's snapshot engine (criu/), as the agent drives it: the Fusion mount served
// in this process, CRIU dumping into the mount's snapshot area (chunks hashed, compressed
// with zstd off the event loop and uploaded while CRIU writes), the manifest committed
// last. An incremental checkpoint is the next generation of the same task on the same
// mount; a restore is a clean machine: a new mount with an empty cache, a new chunk store,
// and the snapshot fetched from S3 alone (eager) or its memory served by `criu lazy-pages`
// through the mount (lazy).
const TASK_ID = "bench";

interface Machine {
  client: S3Client;
  store: ChunkStore;
  mount: FusionMount;
  engine: SnapshotEngine;
  dir: string;
}

// One snapshot key's machine: its mount stays up between the first and the incremental
// checkpoint (the task is the same), and is closed when the restore starts elsewhere.
const machines = new Map<string, { machine: Machine; root: string }>();

function spec(task: TaskRef): TaskSpec {
  return {
    id: TASK_ID,
    command: ["hog"],
    cwd: task.dir,
    stdoutPath: "/dev/null",
    stderrPath: "/dev/null",
  };
}

// A fresh "machine": an S3 client on the endpoint under test, an empty cache dir, a new
// mount and an engine for the task of the snapshot `root` (its work dir's key prefix).
async function newMachine(context: BenchContext, root: string, name: string): Promise<Machine> {
  const { endpoint } = context;
  const dir = join(context.workDir, "project", name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const client = new S3Client({
    endpoint: endpoint.url,
    forcePathStyle: true,
    region: endpoint.region,
    credentials: { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey },
    maxAttempts: 1,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: { httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 64 }) },
  });
  const chunkKiB = Number(process.env.SNAPBENCH_CHUNK_KIB ?? 0);
  const store = createSnapshotStore({
    client,
    bucket: endpoint.bucket,
    workPrefix: root,
    // SNAPBENCH_CHUNK_KIB: another chunk size than the store's default (for measuring it).
    ...(chunkKiB > 0 ? { chunkSize: chunkKiB * 1024 } : {}),
  });
  let mount: FusionMount | undefined;
  try {
    mount = await mountFusion({
      mountpoint: join(dir, "mnt"),
      buckets: [endpoint.bucket],
      client,
      cacheDir: join(dir, "cache"),
      chunkedAreas: snapshotMountAreas({ store, workPrefix: root }),
    });
    const engine = new SnapshotEngine({
      mount,
      client,
      bucket: endpoint.bucket,
      workPrefix: root,
      taskId: TASK_ID,
      store,
      workDir: join(dir, "engine"),
      // SNAPBENCH_ENGINE_LOG=debug|info: the engine's log (phases of each restore) on stderr.
      ...(process.env.SNAPBENCH_ENGINE_LOG
        ? { logger: createLogger("bench-engine", process.env.SNAPBENCH_ENGINE_LOG) }
        : {}),
    });
    return { client, store, mount, engine, dir };
  } catch (error) {
    await mount?.close().catch(() => {});
    await store.close();
    client.destroy();
    throw error;
  }
}

const closed = new WeakSet<Machine>();

// Unmounts and forgets a machine's local state; idempotent.
async function closeMachine(machine: Machine): Promise<void> {
  if (closed.has(machine)) return;
  closed.add(machine);
  await machine.mount.close().catch(() => {});
  await machine.store.close();
  machine.client.destroy();
  await rm(machine.dir, { recursive: true, force: true });
}

export const projectCheckpointTarget: CheckpointTarget = {
  name: "spot-snapshots",
  settings:
    "criu/ SnapshotEngine defaults: criu dump --leave-stopped into the Fusion mount's snapshot area (256 KiB chunks, sha256 + zstd level 3 in worker threads, uploaded in parallel while CRIU writes), manifest last; restore on a new mount with an empty cache: eager (chunks fetched in parallel, verified, then criu restore) and lazy (criu lazy-pages reading pages through the mount)",
  restoreModes: ["eager", "lazy"],
  async unavailable() {
    if (!(await toolVersion(criuBinary()))) return `CRIU is not runnable (${criuBinary()})`;
    if (!existsSync("/dev/fuse")) return "/dev/fuse is missing: FUSE cannot mount here";
    return undefined;
  },
  async checkpoint(task, context, { key, parent }) {
    let entry = parent ? machines.get(parent) : undefined;
    if (parent && !entry) {
      throw new BenchError("BENCH_BAD_OPTION", `No checkpoint of "${parent}" to continue from`);
    }
    if (!entry) {
      const machine = await newMachine(context, key, key);
      machine.engine.adopt(spec(task), task.pid);
      entry = { machine, root: key };
    }
    machines.set(key, entry);
    const result = await entry.machine.engine.checkpoint({
      leaveRunning: true,
      reason: "manual",
      signal: context.signal,
    });
    // totalMs ends at the manifest's commit; the old-generation GC after it is not counted.
    return {
      freezeSeconds: result.freezeMs / 1000,
      committedSeconds: result.totalMs / 1000,
      bytesUploaded: result.bytesUploaded,
    };
  },
  async restore(context, { key, mode, task }) {
    if (mode !== "eager" && mode !== "lazy") {
      throw new BenchError("BENCH_BAD_OPTION", `spot-snapshots has no "${mode}" restore`);
    }
    const entry = machines.get(key);
    if (!entry) throw new BenchError("BENCH_BAD_OPTION", `No checkpoint "${key}" to restore`);
    // The checkpointing machine is gone: its mount and cache with it.
    await closeMachine(entry.machine);
    const machine = await newMachine(context, entry.root, `${key}-restore-${mode}`);
    let restored: RunningTask;
    try {
      restored = (await machine.engine.restore(spec(task), { lazy: mode === "lazy", signal: context.signal }))
        .task;
    } catch (error) {
      await closeMachine(machine);
      throw error;
    }
    // The next restore (another mode) starts from a clean machine again.
    entry.machine = machine;
    return {
      pid: restored.pid,
      close: async () => {
        restored.kill("SIGKILL");
        await restored.exited.catch(() => {});
        await closeMachine(machine);
      },
    };
  },
  async forget(_context, key) {
    const entry = machines.get(key);
    machines.delete(key);
    if (entry && ![...machines.values()].includes(entry)) await closeMachine(entry.machine);
  },
};
