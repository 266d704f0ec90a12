// SharedArrayBuffers lent to the codec workers and taken back for reuse. The workers read
// and write them in place: an ArrayBuffer transferred to a worker and back counted as new
// external memory on the main thread each time, and V8 ran its garbage collector for
// every few tens of MiB of it (docs/snapshot-format.md). A buffer taken must not be given
// back while anything still reads it; one never given back is left to the collector.
export class SharedBufferPool {
  private readonly spare: SharedArrayBuffer[] = [];

  // `maxSpare`: buffers kept for reuse at most.
  constructor(private readonly maxSpare: number) {}

  // A buffer of at least `bytes`: a spare one when one is big enough (and not more than
  // twice that), else a new one rounded up to 1 MiB, so that one size serves requests of
  // slightly different sizes.
  take(bytes: number): SharedArrayBuffer {
    const i = this.spare.findIndex((b) => b.byteLength >= bytes && b.byteLength <= 2 * bytes + 1048576);
    if (i >= 0) return this.spare.splice(i, 1)[0] as SharedArrayBuffer;
    return new SharedArrayBuffer(Math.max(1, Math.ceil(bytes / 1048576)) * 1048576);
  }

  give(buffer: SharedArrayBuffer): void {
    if (this.spare.length < this.maxSpare) this.spare.push(buffer);
  }
}
