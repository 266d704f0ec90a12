import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { S3Server } from "../../../cloud/index.js";
import { nodeEntry } from "../../../common/entry.js";
import { S3Proxy } from "./s3-proxy.js";

export const BUCKET = "fusion-test";

// s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only has in its
// legacy provider: without it every truncated listing is an InternalError. The S3Server child
// inherits this environment (cloud/ does not set it; reported to its owner).
if (!process.env.NODE_OPTIONS?.includes("--openssl-legacy-provider"))
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --openssl-legacy-provider`.trim();

export interface MountChildOptions {
  cacheSize?: number;
  readMemory?: number;
  blockSize?: number;
  partSize?: number;
  uploadPartSize?: number;
  requestTimeoutMs?: number;
  maxAttempts?: number;
  statTtlMs?: number;
  chunkAreas?: Array<{ bucket: string; prefix: string }>;
  chunkStore?: "map" | "real";
  uploadMemory?: number;
  uploadConcurrency?: number;
  logLevel?: string;
}

// One mount child process with a request channel.
export class MountChild {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    (answer: { result?: unknown; error?: { message: string; code?: string } }) => void
  >();
  stderr = "";

  private constructor(
    readonly process: ChildProcess,
    readonly mountpoint: string,
  ) {}

  static async start(env: NodeJS.ProcessEnv, options: object): Promise<MountChild> {
    const { command, args } = nodeEntry("test/driver/helpers/mount-child");
    const child = spawn(command, [...args, JSON.stringify(options)], {
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-20_000);
      if (process.env.FUSION_TEST_VERBOSE) process.stderr.write(d);
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    let instance: MountChild | undefined;
    const mounted = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mount child did not start: ${stderr}`)), 30_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`mount child exited with ${code}: ${stderr}`));
      });
      lines.on("line", (line) => {
        const msg = JSON.parse(line) as { mounted?: string; id?: number };
        if (msg.mounted) {
          clearTimeout(timer);
          resolve(msg.mounted);
        } else if (msg.id !== undefined) {
          instance?.waiting.get(msg.id)?.(msg as never);
          instance?.waiting.delete(msg.id);
        }
      });
    });
    mounted.catch(() => {});
    try {
      instance = new MountChild(child, await mounted);
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    }
    child.stderr?.on("data", () => {
      if (instance) instance.stderr = stderr;
    });
    return instance;
  }

  async request<T>(op: string, body: object = {}): Promise<T> {
    const id = this.nextId++;
    const answer = new Promise<{ result?: unknown; error?: { message: string; code?: string } }>((resolve) =>
      this.waiting.set(id, resolve),
    );
    this.process.stdin?.write(`${JSON.stringify({ id, op, ...body })}\n`);
    const { result, error } = await answer;
    if (error) throw Object.assign(new Error(error.message), { code: error.code });
    return result as T;
  }

  // SIGTERM: flush and unmount; falls back to SIGKILL and a lazy unmount.
  async stop(): Promise<number | null> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return this.process.exitCode;
    const exited = once(this.process, "exit");
    this.process.kill("SIGTERM");
    const timer = setTimeout(() => this.process.kill("SIGKILL"), 60_000);
    const [code] = (await exited) as [number | null];
    clearTimeout(timer);
    await execa("fusermount", ["-u", "-z", this.mountpoint], { reject: false });
    return code;
  }
}

// An s3rver, a mount child on it, and an SDK client for checking what landed in S3. With
// `{ proxy: true }` the mount talks to s3rver through an S3Proxy (recorded requests, If-Match
// enforced); the SDK client always talks to s3rver directly.
export class FusionHarness {
  child!: MountChild;
  readonly client: S3Client;
  proxy: S3Proxy | undefined;

  private constructor(
    readonly dir: string,
    readonly server: S3Server,
    private readonly childOptions: MountChildOptions,
  ) {
    this.client = new S3Client({
      endpoint: server.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
  }

  static async start(
    options: MountChildOptions = {},
    setup: { proxy?: boolean } = {},
  ): Promise<FusionHarness> {
    const dir = await mkdtemp(join(tmpdir(), "fusion-test-"));
    const server = new S3Server({ directory: join(dir, "s3"), buckets: [BUCKET] });
    await server.start();
    const harness = new FusionHarness(dir, server, options);
    try {
      if (setup.proxy) {
        harness.proxy = new S3Proxy(server.endpoint);
        await harness.proxy.start();
      }
      await harness.mount();
    } catch (err) {
      await harness.proxy?.stop();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return harness;
  }

  get mountpoint(): string {
    return join(this.dir, "mnt");
  }

  // The directory of the test bucket inside the mount.
  get root(): string {
    return join(this.mountpoint, "s3", BUCKET);
  }

  env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      AWS_ENDPOINT_URL_S3: this.proxy?.endpoint ?? this.server.endpoint,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "S3RVER",
      AWS_SECRET_ACCESS_KEY: "S3RVER",
      SNAPCTL_S3_FORCE_PATH_STYLE: "1",
    };
  }

  async mount(): Promise<void> {
    this.child = await MountChild.start(this.env(), {
      mountpoint: this.mountpoint,
      buckets: [BUCKET],
      cacheDir: join(this.dir, "cache"),
      ...this.childOptions,
    });
  }

  async remount(): Promise<void> {
    await this.child.stop();
    await this.mount();
  }

  // A shell command run against the mount (in its own process, never in the server's).
  async sh(script: string, options: { reject?: boolean; timeout?: number } = {}) {
    return await execa("bash", ["-c", script], {
      cwd: this.root,
      reject: options.reject ?? true,
      timeout: options.timeout ?? 300_000,
    });
  }

  async close(): Promise<void> {
    try {
      await this.child?.stop();
    } finally {
      this.client.destroy();
      await this.proxy?.stop();
      await this.server.stop();
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}
