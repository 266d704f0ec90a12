import { mkdir } from "node:fs/promises";
import { nodeEntry } from "../../common/entry.js";
import { ManagedChild } from "../child.js";

export interface S3ServerOptions {
  // Where objects are stored; kept across restarts.
  directory: string;
  // Loopback address to listen on. Default 127.0.0.1.
  host?: string;
  // Port; 0 (default) picks a free one. Restarts reuse the first port chosen.
  port?: number;
  // Buckets created at start.
  buckets?: string[];
}

// The embedded S3 endpoint: s3rver in a child process, restartable on the same port.
export class S3Server {
  private child?: ManagedChild<number>;
  private port: number;
  readonly host: string;

  constructor(private options: S3ServerOptions) {
    this.host = options.host ?? "127.0.0.1";
    this.port = options.port ?? 0;
  }

  get endpoint(): string {
    return `http://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child?.running ?? false;
  }

  // Starts the server (or starts it again after stop/kill); resolves once it listens.
  async start(): Promise<void> {
    if (this.child?.running) return;
    await mkdir(this.options.directory, { recursive: true });
    // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only
    // offers through its legacy provider: without it every listing past 1,000 keys fails.
    const { command, args } = nodeEntry("cloud/s3/main", ["--openssl-legacy-provider"]);
    this.child = new ManagedChild<number>({
      name: "s3rver",
      command,
      args: [...args, this.options.directory, this.host, String(this.port), ...(this.options.buckets ?? [])],
      ready: (line) => {
        try {
          return (JSON.parse(line) as { port?: number }).port;
        } catch {
          return undefined;
        }
      },
    });
    this.port = await this.child.ready;
  }

  // Graceful stop; idempotent.
  async stop(): Promise<void> {
    await this.child?.stop();
  }

  // Abrupt stop, as a crashed or unreachable endpoint.
  async kill(): Promise<void> {
    await this.child?.kill();
  }
}
