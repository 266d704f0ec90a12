import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

// A Lua script run with EVALSHA, falling back to EVAL when Redis does not know it yet
// (first use, or after a Redis restart emptied its script cache).
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(redis: Redis, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith("NOSCRIPT")) throw err;
      return await redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
