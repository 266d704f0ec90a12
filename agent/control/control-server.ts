import { chmod, mkdir, rm } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { type Logger, silentLogger } from "../../common/log.js";
import {
  type AgentControlRequest,
  type AgentControlResponse,
  agentControlRequestSchema,
} from "../../protocol/index.js";
import { AgentError } from "../errors.js";

export type ControlHandler = (request: AgentControlRequest) => Promise<Record<string, unknown>>;

export interface ControlServerOptions {
  path: string;
  handler: ControlHandler;
  logger?: Logger;
}

// The agent's end of the control socket. listen() refuses to take over the socket of an
// agent that still answers (AGENT_ALREADY_RUNNING) and removes a stale one.
export class ControlServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly logger: Logger;

  constructor(private readonly options: ControlServerOptions) {
    this.logger = options.logger ?? silentLogger;
  }

  async listen(): Promise<void> {
    const path = this.options.path;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    if (await answers(path))
      throw new AgentError(
        "AGENT_ALREADY_RUNNING",
        `Another agent already listens on ${path}: is the task running twice?`,
      );
    await rm(path, { force: true });
    const server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    // Only this user may trigger checkpoints.
    await chmod(path, 0o600);
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.options.path, { force: true });
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {});
    const lines = createInterface({ input: socket });
    lines.on("error", () => {});
    lines.on("line", (line) => {
      this.answer(line).then(
        (response) => socket.write(`${JSON.stringify(response)}\n`),
        (err: unknown) => this.logger.error({ err }, "control request failed"),
      );
    });
  }

  private async answer(line: string): Promise<AgentControlResponse> {
    let input: unknown;
    try {
      input = JSON.parse(line);
    } catch {
      return {
        ok: false,
        error: { code: "AGENT_CONTROL_FAILED", message: `Request is not JSON: ${line.slice(0, 100)}` },
      };
    }
    const parsed = agentControlRequestSchema.safeParse(input);
    if (!parsed.success) {
      const command = (input as { command?: unknown } | null)?.command;
      return {
        ok: false,
        error: { code: "AGENT_CONTROL_FAILED", message: `Unknown command ${JSON.stringify(command)}` },
      };
    }
    const request = parsed.data;
    try {
      return { ok: true, result: await this.options.handler(request) };
    } catch (err) {
      const e = err as { code?: string; message?: string };
      return {
        ok: false,
        error: { code: e.code ?? "AGENT_CONTROL_FAILED", message: e.message ?? String(err) },
      };
    }
  }
}

// Whether something accepts connections on the socket path.
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
