import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { Agent, createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { nodeEntry } from "../../../common/entry.js";

// One request as the proxy saw it on its way to the S3 server.
export interface ProxiedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  // The status the client got (after If-Match enforcement).
  status?: number;
}

// The proxy's HTTP server (run by s3-proxy-child.ts: see S3Proxy). Every request, once
// answered, is passed to `onRecord`.
export class S3ProxyServer {
  private server: Server | undefined;
  private readonly agent = new Agent({ keepAlive: true });

  constructor(
    private readonly upstream: string,
    private readonly onRecord: (r: ProxiedRequest) => void,
  ) {}

  // Listens on a free loopback port and returns it.
  async start(): Promise<number> {
    const target = new URL(this.upstream);
    const server = createServer((req, res) => {
      const seen: ProxiedRequest = { method: req.method ?? "", path: req.url ?? "", headers: req.headers };
      res.on("close", () => this.onRecord(seen));
      const upstream = request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent: this.agent,
        },
        (answer) => {
          const wanted = req.headers["if-match"];
          const status = answer.statusCode ?? 502;
          if (
            wanted !== undefined &&
            (req.method === "GET" || req.method === "HEAD") &&
            status < 300 &&
            !etagMatches(wanted, answer.headers.etag)
          ) {
            answer.destroy();
            seen.status = 412;
            const body =
              req.method === "HEAD"
                ? ""
                : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-Match</Condition><RequestId>s3proxy</RequestId></Error>`;
            res.writeHead(412, {
              "content-type": "application/xml",
              "content-length": Buffer.byteLength(body),
            });
            res.end(body);
            return;
          }
          seen.status = status;
          res.writeHead(status, answer.headers);
          // Headers go now, not with the first body byte: s3rver announces a byte it never
          // sends for a range of an empty object, and the client must see the headers anyway.
          res.flushHeaders();
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.agent.destroy();
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

// `If-Match` holds one ETag, a list, or `*`.
function etagMatches(wanted: string, actual: string | undefined): boolean {
  if (actual === undefined) return false;
  return wanted
    .split(",")
    .map((t) => t.trim())
    .some((t) => t === "*" || t === actual || t.replace(/^W\//, "") === actual);
}

// A loopback HTTP proxy between a mount's S3 client and s3rver, in its own process: it records
// every request and enforces `If-Match` on GET and HEAD the way S3 does (s3rver ignores it).
// The check is made on the upstream answer itself: when the object's ETag is not the one asked
// for, that answer is dropped and the client gets 412 PreconditionFailed, so a version is never
// half served. Signatures stay valid because requests go upstream unchanged (Host included).
// Its own process because the test process blocks in spawn() while a child chdirs into the
// mount, and the mount's lookups need the proxy to answer.
export class S3Proxy {
  readonly requests: ProxiedRequest[] = [];
  private child: ChildProcess | undefined;
  private port = 0;
  private syncs = 0;
  private readonly synced = new Map<number, () => void>();

  constructor(private readonly upstream: string) {}

  get endpoint(): string {
    if (!this.port) throw new Error("S3Proxy is not started");
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const { command, args } = nodeEntry("test/driver/helpers/s3-proxy-child");
    const child = spawn(command, [...args, this.upstream], { stdio: ["pipe", "pipe", "inherit"] });
    this.child = child;
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const listening = new Promise<number>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`s3 proxy exited with ${code}`)));
      lines.on("line", (line) => {
        const msg = JSON.parse(line) as { port?: number; record?: ProxiedRequest; synced?: number };
        if (msg.port) resolve(msg.port);
        if (msg.record) this.requests.push(msg.record);
        if (msg.synced !== undefined) {
          this.synced.get(msg.synced)?.();
          this.synced.delete(msg.synced);
        }
      });
    });
    listening.catch(() => {});
    this.port = await listening;
  }

  // Resolves once every request answered so far is in `requests`.
  async sync(): Promise<void> {
    const n = ++this.syncs;
    const done = new Promise<void>((resolve) => this.synced.set(n, resolve));
    this.child?.stdin?.write(`${n}\n`);
    await done;
  }

  // The requests for one key (path-style: /<bucket>/<key>), optionally of one method.
  async requestsFor(bucket: string, key: string, method?: string): Promise<ProxiedRequest[]> {
    await this.sync();
    const path = `/${bucket}/${key}`;
    return this.requests.filter(
      (r) => r.path.split("?")[0] === path && (method === undefined || r.method === method),
    );
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    await exited;
  }
}
