// Byte and chunk counters of a writer (or of a whole store, summed over its writers).
export interface ChunkStats {
  // Uncompressed bytes given to write().
  bytesWritten: number;
  // Chunks cut.
  chunksTotal: number;
  // Chunks uploaded because the store did not have them.
  chunksUploaded: number;
  // Stored (compressed, with header) bytes uploaded.
  bytesUploaded: number;
  // Chunks not uploaded because the store already had them.
  chunksDeduplicated: number;
  // Uncompressed bytes of those deduplicated chunks.
  bytesDeduplicated: number;
}

export function emptyStats(): ChunkStats {
  return {
    bytesWritten: 0,
    chunksTotal: 0,
    chunksUploaded: 0,
    bytesUploaded: 0,
    chunksDeduplicated: 0,
    bytesDeduplicated: 0,
  };
}
