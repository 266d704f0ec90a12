import { setMaxListeners } from "node:events";
import type { Readable } from "node:stream";
import { LRUCache } from "lru-cache";
import type { Logger } from "../../common/log.js";
import type { BlockCache } from "../cache/block-cache.js";
import { DriverError } from "../errors.js";
import { backoffMs, isRetryable, sleep, toDriverError } from "../s3/retry.js";
import type { S3Ops } from "../s3/s3-ops.js";
import { Semaphore } from "../util/semaphore.js";
import { BlockPool } from "./block-pool.js";

// One version of one object: every range read for an open file names the same ETag.
export interface ObjectVersion {
  bucket: string;
  key: string;
  etag: string;
  size: number;
}

export interface BlockSourceOptions {
  s3: S3Ops;
  cache: BlockCache;
  blockSize: number;
  partSize: number;
  // Read bytes held in memory: half for recently fetched blocks, half for fetches in flight.
  readMemory: number;
  maxConcurrentGets: number;
  requestTimeoutMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  logger: Logger;
}

interface Waiter {
  need: number;
  resolve: (data: Buffer) => void;
  reject: (err: unknown) => void;
}

// A block being downloaded: readers wait for the bytes they need, not for the whole block,
// so the first byte of a cold file arrives as soon as the GET starts answering.
class PendingBlock {
  filled = 0;
  waiters: Waiter[] = [];
  constructor(readonly data: Buffer) {}

  wait(need: number): Promise<Buffer> {
    if (this.filled >= need) return Promise.resolve(this.data);
    return new Promise((resolve, reject) => this.waiters.push({ need, resolve, reject }));
  }

  progress(): void {
    if (this.waiters.length === 0) return;
    this.waiters = this.waiters.filter((w) => {
      if (w.need > this.filled) return true;
      w.resolve(this.data);
      return false;
    });
  }

  fail(err: unknown): void {
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
  }
}

// The shared source of object blocks for every open file: memory, then blocks being fetched,
// then the disk cache, then S3 (ranged GETs of contiguous missing blocks, at most
// maxConcurrentGets at once, readers ahead of prefetch).
export class BlockSource {
  private readonly memory: LRUCache<string, Buffer>;
  // Buffers of fetched blocks; the memory LRU and cache writes hold them (see BlockPool).
  private readonly pool: BlockPool;
  private readonly inflight = new Map<string, PendingBlock>();
  private inflightBytes = 0;
  private readonly gets: Semaphore;
  private readonly runs = new Set<Promise<void>>();
  // Disk cache reads in progress, shared by every reader of the block.
  private readonly loading = new Map<string, Promise<Buffer | undefined>>();
  private closed = false;
  // Fired by close(): aborts the GETs in flight, the waits for a GET slot and the pauses
  // between attempts, so that closing never waits for a GET that does not answer.
  private readonly closing = new AbortController();
  // Where blocks came from, for logs and benchmarks.
  readonly stats = { memoryHits: 0, inflightHits: 0, diskHits: 0, fetchedBlocks: 0, gets: 0 };

  constructor(private readonly o: BlockSourceOptions) {
    const memoryBytes = Math.max(o.blockSize, Math.floor(o.readMemory / 2));
    this.pool = new BlockPool(o.blockSize);
    this.memory = new LRUCache<string, Buffer>({
      maxSize: memoryBytes,
      sizeCalculation: (b) => Math.max(1, b.length),
      dispose: (data) => this.pool.release(data),
    });
    this.gets = new Semaphore(o.maxConcurrentGets);
    // One listener per GET in flight, per run waiting for a slot and per pause between
    // attempts: bounded by the read memory, but often more than Node's default warning level.
    setMaxListeners(0, this.closing.signal);
  }

  get blockSize(): number {
    return this.o.blockSize;
  }

  private id(obj: ObjectVersion, index: number): string {
    return `${obj.bucket}\0${obj.key}\0${obj.etag}\0${index}`;
  }

  private blockLength(obj: ObjectVersion, index: number): number {
    return Math.max(0, Math.min(this.o.blockSize, obj.size - index * this.o.blockSize));
  }

  private present(obj: ObjectVersion, index: number): boolean {
    const id = this.id(obj, index);
    return this.memory.has(id) || this.inflight.has(id) || this.o.cache.has({ ...obj, index });
  }

  // Block `index` of `obj`, with at least its first `need` bytes filled in. `runBlocks` is how
  // many following blocks to fetch in the same GET when it has to go to S3.
  async read(obj: ObjectVersion, index: number, need: number, runBlocks: number): Promise<Buffer> {
    const id = this.id(obj, index);
    const hit = this.memory.get(id);
    if (hit) {
      this.stats.memoryHits++;
      return hit;
    }
    const pending = this.inflight.get(id);
    if (pending) {
      this.stats.inflightHits++;
      return await pending.wait(need);
    }
    if (this.loading.has(id) || this.o.cache.has({ ...obj, index })) {
      const data = await this.loadFromDisk(obj, index);
      if (data) return data;
    }
    const again = this.inflight.get(id);
    if (again) return await again.wait(need);
    this.startRun(obj, index, runBlocks, true);
    const started = this.inflight.get(id);
    if (!started) {
      const data = this.memory.get(id);
      if (data) return data;
      throw new DriverError(
        "DRIVER_CACHE_FAILED",
        `Block ${index} of s3://${obj.bucket}/${obj.key} vanished`,
      );
    }
    return await started.wait(need);
  }

  // Takes a whole object that came with its lookup (see S3Ops.lookup) as its only block, so
  // the first read of a small file needs no request. Memory only, in the recent-blocks LRU.
  offer(obj: ObjectVersion, body: Buffer): void {
    if (this.closed || body.length !== obj.size || obj.size === 0 || obj.size > this.o.blockSize) return;
    const id = this.id(obj, 0);
    if (!this.memory.has(id) && !this.inflight.has(id)) this.memory.set(id, body);
  }

  // Reads a block from the disk cache into memory (undefined when missing or damaged).
  private loadFromDisk(obj: ObjectVersion, index: number): Promise<Buffer | undefined> {
    const id = this.id(obj, index);
    const existing = this.loading.get(id);
    if (existing) return existing;
    const load = this.o.cache
      .get({ ...obj, index })
      .then((data) => {
        if (!data || data.length !== this.blockLength(obj, index)) return undefined;
        this.stats.diskHits++;
        this.memory.set(id, data);
        return data;
      })
      .finally(() => this.loading.delete(id));
    this.loading.set(id, load);
    return load;
  }

  // Starts background fetches of the missing blocks in [from, to), a part per GET, while the
  // memory budget allows.
  prefetch(obj: ObjectVersion, from: number, to: number): void {
    const partBlocks = this.o.partSize / this.o.blockSize;
    const last = Math.min(to, Math.ceil(obj.size / this.o.blockSize));
    for (let i = from; i < last; ) {
      if (this.inflightBytes >= this.o.readMemory / 2) return;
      const id = this.id(obj, i);
      if (this.memory.has(id) || this.inflight.has(id) || this.loading.has(id)) {
        i++;
        continue;
      }
      if (this.o.cache.has({ ...obj, index: i })) {
        // Cached on disk: bring it into memory ahead of the reader (a few reads at a time).
        if (this.loading.size < 8) this.loadFromDisk(obj, i).catch(() => {});
        i++;
        continue;
      }
      const count = Math.min(partBlocks, last - i);
      i += this.startRun(obj, i, count, false);
    }
  }

  // Registers pending blocks for the missing run starting at `first` and fetches them in one
  // GET. Returns how many blocks it took.
  private startRun(obj: ObjectVersion, first: number, maxBlocks: number, urgent: boolean): number {
    const total = Math.ceil(obj.size / this.o.blockSize);
    const blocks: PendingBlock[] = [];
    for (let i = first; i < Math.min(total, first + Math.max(1, maxBlocks)); i++) {
      if (i > first && this.present(obj, i)) break;
      const block = new PendingBlock(this.pool.take(this.blockLength(obj, i)));
      this.inflight.set(this.id(obj, i), block);
      this.inflightBytes += block.data.length;
      blocks.push(block);
    }
    if (blocks.length === 0) return 1;
    this.stats.gets++;
    this.stats.fetchedBlocks += blocks.length;
    const run = this.fetchRun(obj, first, blocks, urgent).catch((err) => {
      // A GET aborted by close is expected, not a failure worth a warning.
      const log = this.closed ? this.o.logger.debug : this.o.logger.warn;
      log.call(this.o.logger, { err, bucket: obj.bucket, key: obj.key, block: first }, "read from S3 failed");
    });
    this.runs.add(run);
    run.finally(() => this.runs.delete(run)).catch(() => {});
    return blocks.length;
  }

  // Streams one ranged GET into its blocks, resuming after a retryable failure where the last
  // attempt stopped. Every block it owns ends either complete or failed.
  private async fetchRun(
    obj: ObjectVersion,
    first: number,
    blocks: PendingBlock[],
    urgent: boolean,
  ): Promise<void> {
    const bs = this.o.blockSize;
    const start = first * bs;
    const end = start + blocks.reduce((n, b) => n + b.data.length, 0);
    let cursor = start;
    let settled = 0;
    const what = `GET s3://${obj.bucket}/${obj.key} bytes ${start}-${end - 1}`;
    const settle = (upTo: number) => {
      while (settled < blocks.length) {
        const block = blocks[settled] as PendingBlock;
        const blockStart = start + settled * bs;
        block.filled = Math.min(block.data.length, Math.max(0, upTo - blockStart));
        if (block.filled < block.data.length) {
          block.progress();
          return;
        }
        const index = first + settled;
        const id = this.id(obj, index);
        this.inflight.delete(id);
        this.inflightBytes -= block.data.length;
        // The fetch's hold passes to the cache write; the memory LRU takes one of its own.
        this.pool.hold(block.data);
        this.memory.set(id, block.data);
        const data = block.data;
        this.o.cache.put({ ...obj, index }, data, () => this.pool.release(data));
        block.progress();
        settled++;
      }
    };
    const signal = this.closing.signal;
    try {
      await this.gets.acquire(1, { urgent, signal });
      try {
        for (let attempt = 1; cursor < end; attempt++) {
          if (signal.aborted) throw new DriverError("DRIVER_ABORTED", `${what}: the mount is closing`);
          try {
            cursor = await this.streamInto(obj, cursor, end, start, blocks, settle);
          } catch (err) {
            const progress = (err as { progress?: number }).progress;
            if (progress !== undefined && progress > cursor) {
              cursor = progress;
              attempt = 1;
            }
            if (!isRetryable(err) || attempt >= this.o.maxAttempts) throw toDriverError(err, what);
            await sleep(
              backoffMs(
                { maxAttempts: 0, baseMs: this.o.retryBaseMs, timeoutMs: 0, logger: this.o.logger },
                attempt,
              ),
              signal,
            );
          }
        }
      } finally {
        this.gets.release(1);
      }
    } catch (raw) {
      // A wait cut short by close rejects with the closing reason (an AbortError): readers get
      // DRIVER_ABORTED, like a GET aborted by close.
      const err = toDriverError(raw, what);
      for (let i = settled; i < blocks.length; i++) {
        const id = this.id(obj, first + i);
        const block = blocks[i] as PendingBlock;
        if (this.inflight.get(id) === block) {
          this.inflight.delete(id);
          this.inflightBytes -= block.data.length;
        }
        block.fail(err);
        this.pool.release(block.data);
      }
      throw err;
    }
  }

  // One attempt: copies the body into the blocks from `cursor`; a stall longer than
  // requestTimeoutMs aborts it. Returns the new cursor (throws with progress kept via settle).
  private async streamInto(
    obj: ObjectVersion,
    from: number,
    end: number,
    start: number,
    blocks: PendingBlock[],
    settle: (upTo: number) => void,
  ): Promise<number> {
    const bs = this.o.blockSize;
    const controller = new AbortController();
    const timeout = this.o.requestTimeoutMs;
    let timer = setTimeout(() => controller.abort(stallError(timeout)), timeout);
    const poke = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(stallError(timeout)), timeout);
    };
    let cursor = from;
    let body: Readable | undefined;
    const onClose = () => controller.abort(this.closing.signal.reason);
    if (this.closing.signal.aborted) onClose();
    else this.closing.signal.addEventListener("abort", onClose, { once: true });
    try {
      body = await this.o.s3.getRange(
        obj.bucket,
        obj.key,
        { start: from, end, etag: obj.etag },
        controller.signal,
      );
      poke();
      for await (const chunk of body as AsyncIterable<Buffer>) {
        poke();
        let offset = 0;
        while (offset < chunk.length && cursor < end) {
          const blockIndex = Math.floor((cursor - start) / bs);
          const block = blocks[blockIndex] as PendingBlock;
          const within = cursor - start - blockIndex * bs;
          const n = Math.min(chunk.length - offset, block.data.length - within);
          chunk.copy(block.data, within, offset, offset + n);
          offset += n;
          cursor += n;
        }
        settle(cursor);
      }
      if (cursor < end)
        throw Object.assign(new Error(`body ended at byte ${cursor} of ${end}`), {
          code: "ERR_STREAM_PREMATURE_CLOSE",
        });
      return cursor;
    } catch (err) {
      settle(cursor);
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      throw Object.assign(reason instanceof Error ? reason : new Error(String(reason)), { progress: cursor });
    } finally {
      clearTimeout(timer);
      this.closing.signal.removeEventListener("abort", onClose);
      body?.destroy();
    }
  }

  // Stops starting new work, aborts the GETs in flight (their readers get DRIVER_ABORTED) and
  // waits for them to end.
  async close(): Promise<void> {
    this.closed = true;
    if (!this.closing.signal.aborted)
      this.closing.abort(Object.assign(new Error("the mount is closing"), { name: "AbortError" }));
    while (this.runs.size > 0) await Promise.allSettled([...this.runs]);
    this.memory.clear();
    this.pool.clear();
  }
}

function stallError(ms: number): Error {
  return Object.assign(new Error(`no data for ${ms} ms`), { name: "AttemptTimeout" });
}
