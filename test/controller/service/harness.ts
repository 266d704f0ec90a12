import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import type { LaunchRequest, Provider, TaskRecord, TaskState } from "../../../controller/index.js";
import {
  ControllerClient,
  ControllerService,
  type ControllerServiceOptions,
  LocalProvider,
} from "../../../controller/index.js";
import { PersistentRedis } from "./persistent-redis.js";

export const FAKE_AGENT = "test/controller/service/fixtures/fake-agent";

// One persistent redis-server and a temporary directory per test file; per test a local
// provider (the "cloud", shared by the controllers of the test), controllers and clients,
// all closed by cleanup().
export class ServiceHarness {
  redis!: PersistentRedis;
  dir = "";
  private closers: Array<() => Promise<unknown>> = [];
  private tests = 0;

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), "snapctl-service-"));
    this.redis = new PersistentRedis(this.dir);
    await this.redis.start();
  }

  async stop(): Promise<void> {
    await this.redis?.kill();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  // A fresh test: its own key prefix, provider and compute environment file.
  async setup(
    snapshots: Record<string, unknown>,
    agentEnv: Record<string, string> = {},
  ): Promise<TestContext> {
    this.tests += 1;
    const prefix = `t${this.tests}-${randomBytes(2).toString("hex")}:`;
    const root = join(this.dir, `test${this.tests}`);
    const envFile = join(this.dir, `env${this.tests}.yaml`);
    await writeFile(
      envFile,
      stringify({
        name: `env${this.tests}`,
        provider: "local",
        region: "us-east-1",
        workDir: "s3://snapctl-test/work",
        snapshots,
        local: { zones: ["local-1a", "local-1b", "local-1c"] },
      }),
    );
    const provider = new LocalProvider({
      baseDir: join(root, "instances"),
      zones: ["local-1a", "local-1b", "local-1c"],
      agentEntry: FAKE_AGENT,
      env: { SNAPCTL_REDIS_URL: this.redis.url, ...agentEnv },
    });
    this.closers.push(() => provider.close());
    const client = new ControllerClient({ redisUrl: this.redis.url, prefix });
    this.closers.push(() => client.close());
    const service = (options: Partial<ControllerServiceOptions> = {}) => {
      const s = new ControllerService({
        redisUrl: this.redis.url,
        prefix,
        stateDir: root,
        provider,
        sweepIntervalMs: 300,
        leaseTtlMs: 2_000,
        deferRetryMs: 200,
        ...options,
      });
      this.closers.push(() => s.close());
      return s;
    };
    return { prefix, envFile, provider, client, service };
  }

  async cleanup(): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) {
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`cleanup step stuck: ${close.toString()}`)), 20_000);
      });
      try {
        await Promise.race([close(), stuck]);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

export interface TestContext {
  prefix: string;
  envFile: string;
  provider: LocalProvider;
  client: ControllerClient;
  service: (options?: Partial<ControllerServiceOptions>) => ControllerService;
}

// Polls until `check` returns a value (not undefined/false); fails after `timeoutMs`.
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function inState(client: ControllerClient, id: string, ...states: TaskState[]) {
  return until(`task ${id} in ${states.join("/")}`, async () => {
    const task = await client.registry.getTask(id);
    return task && states.includes(task.state) ? (task as TaskRecord) : undefined;
  });
}

// A provider that launches for real, then "crashes" (never answers) for attempts >= `from`
// until its caller gives up: a controller dying between launch and recordLaunch.
export function crashingAfterLaunch(inner: Provider, from: number): Provider & { launched: number } {
  const wrapper = {
    kind: inner.kind,
    launched: 0,
    async launch(request: LaunchRequest) {
      const instance = await inner.launch(request);
      if (request.attempt < from) return instance;
      wrapper.launched += 1;
      return await new Promise<never>((_, reject) => {
        request.signal?.addEventListener("abort", () => reject(new Error("controller crashed")), {
          once: true,
        });
      });
    },
    terminate: (id: string) => inner.terminate(id),
    describe: (id: string) => inner.describe?.(id) ?? Promise.resolve(undefined),
    findTaskInstances: (taskId: string) => inner.findTaskInstances?.(taskId) ?? Promise.resolve([]),
  };
  return wrapper;
}
