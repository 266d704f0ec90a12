import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
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
  // Set when the proxy answered the request itself instead of forwarding it, cut its body short
  // ("reset") or held it unanswered ("stalled": recorded when it arrives, not when it ends).
  served?: "UploadPartCopy" | "reset" | "stalled";
  // For a served UploadPartCopy: how many were being served when it arrived (itself included).
  inFlight?: number;
}

// What the proxy does beyond forwarding (nothing by default); set with S3Proxy.configure.
export interface ProxyBehaviour {
  // Serve UploadPartCopy itself, because s3rver does not implement it (see servePartCopy).
  uploadPartCopy?: boolean;
  // Answer `status` to every UploadPartCopy of these part numbers, without copying.
  failPartCopy?: { partNumbers: number[]; status: number };
  // Cut the connection of the next `count` GETs of `key` (the path after the bucket) whose body
  // is longer than `afterBytes`, after that many bytes: a connection reset mid-body.
  resetGets?: { key: string; afterBytes: number; count: number };
  // Hold every GET of `key` that names a version (If-Match: the reads of an open file, not its
  // lookup) unanswered until the client leaves; recorded when it arrives.
  stallGets?: { key: string };
}

// The proxy's HTTP server (run by s3-proxy-child.ts: see S3Proxy). Every request, once
// answered, is passed to `onRecord`.
export class S3ProxyServer {
  private server: Server | undefined;
  private readonly agent = new Agent({ keepAlive: true });
  private behaviour: ProxyBehaviour = {};
  private partCopies = 0;
  private resetsDone = 0;

  constructor(
    private readonly upstream: string,
    private readonly onRecord: (r: ProxiedRequest) => void,
  ) {}

  configure(behaviour: ProxyBehaviour): void {
    this.behaviour = behaviour;
    this.resetsDone = 0;
  }

  // Whether a GET goes to `key` of any bucket (path-style /<bucket>/<key>).
  private isGetOf(req: IncomingMessage, key: string | undefined): boolean {
    if (key === undefined || req.method !== "GET") return false;
    const path = new URL(req.url ?? "", "http://proxy").pathname;
    return path.slice(path.indexOf("/", 1) + 1) === key;
  }

  // Listens on a free loopback port and returns it.
  async start(): Promise<number> {
    const target = new URL(this.upstream);
    const server = createServer((req, res) => {
      const seen: ProxiedRequest = { method: req.method ?? "", path: req.url ?? "", headers: req.headers };
      res.on("close", () => this.onRecord(seen));
      if (this.behaviour.uploadPartCopy && isUploadPartCopy(req)) {
        seen.served = "UploadPartCopy";
        seen.inFlight = ++this.partCopies;
        res.on("close", () => this.partCopies--);
        this.servePartCopy(req, res, seen).catch((err: unknown) => {
          seen.status = 500;
          sendError(res, 500, "InternalError", `test proxy: ${(err as Error).message}`);
        });
        return;
      }
      if (this.isGetOf(req, this.behaviour.stallGets?.key) && req.headers["if-match"] !== undefined) {
        seen.served = "stalled";
        res.removeAllListeners("close");
        this.onRecord(seen);
        req.resume();
        return;
      }
      const reset = this.behaviour.resetGets;
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
          const cut =
            reset !== undefined &&
            this.isGetOf(req, reset.key) &&
            this.resetsDone < reset.count &&
            Number(answer.headers["content-length"]) > reset.afterBytes;
          if (!cut) return void answer.pipe(res);
          this.resetsDone++;
          seen.served = "reset";
          let left = reset.afterBytes;
          answer.on("data", (chunk: Buffer) => {
            if (left <= 0) return;
            const part = chunk.subarray(0, left);
            left -= part.length;
            if (left > 0) return void res.write(part);
            res.write(part, () => {
              answer.destroy();
              res.socket?.destroy();
            });
          });
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

  // UploadPartCopy as S3 does it, with the data going through the real server: a GET of the
  // source range (checked against x-amz-copy-source-if-match, and the range against the
  // source's size), then that body as UploadPart of the same upload, answered with
  // CopyPartResult. Upstream requests are unsigned (s3rver accepts them).
  private async servePartCopy(
    req: IncomingMessage,
    res: ServerResponse,
    seen: ProxiedRequest,
  ): Promise<void> {
    req.resume();
    const url = new URL(req.url ?? "", "http://proxy");
    const partNumber = Number(url.searchParams.get("partNumber"));
    const fail = this.behaviour.failPartCopy;
    if (fail?.partNumbers.includes(partNumber)) {
      seen.status = fail.status;
      return sendError(res, fail.status, "InternalError", `test proxy: part ${partNumber} fails`);
    }
    const source = String(req.headers["x-amz-copy-source"]).replace(/^\//, "").split("?")[0];
    const wantedRange = req.headers["x-amz-copy-source-range"] as string | undefined;
    const got = await this.upstreamCall("GET", `/${source}`, wantedRange ? { range: wantedRange } : {});
    if (got.status === 404) {
      seen.status = 404;
      return sendError(res, 404, "NoSuchKey", "The specified key does not exist.");
    }
    if (got.status >= 300) {
      seen.status = got.status;
      return sendError(res, got.status, "InternalError", `source GET answered ${got.status}`);
    }
    const ifMatch = req.headers["x-amz-copy-source-if-match"] as string | undefined;
    if (ifMatch !== undefined && !etagMatches(ifMatch, got.headers.etag)) {
      seen.status = 412;
      return sendError(
        res,
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
      );
    }
    if (wantedRange) {
      const asked = /^bytes=(\d+)-(\d+)$/.exec(wantedRange);
      const total = Number(/\/(\d+)$/.exec(String(got.headers["content-range"]))?.[1] ?? got.body.length);
      if (!asked || Number(asked[1]) > Number(asked[2]) || Number(asked[2]) >= total) {
        seen.status = 400;
        return sendError(
          res,
          400,
          "InvalidArgument",
          `Range ${wantedRange} is not valid for a source of ${total} bytes`,
        );
      }
    }
    const put = await this.upstreamCall(
      "PUT",
      req.url ?? "",
      { "content-length": String(got.body.length) },
      got.body,
    );
    if (put.status !== 200) {
      seen.status = put.status;
      res.writeHead(put.status, { "content-type": "application/xml", "content-length": put.body.length });
      return void res.end(put.body);
    }
    const etag = String(put.headers.etag ?? "").replace(/"/g, "&quot;");
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult><LastModified>${new Date().toISOString()}</LastModified><ETag>${etag}</ETag></CopyPartResult>`;
    seen.status = 200;
    res.writeHead(200, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  // One unsigned request to the upstream server, its body read whole (parts are small here).
  private async upstreamCall(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: Buffer,
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
    const target = new URL(this.upstream);
    return await new Promise((resolve, reject) => {
      const r = request(
        { host: target.hostname, port: target.port, method, path, headers, agent: this.agent },
        (answer) => {
          const chunks: Buffer[] = [];
          answer.on("data", (c: Buffer) => chunks.push(c));
          answer.on("error", reject);
          answer.on("end", () =>
            resolve({
              status: answer.statusCode ?? 502,
              headers: answer.headers,
              body: Buffer.concat(chunks),
            }),
          );
        },
      );
      r.on("error", reject);
      r.end(body);
    });
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

// PUT /<bucket>/<key>?partNumber=N&uploadId=U with x-amz-copy-source.
function isUploadPartCopy(req: IncomingMessage): boolean {
  if (req.method !== "PUT" || req.headers["x-amz-copy-source"] === undefined) return false;
  const query = new URL(req.url ?? "", "http://proxy").searchParams;
  return query.has("partNumber") && query.has("uploadId");
}

// An S3 error answer.
function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>s3proxy</RequestId></Error>`;
  res.writeHead(status, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) });
  res.end(body);
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
// Opt-in (configure): it serves UploadPartCopy, which s3rver lacks, by a ranged GET and an
// UploadPart on s3rver; the bytes go through the real server (an emulated API, not a mock).
// It can also inject network faults into GETs: a body cut mid-way, or no answer at all.
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

  // Changes what the proxy does beyond forwarding; resolves once it applies.
  async configure(behaviour: ProxyBehaviour): Promise<void> {
    const n = ++this.syncs;
    const done = new Promise<void>((resolve) => this.synced.set(n, resolve));
    this.child?.stdin?.write(`${JSON.stringify({ sync: n, behaviour })}\n`);
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
