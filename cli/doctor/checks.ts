import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ListBucketsCommand, S3Client } from "@aws-sdk/client-s3";
import { MetadataService } from "@aws-sdk/ec2-metadata-service";
import { execa } from "execa";
import { Redis } from "ioredis";
import { detectCriuFeatures, requireCriu } from "../../criu/index.js";

export interface CheckResult {
  name: string;
  ok: boolean;
  // Whether a failure makes the environment unusable (informational checks are not).
  required: boolean;
  detail: string;
  // What to do about a failure.
  fix?: string;
}

const TIMEOUT_MS = 5_000;

// The part of fuse-native this check uses (kept apart from driver/ on purpose: the check
// must tell whether FUSE itself works, whatever the state of our filesystem).
type FuseClass = new (
  mountpoint: string,
  ops: Record<string, (...args: never[]) => void>,
  options: Record<string, unknown>,
) => { mount(cb: (err?: Error) => void): void; unmount(cb: (err?: Error) => void): void };

// Runs `fn` with an AbortSignal that fires after TIMEOUT_MS, so no check can hang.
async function bounded<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const signal = AbortSignal.timeout(TIMEOUT_MS);
  return await fn(signal);
}

export async function checkCriu(): Promise<CheckResult[]> {
  const name = "CRIU bundle";
  let launcher: string;
  try {
    launcher = requireCriu();
  } catch (err) {
    return [
      { name, ok: false, required: true, detail: (err as Error).message, fix: "run criu/bundle/install.sh" },
    ];
  }
  try {
    const f = await bounded((signal) => detectCriuFeatures({ signal, fresh: true }));
    const results: CheckResult[] = [
      {
        name,
        ok: f.checkOk,
        required: true,
        detail: f.checkOk
          ? `criu ${f.version} at ${launcher}: criu check looks good`
          : `criu check failed: ${f.checkMessage}`,
        fix: f.checkOk
          ? undefined
          : "run as root on a kernel with CONFIG_CHECKPOINT_RESTORE; see docs/troubleshooting in README",
      },
      {
        name: "CRIU features",
        ok: true,
        required: false,
        detail: [
          `soft-dirty ${f.memDirtyTrack ? "yes (pre-dumps shorten the freeze)" : "no (full dumps; uploads stay incremental by content)"}`,
          `uffd ${f.uffd ? "yes (lazy restore possible)" : "no (eager restore only)"}`,
          `uffd-noncoop ${f.uffdNoncoop ? "yes" : "no"}`,
        ].join(", "),
      },
    ];
    return results;
  } catch (err) {
    return [
      {
        name,
        ok: false,
        required: true,
        detail: (err as Error).message,
        fix: "reinstall with criu/bundle/install.sh",
      },
    ];
  }
}

export async function checkFuse(): Promise<CheckResult> {
  const name = "FUSE";
  if (!existsSync("/dev/fuse")) {
    return {
      name,
      ok: false,
      required: true,
      detail: "/dev/fuse is missing",
      fix: "load the fuse module (modprobe fuse), or run the container with --device /dev/fuse --cap-add SYS_ADMIN",
    };
  }
  const dir = await mkdtemp(join(tmpdir(), "snap-doctor-fuse-"));
  let Fuse: FuseClass;
  try {
    Fuse = (await import("fuse-native")).default as unknown as FuseClass;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    return {
      name,
      ok: false,
      required: true,
      detail: `fuse-native does not load: ${(err as Error).message}`,
      fix: "run scripts/setup.sh (npm install builds it)",
    };
  }
  // A one-file filesystem: mounted, read through the kernel by a child process, unmounted.
  const fuse = new Fuse(
    dir,
    {
      getattr: (path: string, cb: (code: number, stat?: unknown) => void) => {
        if (path === "/")
          return cb(0, {
            mtime: new Date(),
            atime: new Date(),
            ctime: new Date(),
            size: 4096,
            mode: 0o40755,
            uid: 0,
            gid: 0,
            nlink: 2,
          });
        return cb(-2); // ENOENT
      },
      readdir: (_path: string, cb: (code: number, names?: string[]) => void) => cb(0, []),
    },
    { force: true, mkdir: false },
  );
  try {
    await new Promise<void>((resolve, reject) =>
      fuse.mount((err?: Error) => (err ? reject(err) : resolve())),
    );
    try {
      await execa("stat", ["-f", "-c", "%T", dir], { timeout: TIMEOUT_MS });
      return { name, ok: true, required: true, detail: "mounted and read a test filesystem" };
    } finally {
      await new Promise<void>((resolve) => fuse.unmount(() => resolve()));
    }
  } catch (err) {
    return {
      name,
      ok: false,
      required: true,
      detail: `cannot mount: ${(err as Error).message}`,
      fix: "run as root (or with CAP_SYS_ADMIN) and install fuse: apt-get install -y fuse libfuse2",
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function checkS3(): Promise<CheckResult> {
  const name = "S3";
  const endpoint =
    process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL ?? "the AWS default endpoint";
  const client = new S3Client({
    forcePathStyle: process.env.SNAPCTL_S3_FORCE_PATH_STYLE === "1",
    maxAttempts: 1,
  });
  try {
    const out = await bounded((abortSignal) => client.send(new ListBucketsCommand({}), { abortSignal }));
    const names = (out.Buckets ?? []).map((b) => b.Name).join(", ");
    return { name, ok: true, required: true, detail: `${endpoint} answers; buckets: ${names || "(none)"}` };
  } catch (err) {
    return {
      name,
      ok: false,
      required: true,
      detail: `${endpoint}: ${(err as Error).name}: ${(err as Error).message}`,
      fix: "start the local cloud (snapctl local up) or set AWS_ENDPOINT_URL_S3, AWS_REGION and credentials",
    };
  } finally {
    client.destroy();
  }
}

export async function checkRedis(): Promise<CheckResult> {
  const name = "Redis";
  const url = process.env.SNAPCTL_REDIS_URL ?? "redis://127.0.0.1:6379";
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on("error", () => {});
  try {
    await redis.connect();
    const pong = await redis.ping();
    return { name, ok: pong === "PONG", required: true, detail: `${url} answers PING` };
  } catch (err) {
    return {
      name,
      ok: false,
      required: true,
      detail: `${url}: ${(err as Error).message}`,
      fix: "start the local cloud (snapctl local up) or set SNAPCTL_REDIS_URL to a running Redis",
    };
  } finally {
    redis.disconnect();
  }
}

export async function checkImds(): Promise<CheckResult> {
  const name = "IMDS";
  const endpoint = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? "http://169.254.169.254";
  try {
    const client = new MetadataService({ httpOptions: { timeout: TIMEOUT_MS } });
    const id = await bounded(() => client.request("/latest/meta-data/instance-id", {}));
    const zone = await client.request("/latest/meta-data/placement/availability-zone", {});
    return { name, ok: true, required: true, detail: `${endpoint}: instance ${id} in ${zone} (IMDSv2)` };
  } catch (err) {
    return {
      name,
      ok: false,
      required: true,
      detail: `${endpoint}: ${(err as Error).message}`,
      fix: "on EC2, allow IMDSv2 with a hop limit >= 2 for containers; locally, start the local cloud (snapctl local up) or set AWS_EC2_METADATA_SERVICE_ENDPOINT",
    };
  }
}

// Every check, in the order they are printed.
export async function runChecks(): Promise<CheckResult[]> {
  const criu = await checkCriu();
  const fuse = await checkFuse();
  const [s3, redis, imds] = await Promise.all([checkS3(), checkRedis(), checkImds()]);
  return [...criu, fuse, s3, redis, imds];
}
