import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { freePort } from "../../common/ports.js";
import { ManagedChild } from "../child.js";
import { CloudError } from "../errors.js";

export interface RedisServerOptions {
  // Working directory of this instance (its own, never the system service's).
  directory: string;
  // The redis-server binary. Default: /usr/bin/redis-server, else from PATH.
  binary?: string;
  host?: string;
  // Port; 0 (default) picks a free one. Restarts reuse the first port chosen.
  port?: number;
}

// A private redis-server child process on loopback, restartable on the same port.
export class RedisServer {
  private child?: ManagedChild<true>;
  private port: number;
  readonly host: string;
  private binary: string;

  constructor(private options: RedisServerOptions) {
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 0;
    this.binary =
      options.binary ?? (existsSync("/usr/bin/redis-server") ? "/usr/bin/redis-server" : "redis-server");
  }

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child?.running ?? false;
  }

  async start(): Promise<void> {
    if (this.child?.running) return;
    await mkdir(this.options.directory, { recursive: true });
    const fixedPort = this.port !== 0;
    // redis-server cannot bind port 0 for us: probe a free port, retry if it was taken meanwhile.
    for (let attempt = 1; ; attempt++) {
      const port = fixedPort ? this.port : await freePort(this.host);
      const child = new ManagedChild<true>({
        name: "redis-server",
        command: this.binary,
        args: [
          "--port",
          String(port),
          "--bind",
          this.host,
          "--dir",
          this.options.directory,
          // Append-only persistence: the task registry must survive a Redis restart.
          "--save",
          "",
          "--appendonly",
          "yes",
          "--appendfsync",
          "everysec",
          "--daemonize",
          "no",
          "--protected-mode",
          "yes",
          "--loglevel",
          "notice",
          "--logfile",
          "",
        ],
        ready: (line) => line.includes("Ready to accept connections") || undefined,
      });
      try {
        await child.ready;
        this.child = child;
        this.port = port;
        return;
      } catch (err) {
        await child.kill();
        const inUse = String((err as Error).message).includes("Address already in use");
        if (!inUse || fixedPort || attempt >= 5) {
          if ((err as NodeJS.ErrnoException).cause && String(err).includes("ENOENT")) {
            throw new CloudError(
              "CLOUD_REDIS_MISSING",
              `redis-server not found at "${this.binary}": install it with apt-get install -y redis-server`,
              { cause: err },
            );
          }
          throw err;
        }
      }
    }
  }

  async stop(): Promise<void> {
    await this.child?.stop();
  }

  async kill(): Promise<void> {
    await this.child?.kill();
  }
}
