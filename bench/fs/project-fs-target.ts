import { existsSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { nodeEntry, repoRoot } from "../../common/entry.js";
import type { BenchContext } from "../harness/context.js";
import type { FsSession, FsTarget } from "./fs-target.js";
import { startFuseDaemon } from "./mount.js";
import { MountedSession } from "./mounted-session.js";

// This project's filesystem (driver/, default options) served by its own process, keys
// under <mountpoint>/s3/<bucket>/<key>. It is mounted through the driver's public entry
// (bench/fs/snapfs/main.ts) rather than `snapctl mount`, which does not exist yet; both
// run the same mountFusion() with the same defaults.
export const projectFsTarget: FsTarget = {
  name: "spot-snapshots",
  settings:
    "driver/ mountFusion() defaults (8 MiB parts, prefetch 8 to 128 MiB, 16 GETs, 16 MiB upload parts x 8, disk block cache in a fresh dir), in its own process",
  async unavailable() {
    return existsSync(join(repoRoot, "driver", "index.ts"))
      ? undefined
      : "not built yet (driver/index.ts missing)";
  },
  async open(context: BenchContext): Promise<FsSession> {
    const { endpoint } = context;
    const dir = await mkdtemp(join(context.workDir, "snapfs-"));
    const mountpoint = join(dir, "mnt");
    await mkdir(mountpoint);
    const { command, args } = nodeEntry("bench/fs/snapfs/main");
    const mount = await startFuseDaemon({
      name: "spot-snapshots driver",
      command,
      args: [...args, mountpoint, endpoint.url, endpoint.bucket, join(dir, "cache")],
      env: {
        AWS_REGION: endpoint.region,
        AWS_ACCESS_KEY_ID: endpoint.accessKeyId,
        AWS_SECRET_ACCESS_KEY: endpoint.secretAccessKey,
      },
      stopSignal: "SIGTERM",
      mountpoint,
      signal: context.signal,
    });
    return new MountedSession(mount, join(mountpoint, "s3", endpoint.bucket), context);
  },
};
