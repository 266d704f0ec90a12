import type { ChunkStats } from "../types.js";

export type { ChunkStats };

export function emptyStats(): ChunkStats {
  return {
    bytesWritten: 0,
    chunksTotal: 0,
    chunksUploaded: 0,
    bytesUploaded: 0,
    chunksDeduplicated: 0,
    bytesDeduplicated: 0,
    chunksUnchanged: 0,
    chunksPatched: 0,
  };
}
