// A local cloud (s3rver, redis-server, IMDS emulator), a private $SNAPCTL_HOME and a fixed
// mountpoint for agent tests. Tests read the task's files through S3, never through a
// mount the test process itself serves.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Queue } from "bullmq";
import { execa, type ResultPromise } from "execa";
import { LocalCloud, localCloudEnv } from "../../cloud/index.js";
import { nodeEntry, repoRoot } from "../../common/entry.js";
import { EVENTS_QUEUE, type TaskEvent, taskEventSchema } from "../../protocol/index.js";

export const BUCKET = "work";

export class AgentFixture {
  cloud!: LocalCloud;
  dir = "";
  home = "";
  client!: S3Client;
  private children: ResultPromise[] = [];

  static async start(): Promise<AgentFixture> {
    const f = new AgentFixture();
    f.dir = await mkdtemp(join(tmpdir(), "snap-agent-"));
    f.home = join(f.dir, "home");
    f.cloud = await LocalCloud.start({ directory: join(f.dir, "cloud"), buckets: [BUCKET] });
    f.client = new S3Client({
      endpoint: f.cloud.s3.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    return f;
  }

  // The mountpoint: one path for every agent of a test, as on real machines (restored
  // processes find their files by absolute path).
  get mountpoint(): string {
    return join(this.dir, "mnt");
  }

  env(): Record<string, string> {
    const e = localCloudEnv({
      s3: this.cloud.s3.endpoint,
      redis: this.cloud.redis.url,
      imds: this.cloud.imds.endpoint,
      region: "us-east-1",
    });
    return { ...e, SNAPCTL_HOME: this.home, SNAPCTL_LOG_LEVEL: process.env.SNAPCTL_TEST_LOG ?? "warn" };
  }

  // `snapctl agent run ...` as a child process (a real agent: its own FUSE mount, signals).
  agent(args: string[], env: Record<string, string> = {}): ResultPromise {
    const { command, args: nodeArgs } = nodeEntry("cli/snapctl");
    const child = execa(command, [...nodeArgs, "agent", "run", ...args], {
      cwd: repoRoot,
      env: { ...this.env(), ...env },
      reject: false,
      stdin: "ignore",
      timeout: 180_000,
      killSignal: "SIGKILL",
    });
    this.children.push(child);
    return child;
  }

  async snapctl(args: string[]) {
    const { command, args: nodeArgs } = nodeEntry("cli/snapctl");
    return await execa(command, [...nodeArgs, ...args], {
      cwd: repoRoot,
      env: this.env(),
      reject: false,
      stdin: "ignore",
      timeout: 120_000,
    });
  }

  async getText(key: string): Promise<string | undefined> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      return await r.Body?.transformToString("utf8");
    } catch (err) {
      if ((err as { name?: string }).name === "NoSuchKey") return undefined;
      throw err;
    }
  }

  // Every event in the controller's queue, oldest first, each checked against the contract.
  async events(prefix = "bull"): Promise<TaskEvent[]> {
    const url = new URL(this.cloud.redis.url);
    const queue = new Queue(EVENTS_QUEUE, {
      prefix,
      connection: { host: url.hostname, port: Number(url.port) },
    });
    try {
      const jobs = await queue.getJobs(["waiting"], 0, -1, true);
      return jobs.map((job) => {
        const parsed = taskEventSchema.safeParse(job.data);
        if (!parsed.success)
          throw new Error(`event ${JSON.stringify(job.data)} breaks the contract: ${parsed.error.message}`);
        return job.data as TaskEvent;
      });
    } finally {
      await queue.close();
    }
  }

  async outboxFile(taskId: string): Promise<string> {
    return await readFile(join(this.home, "agents", taskId, "outbox.jsonl"), "utf8").catch(() => "");
  }

  async close(): Promise<void> {
    for (const child of this.children) {
      if (child.exitCode === null && child.pid) child.kill("SIGKILL");
      await child.catch(() => {});
    }
    // A killed agent may leave its mount behind: detach it.
    const mounts = await readFile("/proc/self/mounts", "utf8");
    if (mounts.includes(` ${this.mountpoint} `))
      await execa("fusermount", ["-u", "-z", this.mountpoint], { reject: false });
    this.client?.destroy();
    await this.cloud?.close();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  async listAgents(): Promise<string[]> {
    return await readdir(join(this.home, "agents")).catch(() => []);
  }
}

// Polls `check` until it is true (a wait, not a timed assertion).
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
