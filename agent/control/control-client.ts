import { createConnection } from "node:net";
import { createInterface } from "node:readline";
import { type AgentControlRequest, agentControlResponseSchema } from "../../protocol/index.js";
import { AgentError } from "../errors.js";
import { agentSocketPath } from "./socket-path.js";

export interface ControlClientOptions {
  // $SNAPCTL_HOME to look in. Default: the environment's.
  home?: string;
  // Give up waiting for the answer after this long. Default: wait (a checkpoint may take minutes).
  timeoutMs?: number;
  signal?: AbortSignal;
}

// Sends one request to the agent running `taskId` on this machine and returns its result.
// Throws AGENT_NOT_RUNNING when no agent listens, or the agent's own error.
export async function sendControlRequest(
  taskId: string,
  request: AgentControlRequest,
  options: ControlClientOptions = {},
): Promise<Record<string, unknown>> {
  const path = agentSocketPath(taskId, options.home);
  options.signal?.throwIfAborted();
  const socket = createConnection(path);
  const cleanup: Array<() => void> = [() => socket.destroy()];
  try {
    return await new Promise<Record<string, unknown>>((resolve, reject) => {
      const fail = (err: AgentError) => reject(err);
      socket.once("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT" || err.code === "ECONNREFUSED")
          fail(
            new AgentError(
              "AGENT_NOT_RUNNING",
              `No agent runs task "${taskId}" here (nothing listens on ${path})`,
              { cause: err },
            ),
          );
        else
          fail(
            new AgentError(
              "AGENT_CONTROL_FAILED",
              `Cannot reach the agent of task "${taskId}" on ${path}: ${err.message}`,
              { cause: err },
            ),
          );
      });
      socket.once("connect", () => socket.write(`${JSON.stringify(request)}\n`));
      const lines = createInterface({ input: socket });
      // readline re-emits the socket's errors; the socket's own handler above reports them.
      lines.on("error", () => {});
      lines.once("line", (line) => {
        let response: ReturnType<typeof agentControlResponseSchema.parse>;
        try {
          response = agentControlResponseSchema.parse(JSON.parse(line));
        } catch (err) {
          fail(
            new AgentError(
              "AGENT_CONTROL_FAILED",
              `The agent of task "${taskId}" answered ${line.slice(0, 100)}`,
              {
                cause: err,
              },
            ),
          );
          return;
        }
        if (response.ok) resolve(response.result);
        else {
          const code = response.error.code as AgentError["code"];
          fail(new AgentError(code, response.error.message));
        }
      });
      socket.once("close", () =>
        fail(
          new AgentError(
            "AGENT_CONTROL_FAILED",
            `The agent of task "${taskId}" closed the connection without answering`,
          ),
        ),
      );
      if (options.timeoutMs !== undefined) {
        const timer = setTimeout(
          () =>
            fail(
              new AgentError(
                "AGENT_CONTROL_FAILED",
                `The agent of task "${taskId}" did not answer within ${options.timeoutMs} ms`,
              ),
            ),
          options.timeoutMs,
        );
        cleanup.push(() => clearTimeout(timer));
      }
      if (options.signal) {
        const signal = options.signal;
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        cleanup.push(() => signal.removeEventListener("abort", onAbort));
      }
    });
  } finally {
    for (const c of cleanup) c();
  }
}

// Asks the agent running `taskId` for a checkpoint now and waits for its result.
export async function requestCheckpoint(
  taskId: string,
  options: ControlClientOptions = {},
): Promise<Record<string, unknown>> {
  return await sendControlRequest(taskId, { command: "checkpoint" }, options);
}
