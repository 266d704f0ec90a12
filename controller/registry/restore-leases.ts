import type { Redis } from "ioredis";
import { RegistryError } from "../errors.js";
import type { RegistryKeys } from "./keys.js";
import { acquireLeaseScript, releaseLeaseScript, renewLeaseScript } from "./scripts.js";

export interface RestoreLease {
  owner: string;
  token: number;
  // Time left before it expires.
  ttlMs: number;
}

// Per-task leases with fencing tokens: whoever wants to launch an instance for a task
// (restore or re-run) first takes the lease; the token it gets is larger than every token
// handed out before for that task, and the registry refuses restore actions made with
// any token but the current one.
export class RestoreLeases {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RegistryKeys,
  ) {}

  async acquire(id: string, owner: string, ttlMs: number): Promise<number | null> {
    checkLeaseArgs(id, owner, ttlMs);
    const token = await acquireLeaseScript.run(
      this.redis,
      [this.keys.lease(id), this.keys.fence(id)],
      [owner, String(ttlMs)],
    );
    return token === null || token === undefined || token === 0 ? null : Number(token);
  }

  async renew(id: string, owner: string, token: number, ttlMs: number): Promise<boolean> {
    checkLeaseArgs(id, owner, ttlMs);
    return (
      (await renewLeaseScript.run(
        this.redis,
        [this.keys.lease(id)],
        [owner, String(token), String(ttlMs)],
      )) === 1
    );
  }

  async release(id: string, owner: string, token: number): Promise<boolean> {
    return (await releaseLeaseScript.run(this.redis, [this.keys.lease(id)], [owner, String(token)])) === 1;
  }

  async get(id: string): Promise<RestoreLease | null> {
    const [value, ttlMs] = await Promise.all([
      this.redis.get(this.keys.lease(id)),
      this.redis.pttl(this.keys.lease(id)),
    ]);
    const match = value === null ? null : /^(\d+):(.*)$/s.exec(value);
    if (!match) return null;
    return { token: Number(match[1]), owner: match[2] as string, ttlMs: Math.max(0, ttlMs) };
  }
}

function checkLeaseArgs(id: string, owner: string, ttlMs: number): void {
  if (typeof owner !== "string" || owner.length === 0 || owner.length > 200) {
    throw new RegistryError(
      "REGISTRY_INVALID_INPUT",
      `Restore lease of task "${id}" needs an owner of 1-200 characters (got ${JSON.stringify(owner)})`,
    );
  }
  if (!Number.isInteger(ttlMs) || ttlMs < 1) {
    throw new RegistryError(
      "REGISTRY_INVALID_INPUT",
      `Restore lease of task "${id}" needs a ttlMs as a positive integer (got ${ttlMs})`,
    );
  }
}
