import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { RedisServer } from "../../cloud/index.js";

// One private redis-server per test file, and connections that are all closed at the end.
export class RedisFixture {
  server!: RedisServer;
  private dir = "";
  private connections: Redis[] = [];
  private prefixes = 0;

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), "snapctl-registry-"));
    this.server = new RedisServer({ directory: this.dir });
    await this.server.start();
  }

  // A new connection; ioredis keeps retrying while the server is down.
  connect(): Redis {
    const redis = new Redis(this.server.url, { retryStrategy: () => 50 });
    redis.on("error", () => {});
    this.connections.push(redis);
    return redis;
  }

  // A key prefix no other test uses.
  prefix(): string {
    this.prefixes += 1;
    return `test${this.prefixes}:`;
  }

  async stop(): Promise<void> {
    for (const redis of this.connections) redis.disconnect();
    await this.server?.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
