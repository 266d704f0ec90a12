import { createHash } from "node:crypto";
import { mkdir, readFile, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { LRUCache } from "lru-cache";
import type { Logger } from "../../common/log.js";
import { CacheWriter, checksumOf } from "./cache-writer.js";

// Identifies one cached block: a block of one version (ETag) of one object.
export interface BlockKey {
  bucket: string;
  key: string;
  etag: string;
  index: number;
}

export interface BlockCacheOptions {
  // Directory of block files (wiped at start: the index lives in memory only).
  dir: string;
  // Size limit in bytes; least recently used blocks are deleted beyond it.
  maxBytes: number;
  logger: Logger;
  // Bytes being written at most; blocks beyond it are not cached (the disk is behind).
  maxPendingBytes?: number;
}

// What the index knows of a cached block: its length and checksum (see checksumOf).
interface Entry {
  length: number;
  sum: string;
}

// The disk block cache shared by every open file: one file per block, named by a hash of
// its key, holding the block's bytes only; the index in memory keeps each block's length
// and checksum (the cache starts empty: init() wipes it). A block whose file does not match
// them is deleted and reported missing, so the caller fetches it again.
export class BlockCache {
  private readonly index: LRUCache<string, Entry>;
  private readonly pending = new Set<Promise<void>>();
  private pendingBytes = 0;
  // Subdirectories known to exist (a mkdir per block showed in profiles).
  private readonly dirs = new Set<string>();
  private readonly maxPendingBytes: number;
  private readonly writer = new CacheWriter();

  constructor(private readonly options: BlockCacheOptions) {
    this.maxPendingBytes = options.maxPendingBytes ?? 256 * 1024 * 1024;
    this.index = new LRUCache<string, Entry>({
      maxSize: options.maxBytes,
      sizeCalculation: (entry) => Math.max(1, entry.length),
      dispose: (_entry, name, reason) => {
        if (reason === "set") return;
        this.track(unlink(this.pathOf(name)).catch(() => {}));
      },
    });
  }

  async init(): Promise<void> {
    await rm(this.options.dir, { recursive: true, force: true });
    await mkdir(this.options.dir, { recursive: true });
    this.dirs.clear();
  }

  // Blocks (and bytes) currently cached.
  get stats(): { blocks: number; bytes: number } {
    return { blocks: this.index.size, bytes: this.index.calculatedSize };
  }

  private nameOf(k: BlockKey): string {
    return createHash("sha1").update(`${k.bucket}\0${k.key}\0${k.etag}\0${k.index}`).digest("hex");
  }

  private pathOf(name: string): string {
    return join(this.options.dir, name.slice(0, 2), name);
  }

  has(k: BlockKey): boolean {
    return this.index.has(this.nameOf(k));
  }

  // The block's data, or undefined when it is not cached or is damaged.
  async get(k: BlockKey): Promise<Buffer | undefined> {
    const name = this.nameOf(k);
    const entry = this.index.get(name);
    if (!entry) return undefined;
    let data: Buffer;
    try {
      data = await readFile(this.pathOf(name));
    } catch {
      if (this.index.peek(name) === entry) this.index.delete(name);
      return undefined;
    }
    if (data.length !== entry.length || checksumOf(data) !== entry.sum) {
      this.options.logger.warn(
        { bucket: k.bucket, key: k.key, block: k.index },
        "damaged cache block dropped; fetching it again",
      );
      if (this.index.peek(name) === entry) this.index.delete(name);
      return undefined;
    }
    return data;
  }

  // Stores a block in the background, through the writer thread (skipped when writes are
  // already behind). `data` must stay unchanged until `done` is called, which happens exactly
  // once, whether the block was written, skipped or failed.
  put(k: BlockKey, data: Buffer, done?: () => void): void {
    const name = this.nameOf(k);
    if (
      this.index.has(name) ||
      data.length > this.options.maxBytes ||
      this.pendingBytes + data.length > this.maxPendingBytes
    ) {
      done?.();
      return;
    }
    const path = this.pathOf(name);
    const sub = name.slice(0, 2);
    const dir = this.dirs.has(sub) ? undefined : join(this.options.dir, sub);
    this.dirs.add(sub);
    this.pendingBytes += data.length;
    let shared = data;
    if (!(data.buffer instanceof SharedArrayBuffer)) {
      shared = Buffer.from(new SharedArrayBuffer(data.length));
      data.copy(shared);
    }
    const work = this.writer
      .write(path, shared, dir)
      .then(
        (sum) => {
          this.index.set(name, { length: data.length, sum });
        },
        (err: unknown) => {
          if (dir) this.dirs.delete(sub);
          this.options.logger.warn({ err, path }, "could not write a cache block");
        },
      )
      .finally(() => {
        this.pendingBytes -= data.length;
        done?.();
      });
    this.track(work);
  }

  private track(work: Promise<void>): void {
    this.pending.add(work);
    work.finally(() => this.pending.delete(work)).catch(() => {});
  }

  // Waits for background writes; with `remove`, deletes the directory too.
  async close(options: { remove?: boolean } = {}): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    await this.writer.close();
    if (options.remove) await rm(this.options.dir, { recursive: true, force: true });
  }
}
