import type { Redis } from "ioredis";
import { type ComputeEnvironment, parseComputeEnvironment } from "../config/index.js";
import { ServiceError } from "./errors.js";

// The compute environment file each task was submitted with, kept in Redis as text (the
// agent receives the same file, and a restarted controller needs no access to the
// submitter's filesystem). Key: <prefix>task:{<id>}:env.
export class TaskEnvironments {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(taskId: string): string {
    return `${this.prefix}task:{${taskId}}:env`;
  }

  async save(taskId: string, source: string, text: string): Promise<void> {
    await this.redis.set(this.key(taskId), JSON.stringify({ source, text }));
  }

  async text(taskId: string): Promise<{ source: string; text: string }> {
    const raw = await this.redis.get(this.key(taskId));
    if (!raw) {
      throw new ServiceError(
        "CONTROLLER_ENV_MISSING",
        `Task "${taskId}" has no compute environment stored (key ${this.key(taskId)})`,
      );
    }
    return JSON.parse(raw) as { source: string; text: string };
  }

  async load(taskId: string): Promise<ComputeEnvironment> {
    const { source, text } = await this.text(taskId);
    return parseComputeEnvironment(text, { source });
  }

  async delete(taskId: string): Promise<void> {
    await this.redis.del(this.key(taskId), this.generationKey(taskId));
  }

  // The snapshot generation an operator asked `snapctl restore` to use for the next
  // restore launch (the newest usable one otherwise).
  private generationKey(taskId: string): string {
    return `${this.prefix}task:{${taskId}}:restore-generation`;
  }

  async setRestoreGeneration(taskId: string, generation: number | undefined): Promise<void> {
    if (generation === undefined) await this.redis.del(this.generationKey(taskId));
    else await this.redis.set(this.generationKey(taskId), String(generation));
  }

  async restoreGeneration(taskId: string): Promise<number | undefined> {
    const raw = await this.redis.get(this.generationKey(taskId));
    return raw === null ? undefined : Number(raw);
  }
}
