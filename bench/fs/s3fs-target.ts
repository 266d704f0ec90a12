import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BenchContext } from "../harness/context.js";
import { toolVersion } from "../harness/tools.js";
import type { FsSession, FsTarget } from "./fs-target.js";
import { startFuseDaemon } from "./mount.js";
import { MountedSession } from "./mounted-session.js";

// Debian's s3fs with its defaults (no local cache, 5 parallel 10 MB multipart parts),
// path-style requests to the benchmark endpoint.
export const s3fsTarget: FsTarget = {
  name: "s3fs",
  settings:
    "s3fs (Debian) defaults: no use_cache, parallel_count=5, multipart_size=10 MB; use_path_request_style",
  async unavailable() {
    return (await toolVersion("s3fs")) ? undefined : "s3fs is not installed";
  },
  async open(context: BenchContext): Promise<FsSession> {
    const { endpoint } = context;
    const dir = await mkdtemp(join(context.workDir, "s3fs-"));
    const mountpoint = join(dir, "mnt");
    await mkdir(mountpoint);
    const passwd = join(dir, "passwd");
    await writeFile(passwd, `${endpoint.accessKeyId}:${endpoint.secretAccessKey}\n`, { mode: 0o600 });
    const mount = await startFuseDaemon({
      name: "s3fs",
      command: "s3fs",
      args: [
        endpoint.bucket,
        mountpoint,
        "-f",
        "-o",
        `passwd_file=${passwd},url=${endpoint.url},use_path_request_style,endpoint=${endpoint.region},dbglevel=err`,
      ],
      mountpoint,
      signal: context.signal,
    });
    return new MountedSession(mount, mountpoint, context);
  },
};
