// Read block buffers, reused instead of allocated per block. A sequential read of 1 GiB
// through fresh 1 MiB buffers page-faulted every byte in and left the garbage collector a
// steady stream of large external buffers; both showed in the mount's profile (about 10% of
// its main thread each). The buffers are views into shared slabs (SharedArrayBuffers of
// SLAB_BLOCKS blocks) so that the disk cache's writer thread reads them in place: a slab is
// sent to it once, and each block write after that names only a slab and an offset.
//
// Ownership is counted per handed-out buffer: whoever keeps a buffer beyond the current
// call (the recent-blocks memory, a disk cache write in progress) holds it, and a buffer
// whose last hold is released is reused only after the current macrotask. A reader that was
// handed a block copies out of it in the promise continuations of that same macrotask, so
// it never sees the buffer refilled under it.
export const SLAB_BLOCKS = 8;

// The slabs of every pool, so that the cache writer can tell a slab (kept by its thread
// and named by id afterwards) from a one-off shared buffer (sent along with its write).
const slabs = new WeakSet<SharedArrayBuffer>();

export function isSlab(buffer: ArrayBufferLike): buffer is SharedArrayBuffer {
  return buffer instanceof SharedArrayBuffer && slabs.has(buffer);
}

interface Slot {
  slab: SharedArrayBuffer;
  offset: number;
}

export class BlockPool {
  private readonly free: Slot[] = [];
  private quarantine: Slot[] = [];
  private readonly holds = new WeakMap<Buffer, { slot: Slot; count: number }>();
  private flushScheduled = false;
  // Slabs made and buffers handed out again, for tests and logs.
  readonly stats = { slabs: 0, reused: 0 };

  constructor(readonly blockSize: number) {}

  // A buffer of `length` bytes (at most blockSize), held once by the caller.
  take(length: number): Buffer {
    if (length > this.blockSize)
      throw new RangeError(`${length} bytes do not fit a ${this.blockSize}-byte block`);
    let slot = this.free.pop();
    if (slot) this.stats.reused++;
    else slot = this.grow();
    const buf = Buffer.from(slot.slab, slot.offset, length);
    this.holds.set(buf, { slot, count: 1 });
    return buf;
  }

  private grow(): Slot {
    const slab = new SharedArrayBuffer(this.blockSize * SLAB_BLOCKS);
    slabs.add(slab);
    this.stats.slabs++;
    for (let i = SLAB_BLOCKS - 1; i > 0; i--) this.free.push({ slab, offset: i * this.blockSize });
    return { slab, offset: 0 };
  }

  // One more holder of `buf` (ignored for buffers that are not the pool's).
  hold(buf: Buffer): void {
    const h = this.holds.get(buf);
    if (h) h.count++;
  }

  // One holder fewer; the last release returns the buffer's space to the pool, usable after
  // the current macrotask (ignored for buffers that are not the pool's).
  release(buf: Buffer): void {
    const h = this.holds.get(buf);
    if (!h) return;
    if (--h.count > 0) return;
    this.holds.delete(buf);
    this.quarantine.push(h.slot);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.free.push(...this.quarantine);
        this.quarantine = [];
      });
    }
  }

  // Forgets the free space (buffers still held go to the garbage collector with their slabs).
  clear(): void {
    this.free.length = 0;
    this.quarantine = [];
  }
}
