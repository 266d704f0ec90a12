import type { Socket } from "node:net";
import type { TokenBucket } from "./token-bucket.js";

export interface ShapedPipeOptions {
  // One-way delay added to every chunk (ms). Default 0.
  delayMs?: number;
  // Rate limits this direction must respect (per connection, total...). Default none.
  buckets?: TokenBucket[];
  // Chunks are split to at most this size so the rate stays smooth. Default 64 KiB.
  maxChunkBytes?: number;
  // Bytes buffered before the source is paused: the memory bound per direction. Default 4 MiB.
  highWaterBytes?: number;
}

interface Pending {
  data: Buffer;
  releaseAt: number;
}

// Moves bytes from one socket to another as a delay line behind token buckets: each chunk
// leaves no earlier than its arrival + delayMs and no faster than every bucket allows.
// Order is preserved; the source is paused while more than highWaterBytes are queued.
export class ShapedPipe {
  private readonly queue: Pending[] = [];
  private queuedBytes = 0;
  private ended = false;
  // Whether the source finished cleanly (its pending bytes are still delivered).
  get sourceEnded(): boolean {
    return this.ended;
  }
  private waitingDrain = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly delayMs: number;
  private readonly buckets: TokenBucket[];
  private readonly maxChunk: number;
  private readonly highWater: number;
  bytes = 0;

  constructor(
    private readonly source: Socket,
    private readonly dest: Socket,
    options: ShapedPipeOptions = {},
  ) {
    this.delayMs = options.delayMs ?? 0;
    this.buckets = options.buckets ?? [];
    this.maxChunk = options.maxChunkBytes ?? 64 * 1024;
    this.highWater = options.highWaterBytes ?? 4 * 1024 * 1024;
    source.on("data", (chunk: Buffer) => this.onData(chunk));
    source.on("end", () => {
      this.ended = true;
      this.pump();
    });
  }

  private onData(chunk: Buffer): void {
    const releaseAt = performance.now() + this.delayMs;
    for (let offset = 0; offset < chunk.length; offset += this.maxChunk) {
      const data = chunk.subarray(offset, offset + this.maxChunk);
      this.queue.push({ data, releaseAt });
      this.queuedBytes += data.length;
    }
    if (this.queuedBytes > this.highWater) this.source.pause();
    this.pump();
  }

  // Sends every chunk that is due; otherwise sleeps until the next one is.
  private pump(): void {
    if (this.waitingDrain || this.timer || this.dest.destroyed) return;
    for (;;) {
      const head = this.queue[0];
      if (!head) {
        if (this.ended) this.dest.end();
        return;
      }
      const now = performance.now();
      let due = head.releaseAt;
      for (const bucket of this.buckets) due = Math.max(due, bucket.earliest(now));
      if (due > now) {
        this.timer = setTimeout(
          () => {
            this.timer = undefined;
            this.pump();
          },
          Math.max(1, due - now),
        );
        return;
      }
      this.queue.shift();
      this.queuedBytes -= head.data.length;
      this.bytes += head.data.length;
      for (const bucket of this.buckets) bucket.consume(now, head.data.length);
      const flushed = this.dest.write(head.data);
      if (this.source.isPaused() && this.queuedBytes < this.highWater / 2) this.source.resume();
      if (!flushed) {
        this.waitingDrain = true;
        this.dest.once("drain", () => {
          this.waitingDrain = false;
          this.pump();
        });
        return;
      }
    }
  }

  // Drops whatever is queued (the connection is going away).
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }
}
