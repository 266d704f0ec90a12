import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { CloudError } from "./errors.js";

export interface ChildOptions {
  name: string;
  command: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  // Resolves with a value once a stdout line shows the child is ready.
  ready: (line: string) => unknown;
  timeoutMs?: number;
}

// A server we run as a child process: started, waited for until ready, stopped by PID.
export class ManagedChild<T> {
  readonly process: ChildProcess;
  readonly ready: Promise<T>;
  private exited: Promise<void>;
  private stderr = "";

  constructor(private options: ChildOptions) {
    this.process = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process.stderr?.on("data", (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    this.exited = once(this.process, "exit").then(() => undefined);
    this.ready = this.waitReady();
    // The ready promise is awaited by the owner; this keeps an early failure from being unhandled.
    this.ready.catch(() => {});
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  private async waitReady(): Promise<T> {
    const { name, ready, timeoutMs = 20_000 } = this.options;
    const lines = createInterface({ input: this.process.stdout! });
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<T>((resolve, reject) => {
        timer = setTimeout(() => {
          reject(
            new CloudError(
              "CLOUD_START_TIMEOUT",
              `${name} did not become ready within ${timeoutMs} ms${this.tail()}`,
            ),
          );
        }, timeoutMs);
        lines.on("line", (line) => {
          const value = ready(line);
          if (value !== undefined && value !== null && value !== false) resolve(value as T);
        });
        this.process.once("error", (err) =>
          reject(
            new CloudError("CLOUD_START_FAILED", `Cannot start ${name}: ${err.message}`, { cause: err }),
          ),
        );
        this.process.once("exit", (code, signal) =>
          reject(
            new CloudError(
              "CLOUD_START_FAILED",
              `${name} exited before it was ready (code ${code}, signal ${signal})${this.tail()}`,
            ),
          ),
        );
      });
    } finally {
      clearTimeout(timer);
    }
  }

  private tail(): string {
    const text = this.stderr.trim();
    return text ? `: ${text.split("\n").slice(-5).join(" | ")}` : "";
  }

  // Stops the child: SIGTERM, then SIGKILL after `graceMs`. Idempotent.
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.process.kill("SIGTERM");
    const timer = setTimeout(() => this.process.kill("SIGKILL"), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  // Kills the child at once, as a crash would.
  async kill(): Promise<void> {
    if (!this.running) return;
    this.process.kill("SIGKILL");
    await this.exited;
  }
}
