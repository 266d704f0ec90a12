// Real s3rver + an in-process Fusion mount with the snapshot area + a SnapshotEngine, and
// the memory-heavy C task compiled into a temp dir. Everything the engine's process reads
// of the mount goes through S3 or child processes (never its own FUSE mount).
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { S3Server } from "../../../cloud/index.js";
import { createLogger } from "../../../common/log.js";
import {
  createSnapshotStore,
  SnapshotEngine,
  type SnapshotEngineOptions,
  snapshotMountAreas,
} from "../../../criu/index.js";
import { type FusionMount, mountFusion } from "../../../driver/index.js";
import type { ChunkStore } from "../../../store/index.js";

export const BUCKET = "work";
export const WORK_PREFIX = "jobs/j1";

export function haveCc(): boolean {
  try {
    execFileSync("cc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export class EngineFixture {
  dir = "";
  server!: S3Server;
  client!: S3Client;
  mount: FusionMount | undefined;
  store: ChunkStore | undefined;
  memtask = "";
  // Tasks to kill at close, whatever a test left running.
  readonly tasks: Array<{ kill(signal?: NodeJS.Signals): void; exited: Promise<unknown> }> = [];
  private mounts = 0;

  static async start(): Promise<EngineFixture> {
    const f = new EngineFixture();
    f.dir = await mkdtemp(join(tmpdir(), "snap-engine-"));
    f.server = new S3Server({ directory: join(f.dir, "s3"), buckets: [BUCKET] });
    await f.server.start();
    f.client = new S3Client({
      endpoint: f.server.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    f.memtask = join(f.dir, "memtask");
    await execa("cc", ["-O2", "-o", f.memtask, join(import.meta.dirname, "fixtures", "memtask.c")]);
    return f;
  }

  // Compiles fixtures/<name>.c into the fixture's directory; the binary's path.
  async compile(name: string): Promise<string> {
    const out = join(this.dir, name);
    await execa("cc", ["-O2", "-o", out, join(import.meta.dirname, "fixtures", `${name}.c`)]);
    return out;
  }

  // A fresh mount (fresh cache directory, fresh chunk store: nothing known locally).
  async remount(): Promise<FusionMount> {
    await this.unmount();
    this.mounts++;
    this.store = createSnapshotStore({ client: this.client, bucket: BUCKET, workPrefix: WORK_PREFIX });
    this.mount = await mountFusion({
      // The same path every time: CRIU restores files and cwd by absolute path (a real
      // restore host mounts Fusion where the dumping host had it).
      mountpoint: join(this.dir, "mnt"),
      cacheDir: join(this.dir, `cache-${this.mounts}`),
      client: this.client,
      buckets: [BUCKET],
      chunkedAreas: snapshotMountAreas({ store: this.store, workPrefix: WORK_PREFIX }),
    });
    return this.mount;
  }

  // Unmounts and removes the mount's cache directory: "the machine is gone".
  async unmount(): Promise<void> {
    await this.mount?.close();
    await this.store?.close();
    if (this.mount) await rm(this.mount.options.cacheDir, { recursive: true, force: true });
    this.mount = undefined;
    this.store = undefined;
  }

  engine(options: Partial<SnapshotEngineOptions> = {}): SnapshotEngine {
    if (!this.mount) throw new Error("not mounted");
    return new SnapshotEngine({
      mount: this.mount,
      client: this.client,
      bucket: BUCKET,
      workPrefix: WORK_PREFIX,
      taskId: "t-1",
      workDir: join(this.dir, "engine-work"),
      gcGraceMs: 0,
      ...(process.env.ENGINE_DEBUG ? { logger: createLogger("engine-test", "debug") } : {}),
      ...options,
    });
  }

  // The work dir on the mount, created through a child process.
  async workDir(): Promise<string> {
    const path = join(this.mountpoint, "s3", BUCKET, WORK_PREFIX);
    await execa("mkdir", ["-p", path]);
    return path;
  }

  get mountpoint(): string {
    if (!this.mount) throw new Error("not mounted");
    return this.mount.mountpoint;
  }

  async getText(key: string): Promise<string> {
    const r = await this.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return (await r.Body?.transformToString("utf8")) ?? "";
  }

  async close(): Promise<void> {
    for (const t of this.tasks) {
      t.kill("SIGKILL");
      await Promise.race([t.exited.catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
    }
    await this.unmount().catch(() => {});
    this.client?.destroy();
    await this.server?.stop();
    if (!process.env.KEEP) await rm(this.dir, { recursive: true, force: true });
  }
}

// Bytes written so far to `path` by any process of the tree under `root` (the position of
// its descriptor, from /proc): progress of a task without reading its file.
export async function writtenBy(root: number, path: string): Promise<number> {
  const queue = [root];
  let best = -1;
  while (queue.length) {
    const pid = queue.shift() as number;
    try {
      for (const fd of await readdir(`/proc/${pid}/fd`)) {
        const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
        if (target !== path) continue;
        const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, "utf8");
        best = Math.max(best, Number(/pos:\s*(\d+)/.exec(info)?.[1] ?? -1));
      }
      const children = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8");
      for (const c of children.trim().split(/\s+/)) if (c) queue.push(Number(c));
    } catch {
      // gone
    }
  }
  return best;
}

export async function waitFor(
  what: string,
  predicate: () => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
