import type { BlockSource, ObjectVersion } from "./block-source.js";

export interface FileReaderOptions {
  partSize: number;
  prefetchInitial: number;
  prefetchMax: number;
}

// The read side of one open file: detects sequential access and keeps a prefetch window
// ahead of it that doubles at each part boundary up to prefetchMax; random reads fetch only
// the blocks they touch and reset the window.
export class FileReader {
  private lastEnd = -1;
  private window: number;
  private prefetchedTo = 0;

  constructor(
    private readonly source: BlockSource,
    readonly object: ObjectVersion,
    private readonly o: FileReaderOptions,
  ) {
    this.window = o.prefetchInitial;
  }

  // Copies up to `length` bytes at `offset` into `target`; returns how many (0 at the end).
  async read(target: Buffer, length: number, offset: number): Promise<number> {
    const size = this.object.size;
    if (offset >= size || length <= 0) return 0;
    const end = Math.min(size, offset + length);
    const bs = this.source.blockSize;
    // The kernel's readahead sends neighbouring requests slightly out of order: near the last
    // end counts as sequential.
    const sequential =
      (this.lastEnd < 0 && offset === 0) ||
      (this.lastEnd >= 0 &&
        offset >= this.lastEnd - this.o.partSize &&
        offset <= this.lastEnd + this.o.partSize);
    if (sequential) {
      if (
        Math.floor(end / this.o.partSize) > Math.floor(Math.max(0, this.lastEnd) / this.o.partSize) &&
        this.lastEnd >= 0
      )
        this.window = Math.min(this.o.prefetchMax, this.window * 2);
      this.lastEnd = Math.max(this.lastEnd, end);
      // Refill only when less than half the window is left, to part boundaries, so that the
      // prefetch GETs are whole parts rather than one block per kernel request.
      if (this.prefetchedTo - end < this.window / 2 && this.prefetchedTo < size) {
        const part = this.o.partSize;
        const goal = Math.min(size, Math.ceil((end + this.window) / part) * part);
        const from = Math.floor(Math.max(end, this.prefetchedTo) / bs);
        this.source.prefetch(this.object, from, Math.ceil(goal / bs));
        this.prefetchedTo = goal;
      }
    } else {
      this.window = this.o.prefetchInitial;
      this.lastEnd = end;
      this.prefetchedTo = end;
    }
    const runBlocks = sequential ? this.o.partSize / bs : 1;
    let copied = 0;
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      const blockStart = b * bs;
      const from = Math.max(offset, blockStart) - blockStart;
      const to = Math.min(end, blockStart + bs) - blockStart;
      const data = await this.source.read(this.object, b, to, runBlocks);
      data.copy(target, copied, from, to);
      copied += to - from;
    }
    return copied;
  }
}
