import { type Logger, pino } from "pino";

export type { Logger };

// Only entry points (CLI, agent, controller) call this; components take a child logger.
// Logs go to stderr so that `--json` output on stdout stays machine-readable.
export function createLogger(name: string, level = process.env.SNAPCTL_LOG_LEVEL ?? "info"): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}

// A logger that discards everything, for library callers that pass none.
export const silentLogger: Logger = pino({ level: "silent" });
