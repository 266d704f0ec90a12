// SharedArrayBuffers lent to the codec workers and taken back for reuse. The workers read
// and write them in place: an ArrayBuffer transferred to a worker and back counted as new
// external memory on the main thread each time, and V8 ran its garbage collector for
// every few tens of MiB of it (docs/snapshot-format.md). A buffer taken must not be given
// back while anything still reads it; one never given back is left to the collector.
// Spare buffers serve the work in progress (a checkpoint, a download) and are dropped once
// the pool has been idle for `idleMs`, so that an engine between checkpoints does not keep
// them.
export class SharedBufferPool {
  private spare: SharedArrayBuffer[] = [];
  private idle: NodeJS.Timeout | undefined;

  // `maxSpare`: buffers kept for reuse at most.
  constructor(
    private readonly maxSpare: number,
    private readonly idleMs = 10_000,
  ) {}

  // A buffer of at least `bytes`: a spare one when one is big enough (and at most twice
  // that, or 64 KiB more), else a new one rounded up to 64 KiB (1 MiB from 1 MiB on), so
  // that one size serves requests of slightly different sizes.
  take(bytes: number): SharedArrayBuffer {
    const most = Math.max(2 * bytes, bytes + 65536);
    const i = this.spare.findIndex((b) => b.byteLength >= bytes && b.byteLength <= most);
    if (i >= 0) return this.spare.splice(i, 1)[0] as SharedArrayBuffer;
    const unit = bytes < 1048576 ? 65536 : 1048576;
    return new SharedArrayBuffer(Math.max(1, Math.ceil(bytes / unit)) * unit);
  }

  give(buffer: SharedArrayBuffer): void {
    if (this.spare.length >= this.maxSpare) return;
    this.spare.push(buffer);
    if (this.idle) this.idle.refresh();
    else this.idle = setTimeout(() => this.clear(), this.idleMs).unref();
  }

  // Spare buffers kept now.
  get spares(): number {
    return this.spare.length;
  }

  // Drops every spare buffer.
  clear(): void {
    this.spare = [];
    if (this.idle) clearTimeout(this.idle);
    this.idle = undefined;
  }
}
