// Child process that serves this project's filesystem (driver/) for the benchmark, with
// the driver's defaults, until SIGTERM. It exists because a FUSE filesystem must not be
// used from the process that serves it; `snapctl mount` does the same for users.
// Usage: main.ts <mountpoint> <endpoint> <bucket> <cacheDir>  (credentials from AWS_* env)
import { mountFusion } from "../../../driver/index.js";

const [mountpoint, endpoint, bucket, cacheDir] = process.argv.slice(2);
if (!mountpoint || !endpoint || !bucket || !cacheDir) {
  process.stderr.write("usage: main.ts <mountpoint> <endpoint> <bucket> <cacheDir>\n");
  process.exit(2);
}
const mount = await mountFusion({ mountpoint, endpoint, buckets: [bucket], forcePathStyle: true, cacheDir });
const stop = () => {
  mount.close().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`close failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
