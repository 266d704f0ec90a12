import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type InterruptionAction = "terminate" | "stop" | "hibernate";

export interface ImdsEmulatorOptions {
  instanceId?: string;
  instanceType?: string;
  availabilityZone?: string;
  host?: string;
  port?: number;
  // Clock, injectable for tests. Default Date.now.
  now?: () => number;
}

export interface ScheduleOptions {
  // Seconds from now until the instance is reclaimed (the notice's `time`). Default 120, as on AWS.
  in?: number;
  // Seconds from now until the notice becomes visible. Default 0 (at once).
  noticeAfter?: number;
  action?: InterruptionAction;
}

export interface Interruption {
  action: InterruptionAction;
  noticeAt: number;
  deadline: number;
}

const TOKEN_HEADER = "x-aws-ec2-metadata-token";
const TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";

// AWS writes instant times without milliseconds: 2017-09-18T08:22:00Z.
function awsTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

// An EC2 instance metadata service (IMDSv2 only) for one emulated instance, with a
// control API to schedule spot interruptions and rebalance recommendations.
// Emits "notice" when an interruption becomes visible and "deadline" when it is due.
export class ImdsEmulator extends EventEmitter {
  readonly instanceId: string;
  readonly instanceType: string;
  readonly availabilityZone: string;
  private server?: Server;
  private tokens = new Map<string, number>();
  private interruption?: Interruption;
  private rebalanceAt?: number;
  private timers: NodeJS.Timeout[] = [];
  private now: () => number;

  constructor(private options: ImdsEmulatorOptions = {}) {
    super();
    this.instanceId = options.instanceId ?? `i-${randomBytes(8).toString("hex").slice(0, 17)}`;
    this.instanceType = options.instanceType ?? "m5.large";
    this.availabilityZone = options.availabilityZone ?? "us-east-1a";
    this.now = options.now ?? Date.now;
  }

  get endpoint(): string {
    const address = this.server?.address() as AddressInfo | undefined;
    if (!address) throw new Error("IMDS emulator is not listening");
    return `http://${this.options.host ?? "127.0.0.1"}:${address.port}`;
  }

  get scheduled(): Interruption | undefined {
    return this.interruption;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.options.port ?? 0, this.options.host ?? "127.0.0.1", () => resolve());
    });
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  // Schedules a spot interruption; replaces any earlier one.
  scheduleInterruption(options: ScheduleOptions = {}): Interruption {
    const now = this.now();
    const interruption: Interruption = {
      action: options.action ?? "terminate",
      noticeAt: now + (options.noticeAfter ?? 0) * 1000,
      deadline: now + (options.in ?? 120) * 1000,
    };
    if (!["terminate", "stop", "hibernate"].includes(interruption.action)) {
      throw new Error(
        `Unknown interruption action "${interruption.action}": use terminate, stop or hibernate`,
      );
    }
    if (interruption.deadline < interruption.noticeAt) {
      throw new Error(
        `Interruption deadline (in ${options.in}s) is before its notice (after ${options.noticeAfter}s)`,
      );
    }
    this.interruption = interruption;
    this.timers.push(
      setTimeout(() => this.emit("notice", interruption), interruption.noticeAt - now).unref(),
      setTimeout(() => this.emit("deadline", interruption), interruption.deadline - now).unref(),
    );
    return interruption;
  }

  // Publishes a rebalance recommendation now (or after `afterSeconds`).
  scheduleRebalance(afterSeconds = 0): void {
    this.rebalanceAt = this.now() + afterSeconds * 1000;
  }

  private metadata(path: string): { status: number; body: string; type?: string } {
    const now = this.now();
    switch (path) {
      case "":
      case "/":
        return {
          status: 200,
          body: ["instance-id", "instance-type", "placement/", "spot/", "events/"].join("\n"),
        };
      case "/instance-id":
        return { status: 200, body: this.instanceId };
      case "/instance-type":
        return { status: 200, body: this.instanceType };
      case "/placement/availability-zone":
        return { status: 200, body: this.availabilityZone };
      case "/placement/region":
        return { status: 200, body: this.availabilityZone.replace(/[a-z]$/, "") };
      case "/spot/instance-action": {
        const i = this.interruption;
        if (!i || now < i.noticeAt) return { status: 404, body: "Not Found" };
        return {
          status: 200,
          type: "text/plain",
          body: JSON.stringify({ action: i.action, time: awsTime(i.deadline) }),
        };
      }
      case "/spot/termination-time": {
        const i = this.interruption;
        if (i === undefined || i.action !== "terminate" || now < i.noticeAt)
          return { status: 404, body: "Not Found" };
        return { status: 200, body: awsTime(i.deadline) };
      }
      case "/events/recommendations/rebalance":
        if (this.rebalanceAt === undefined || now < this.rebalanceAt)
          return { status: 404, body: "Not Found" };
        return { status: 200, body: JSON.stringify({ noticeTime: awsTime(this.rebalanceAt) }) };
      default:
        return { status: 404, body: "Not Found" };
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    // The SDK joins its endpoint's path ("/") with the request path ("/latest/..."), so
    // requests arrive as "//latest/..."; the real IMDS accepts repeated slashes too.
    const url = new URL((req.url ?? "/").replace(/\/{2,}/g, "/"), "http://imds");
    const send = (status: number, body: string, type = "text/plain") => {
      res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    if (url.pathname.startsWith("/_emulator/")) {
      this.control(req, url, send);
      return;
    }
    const answer = this.answer(req, url);
    if (answer.ttl) res.setHeader(TTL_HEADER, answer.ttl);
    send(answer.status, answer.body, answer.type);
  }

  // The IMDSv2 answer to one request: token issue, token check, then metadata.
  private answer(
    req: IncomingMessage,
    url: URL,
  ): { status: number; body: string; type?: string; ttl?: string } {
    if (url.pathname === "/latest/api/token") {
      if (req.method !== "PUT") return { status: 405, body: "Method Not Allowed" };
      // IMDSv2 refuses token requests that came through a proxy (X-Forwarded-For).
      if (req.headers["x-forwarded-for"]) return { status: 403, body: "Forbidden" };
      const ttl = Number(req.headers[TTL_HEADER]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return { status: 400, body: "Bad Request" };
      const token = randomBytes(32).toString("base64");
      this.tokens.set(token, this.now() + ttl * 1000);
      return { status: 200, body: token, ttl: String(ttl) };
    }
    if (!url.pathname.startsWith("/latest/meta-data")) return { status: 404, body: "Not Found" };
    if (req.method !== "GET" && req.method !== "HEAD") return { status: 405, body: "Method Not Allowed" };
    const token = req.headers[TOKEN_HEADER];
    const expires = typeof token === "string" ? this.tokens.get(token) : undefined;
    if (expires === undefined || expires < this.now()) return { status: 401, body: "Unauthorized" };
    return this.metadata(url.pathname.slice("/latest/meta-data".length));
  }

  // Control API (not part of AWS's): POST /_emulator/interrupt {in, noticeAfter, action},
  // POST /_emulator/rebalance {after}, GET /_emulator/state.
  private control(
    req: IncomingMessage,
    url: URL,
    send: (status: number, body: string, type?: string) => void,
  ): void {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      let body: Record<string, unknown> = {};
      try {
        const text = Buffer.concat(chunks).toString();
        body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      } catch {
        return send(400, JSON.stringify({ error: "body is not JSON" }), "application/json");
      }
      try {
        if (url.pathname === "/_emulator/interrupt" && req.method === "POST") {
          const i = this.scheduleInterruption(body as ScheduleOptions);
          return send(200, JSON.stringify(this.describe(i)), "application/json");
        }
        if (url.pathname === "/_emulator/rebalance" && req.method === "POST") {
          this.scheduleRebalance(Number(body.after ?? 0));
          return send(200, "{}", "application/json");
        }
        if (url.pathname === "/_emulator/state" && req.method === "GET") {
          return send(
            200,
            JSON.stringify({
              instanceId: this.instanceId,
              instanceType: this.instanceType,
              availabilityZone: this.availabilityZone,
              interruption: this.interruption ? this.describe(this.interruption) : null,
            }),
            "application/json",
          );
        }
        send(
          404,
          JSON.stringify({ error: `no control endpoint ${req.method} ${url.pathname}` }),
          "application/json",
        );
      } catch (err) {
        send(400, JSON.stringify({ error: (err as Error).message }), "application/json");
      }
    });
  }

  private describe(i: Interruption) {
    return { action: i.action, noticeAt: awsTime(i.noticeAt), time: awsTime(i.deadline) };
  }
}
