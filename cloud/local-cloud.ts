import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ImdsEmulator } from "./imds/emulator.js";
import { RedisServer } from "./redis/server.js";
import { S3Server } from "./s3/server.js";

export interface LocalCloudOptions {
  // Private directory for S3 objects and Redis data. Default: a new temporary directory,
  // removed by close().
  directory?: string;
  // Buckets created at start. Default ["snapshots"].
  buckets?: string[];
  // Ports; 0 (default) picks free ones.
  s3Port?: number;
  redisPort?: number;
  imdsPort?: number;
}

export interface LocalCloudEndpoints {
  s3: string;
  redis: string;
  imds: string;
  region: string;
  buckets: string[];
  directory: string;
}

// The embedded local cloud: S3 (s3rver), Redis (redis-server) and an EC2 instance
// metadata service emulator, all on loopback with free ports and a private directory.
export class LocalCloud {
  readonly s3: S3Server;
  readonly redis: RedisServer;
  readonly imds: ImdsEmulator;
  readonly directory: string;
  readonly buckets: string[];
  private ownsDirectory: boolean;
  private closing?: Promise<void>;

  private constructor(directory: string, ownsDirectory: boolean, options: LocalCloudOptions) {
    this.directory = directory;
    this.ownsDirectory = ownsDirectory;
    this.buckets = options.buckets ?? ["snapshots"];
    this.s3 = new S3Server({ directory: join(directory, "s3"), buckets: this.buckets, port: options.s3Port });
    this.redis = new RedisServer({ directory: join(directory, "redis"), port: options.redisPort });
    this.imds = new ImdsEmulator({ port: options.imdsPort });
  }

  // Starts every service; on failure stops what did start and rethrows.
  static async start(options: LocalCloudOptions = {}): Promise<LocalCloud> {
    const owns = options.directory === undefined;
    const directory = options.directory ?? (await mkdtemp(join(tmpdir(), "snap-cloud-")));
    const cloud = new LocalCloud(directory, owns, options);
    try {
      await Promise.all([cloud.s3.start(), cloud.redis.start(), cloud.imds.start()]);
    } catch (err) {
      await cloud.close();
      throw err;
    }
    return cloud;
  }

  get endpoints(): LocalCloudEndpoints {
    return {
      s3: this.s3.endpoint,
      redis: this.redis.url,
      imds: this.imds.endpoint,
      region: "us-east-1",
      buckets: this.buckets,
      directory: this.directory,
    };
  }

  // Environment variables that point AWS SDKs and snapctl at this cloud: the SDKs'
  // standard endpoint settings, so no code needs to know it is talking to a local cloud.
  env(): Record<string, string> {
    const e = this.endpoints;
    return localCloudEnv(e);
  }

  // Stops every service (each step runs even if another fails); idempotent.
  close(): Promise<void> {
    this.closing ??= (async () => {
      const results = await Promise.allSettled([this.s3.stop(), this.redis.stop(), this.imds.stop()]);
      if (this.ownsDirectory) await rm(this.directory, { recursive: true, force: true });
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    })();
    return this.closing;
  }
}

// The environment that points the AWS SDKs and snapctl at a local cloud's endpoints.
export function localCloudEnv(
  e: Pick<LocalCloudEndpoints, "s3" | "redis" | "imds" | "region">,
): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_S3: e.s3,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: e.imds,
    AWS_REGION: e.region,
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
    SNAPCTL_S3_FORCE_PATH_STYLE: "1",
    SNAPCTL_REDIS_URL: e.redis,
  };
}
