import { type Logger, pino } from "pino";

export type { Logger };

export interface CreateLoggerOptions {
  // Also write every line to this file (created 0600): the agent uploads its own log.
  copyTo?: string;
}

// Only entry points (CLI, agent, controller) call this; components take a child logger.
// Logs go to stderr so that `--json` output on stdout stays machine-readable.
export function createLogger(
  name: string,
  level = process.env.SNAPCTL_LOG_LEVEL ?? "info",
  options: CreateLoggerOptions = {},
): Logger {
  const base = { name, base: { pid: process.pid } };
  if (!options.copyTo) return pino({ ...base, level }, pino.destination(2));
  // The copy is read after the fact (a failed attempt on an instance that is gone): it keeps
  // info lines even when stderr shows only warnings.
  const value = pino.levels.values[level];
  const fileLevel = value !== undefined && value < (pino.levels.values.info ?? 30) ? level : "info";
  const file = pino.destination({ dest: options.copyTo, sync: true, mode: 0o600 });
  return pino(
    { ...base, level: fileLevel },
    pino.multistream([
      { stream: pino.destination(2), level: level as pino.Level },
      { stream: file, level: fileLevel as pino.Level },
    ]),
  );
}

// A logger that discards everything, for library callers that pass none.
export const silentLogger: Logger = pino({ level: "silent" });
