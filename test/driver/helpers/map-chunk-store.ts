import { createHash } from "node:crypto";
import type {
  ChunkedFile,
  ChunkReader,
  ChunkRef,
  ChunkStoreLike,
  ChunkWriter,
} from "../../../store/types.js";

// A stand-in for the real chunk store in store/ (which another component provides): chunks
// kept in a Map, cut every `chunkSize` bytes, hashed like the real thing. Enough to check that
// the driver routes chunked-area files through the ChunkStoreLike contract.
export class MapChunkStore implements ChunkStoreLike {
  readonly chunks = new Map<string, Buffer>();

  constructor(private readonly chunkSize = 64 * 1024) {}

  createWriter(): ChunkWriter {
    const store = this;
    const refs: ChunkRef[] = [];
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let size = 0;
    const cut = () => {
      const data = Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      const hash = createHash("sha256").update(data).digest("hex");
      store.chunks.set(hash, data);
      refs.push({ hash, size: data.length, stored: data.length });
    };
    return {
      get size() {
        return size;
      },
      async write(data: Uint8Array) {
        pending.push(Buffer.from(data));
        pendingBytes += data.length;
        size += data.length;
        if (pendingBytes >= store.chunkSize) cut();
      },
      async finish(): Promise<ChunkedFile> {
        if (pendingBytes > 0) cut();
        return { size, chunks: [...refs] };
      },
      async abort() {},
    };
  }

  openReader(file: ChunkedFile): ChunkReader {
    const data = Buffer.concat(file.chunks.map((c) => this.chunks.get(c.hash) ?? Buffer.alloc(0)));
    return {
      size: file.size,
      async read(offset: number, length: number) {
        return Buffer.from(data.subarray(offset, Math.min(file.size, offset + length)));
      },
      async close() {},
    };
  }
}
