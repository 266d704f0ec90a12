import type { Command } from "commander";
import { createLogger } from "../../common/log.js";
import { DEFAULT_FUSION_OPTIONS, DriverError, type FusionOptions, mountFusion } from "../../driver/index.js";

// "10G", "512MiB", "8m", "4096" -> bytes.
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new DriverError("DRIVER_INVALID_OPTION", `"${text}" is not a size (e.g. 512M, 10G, 4096)`);
  const unit = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[(m[2] ?? "").toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * unit);
}

const collect = (value: string, previous: string[]) => [...previous, value];
const int = (text: string) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0)
    throw new DriverError("DRIVER_INVALID_OPTION", `"${text}" is not a positive integer`);
  return n;
};

interface MountFlags {
  bucket: string[];
  cacheDir?: string;
  cacheSize?: number;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  partSize?: number;
  prefetchMax?: number;
  readMemory?: number;
  maxGets?: number;
  uploadPartSize?: number;
  uploadConcurrency?: number;
  uploadMemory?: number;
}

// snapctl mount <mountpoint>: the Fusion filesystem in the foreground. Prints
// {"mounted":"<path>"} on stdout once mounted; SIGINT/SIGTERM flush, unmount and exit.
export function registerMount(program: Command): void {
  const d = DEFAULT_FUSION_OPTIONS;
  program
    .command("mount")
    .description("Mount S3 as <mountpoint>/s3/<bucket>/<key...> (Fusion filesystem) until SIGINT/SIGTERM")
    .argument("<mountpoint>", "directory to mount on (created when missing)")
    .option(
      "--bucket <name>",
      "bucket to show under s3/ (repeatable; ListBuckets adds the rest when allowed)",
      collect,
      [],
    )
    .option("--cache-dir <dir>", "disk block cache directory (default: a temporary directory)")
    .option("--cache-size <size>", `disk cache limit (default ${d.cacheSize / 2 ** 30}G)`, parseSize)
    .option("--endpoint <url>", "S3 endpoint (default: AWS_ENDPOINT_URL_S3 or AWS)")
    .option("--region <region>", "S3 region (default: the AWS configuration chain)")
    .option("--force-path-style", "path-style S3 URLs (also SNAPCTL_S3_FORCE_PATH_STYLE=1)")
    .option(
      "--part-size <size>",
      `read part size, one ranged GET (default ${d.partSize / 2 ** 20}M)`,
      parseSize,
    )
    .option(
      "--prefetch-max <size>",
      `largest prefetch window per open file (default ${d.prefetchMax / 2 ** 20}M)`,
      parseSize,
    )
    .option(
      "--read-memory <size>",
      `memory for read data, all files (default ${d.readMemory / 2 ** 20}M)`,
      parseSize,
    )
    .option("--max-gets <n>", `concurrent ranged GETs (default ${d.maxConcurrentGets})`, int)
    .option(
      "--upload-part-size <size>",
      `multipart part size (default ${d.uploadPartSize / 2 ** 20}M)`,
      parseSize,
    )
    .option("--upload-concurrency <n>", `parts uploading at once (default ${d.uploadConcurrency})`, int)
    .option(
      "--upload-memory <size>",
      `memory for data waiting to upload (default ${d.uploadMemory / 2 ** 20}M)`,
      parseSize,
    )
    .action(async (mountpoint: string, flags: MountFlags) => {
      const logger = createLogger("snapctl-mount");
      const options: FusionOptions = {
        mountpoint,
        buckets: flags.bucket,
        cacheDir: flags.cacheDir,
        cacheSize: flags.cacheSize,
        endpoint: flags.endpoint,
        region: flags.region,
        forcePathStyle: flags.forcePathStyle,
        partSize: flags.partSize,
        prefetchMax: flags.prefetchMax,
        readMemory: flags.readMemory,
        maxConcurrentGets: flags.maxGets,
        uploadPartSize: flags.uploadPartSize,
        uploadConcurrency: flags.uploadConcurrency,
        uploadMemory: flags.uploadMemory,
        logger,
      };
      const mount = await mountFusion(options);
      const stop = new Promise<string>((resolve) => {
        process.once("SIGINT", () => resolve("SIGINT"));
        process.once("SIGTERM", () => resolve("SIGTERM"));
      });
      process.stdout.write(`${JSON.stringify({ mounted: mount.mountpoint })}\n`);
      const signal = await stop;
      logger.info({ signal }, "unmounting");
      await mount.close();
    });
}
