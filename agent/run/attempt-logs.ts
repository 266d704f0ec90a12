import { readFile } from "node:fs/promises";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "../../common/log.js";
import type { WorkDirLocation } from "./work-dir.js";

// The folder, in the task's work dir, that keeps each attempt's logs (the agent's own log
// and CRIU's log of a failed dump or restore): on an instance that is reclaimed or shuts
// down, the local disk is gone, and this is where a user looks (`snapctl logs --agent`).
export const LOGS_FOLDER = ".snapctl/logs";

// One attempt's name: its start time (sortable) and instance.
export function attemptName(startedAt: number, instanceId: string): string {
  const time = new Date(startedAt).toISOString().replace(/[-:.]/g, "");
  return `${time}-${instanceId.replace(/[^A-Za-z0-9._-]/g, "_")}`;
}

// The key prefix of every attempt's logs, or of one attempt's.
export function attemptLogsPrefix(location: WorkDirLocation, attempt?: string): string {
  const all = `${location.prefix ? `${location.prefix}/` : ""}${LOGS_FOLDER}/`;
  return attempt ? `${all}${attempt}/` : all;
}

// Uploads this attempt's logs straight to S3 (not through the mount, which may be what
// failed). Failures are logged, never thrown: a log must not change how a task ends.
export class AttemptLogs {
  constructor(
    private readonly options: {
      client: S3Client;
      location: WorkDirLocation;
      attempt: string;
      // The agent's own log on local disk, if it keeps one.
      agentLogFile?: string;
      logger: Logger;
    },
  ) {}

  get prefix(): string {
    return attemptLogsPrefix(this.options.location, this.options.attempt);
  }

  // CRIU's log of a failed dump or restore, as `criu-<what>.log`.
  async putCriuLog(what: string, text: string | undefined): Promise<void> {
    if (text) await this.put(`criu-${what}.log`, text);
  }

  // The agent's log as it is now (again later: each upload replaces the previous one).
  async putAgentLog(): Promise<void> {
    const file = this.options.agentLogFile;
    if (!file) return;
    const text = await readFile(file, "utf8").catch(() => undefined);
    if (text !== undefined) await this.put("agent.log", text);
  }

  private async put(name: string, body: string): Promise<void> {
    const key = `${this.prefix}${name}`;
    try {
      await this.options.client.send(
        new PutObjectCommand({
          Bucket: this.options.location.bucket,
          Key: key,
          Body: body,
          ContentType: "text/plain; charset=utf-8",
        }),
        { abortSignal: AbortSignal.timeout(30_000) },
      );
    } catch (err) {
      this.options.logger.warn({ err, key }, "cannot upload a log to the work dir");
    }
  }
}
