import { mkdir, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import type { BenchContext } from "../harness/context.js";
import { toolVersion } from "../harness/tools.js";
import type { FsSession, FsTarget } from "./fs-target.js";
import { startFuseDaemon } from "./mount.js";
import { MountedSession } from "./mounted-session.js";

// rclone mount as its documentation recommends for applications that write files:
// --vfs-cache-mode writes (writes land in a local cache, then upload; reads stream with
// rclone's default chunked reading), with the upload started at close (--vfs-write-back 0s)
// instead of 5 s later, so the write figure is not a timer.
export const rcloneTarget: FsTarget = {
  name: "rclone",
  settings:
    "rclone mount --vfs-cache-mode writes --vfs-write-back 0s (cache on local disk), defaults otherwise (s3 upload_concurrency 4, chunk 5 MiB, vfs-read-chunk-size 128M)",
  async unavailable() {
    return (await toolVersion("rclone", ["version"])) ? undefined : "rclone is not installed";
  },
  async open(context: BenchContext): Promise<FsSession> {
    const { endpoint } = context;
    const dir = await mkdtemp(join(context.workDir, "rclone-"));
    const mountpoint = join(dir, "mnt");
    await mkdir(mountpoint);
    const mount = await startFuseDaemon({
      name: "rclone",
      command: "rclone",
      args: [
        "mount",
        `bench:${endpoint.bucket}`,
        mountpoint,
        "--vfs-cache-mode",
        "writes",
        "--vfs-write-back",
        "0s",
        "--cache-dir",
        join(dir, "cache"),
        "--log-level",
        "ERROR",
      ],
      env: {
        RCLONE_CONFIG: join(dir, "rclone.conf"),
        RCLONE_CONFIG_BENCH_TYPE: "s3",
        RCLONE_CONFIG_BENCH_PROVIDER: "Other",
        RCLONE_CONFIG_BENCH_ENDPOINT: endpoint.url,
        RCLONE_CONFIG_BENCH_REGION: endpoint.region,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: endpoint.accessKeyId,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: endpoint.secretAccessKey,
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: "true",
      },
      mountpoint,
      signal: context.signal,
    });
    return new MountedSession(mount, mountpoint, context);
  },
};
