import { existsSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { nodeEntry, repoRoot } from "../../common/entry.js";
import type { BenchContext } from "../harness/context.js";
import type { FsSession, FsTarget } from "./fs-target.js";
import { startFuseDaemon } from "./mount.js";
import { MountedSession } from "./mounted-session.js";

const required = ["driver/index.ts", "cli/commands/mount.ts"];

// This project's filesystem (driver/) as a user starts it: `snapctl mount <dir>` in the
// foreground, S3 endpoint and credentials from the environment; keys appear under
// <dir>/s3/<bucket>/<key>.
export const projectFsTarget: FsTarget = {
  name: "spot-snapshots",
  settings: "snapctl mount (driver/ defaults), endpoint from AWS_ENDPOINT_URL_S3",
  async unavailable() {
    const missing = required.filter((path) => !existsSync(join(repoRoot, path)));
    return missing.length > 0 ? `not built yet (${missing.join(", ")} missing)` : undefined;
  },
  async open(context: BenchContext): Promise<FsSession> {
    const { endpoint } = context;
    const dir = await mkdtemp(join(context.workDir, "snapfs-"));
    const mountpoint = join(dir, "mnt");
    await mkdir(mountpoint);
    const { command, args } = nodeEntry("cli/main");
    const mount = await startFuseDaemon({
      name: "snapctl mount",
      command,
      args: [...args, "mount", mountpoint],
      env: {
        AWS_ENDPOINT_URL_S3: endpoint.url,
        AWS_REGION: endpoint.region,
        AWS_ACCESS_KEY_ID: endpoint.accessKeyId,
        AWS_SECRET_ACCESS_KEY: endpoint.secretAccessKey,
        SNAPCTL_CACHE_DIR: join(dir, "cache"),
        SNAPCTL_LOG_LEVEL: "warn",
      },
      mountpoint,
      signal: context.signal,
    });
    return new MountedSession(mount, join(mountpoint, "s3", endpoint.bucket), context);
  },
};
