// What getattr reports for a path.
export interface Entry {
  type: "file" | "dir" | "symlink";
  size: number;
  mtimeMs: number;
  // Permission bits and owner from metadata, when known.
  perm?: number;
  uid?: number;
  gid?: number;
  etag?: string;
  // Symlink target, once read.
  target?: string;
  // Seen in a listing only: type and size are known, metadata is not.
  partial?: boolean;
}

// A short-TTL cache of stat results, positive and negative, keyed by mount path. The mount's
// own writes update it directly, so it is only stale about changes made by others.
export class StatCache {
  private readonly entries = new Map<string, { entry: Entry | null; expires: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  // The entry, null when known not to exist, undefined when unknown or expired.
  get(path: string): Entry | null | undefined {
    const hit = this.entries.get(path);
    if (!hit) return undefined;
    if (hit.expires < this.now()) {
      this.entries.delete(path);
      return undefined;
    }
    return hit.entry;
  }

  set(path: string, entry: Entry | null): void {
    if (this.entries.size > 100_000) this.prune();
    this.entries.set(path, { entry, expires: this.now() + this.ttlMs });
  }

  delete(path: string): void {
    this.entries.delete(path);
  }

  // Forgets a path and everything below it.
  deleteTree(path: string): void {
    const prefix = `${path}/`;
    for (const key of this.entries.keys())
      if (key === path || key.startsWith(prefix)) this.entries.delete(key);
  }

  private prune(): void {
    const now = this.now();
    for (const [key, value] of this.entries) if (value.expires < now) this.entries.delete(key);
    if (this.entries.size > 100_000) this.entries.clear();
  }
}
