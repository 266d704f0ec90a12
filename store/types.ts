// The contract between the chunk store (store/), the filesystem (driver/, which writes
// files under a snapshot area through it) and the snapshot engine (criu/, which records
// the results in a manifest). Implementations live in store/; this file only declares.

// One content-addressed chunk: `hash` is the hex SHA-256 of the uncompressed bytes.
export interface ChunkRef {
  hash: string;
  // Uncompressed size in bytes.
  size: number;
  // Bytes stored in S3 (after compression, header included).
  stored: number;
  // Where the chunk is stored when it is not its own object: the id of a pack object
  // (64 hex digits, stored under the chunk prefix like a chunk) and the byte offset of the
  // chunk's stored bytes in it. Absent: the chunk is the object named by its hash.
  pack?: string;
  offset?: number;
  // Schema 3: the file uses only bytes [slice[0], slice[0] + slice[1]) of the chunk's
  // uncompressed bytes (`size` stays the whole chunk's). Written for the unchanged pages of a
  // chunk whose other pages changed since the previous generation (see ChunkStats.chunksPatched).
  slice?: [number, number];
}

// A file stored as chunks: its bytes are the concatenation of its chunks (or of their
// slices), in order.
export interface ChunkedFile {
  size: number;
  chunks: ChunkRef[];
}

// A file as a writer chunked it, with the quick hash (16 bytes, see CodecPool.hashMany) of
// each 4096-byte page in order: what the next generation's writer of the same file compares
// with, to skip the SHA-256 of chunks that did not change and to upload only the changed
// pages of those that did. Valid only within one ChunkStore.
export interface QuickHashedFile extends ChunkedFile {
  quick: Buffer;
}

export interface ChunkOpOptions {
  signal?: AbortSignal;
}

// Writes one file sequentially as chunks. Memory is bounded: write() resolves once the
// data is accepted, which waits while too many chunks are being compressed or uploaded.
export interface ChunkWriter {
  readonly size: number;
  // Appends `data` at the end of the file. The caller may reuse `data` once this resolves.
  write(data: Uint8Array, options?: ChunkOpOptions): Promise<void>;
  // Cuts the last chunk, waits for every upload, and returns the file's chunk list.
  finish(options?: ChunkOpOptions): Promise<ChunkedFile>;
  // Stops all work for this file; chunks already uploaded stay (GC removes unreferenced ones).
  abort(reason?: unknown): Promise<void>;
}

// Reads a chunked file at any offset, verifying each chunk's hash before serving it.
export interface ChunkReader {
  readonly size: number;
  // Reads up to `length` bytes at `offset` (fewer only at the end of the file).
  read(offset: number, length: number, options?: ChunkOpOptions): Promise<Buffer>;
  close(): Promise<void>;
}

// What driver/ needs from a chunk store.
export interface ChunkStoreLike {
  createWriter(): ChunkWriter;
  openReader(file: ChunkedFile): ChunkReader;
}

// Byte and chunk counters of a writer (store/'s writers expose them as `stats`; a store
// sums them over all its writers).
export interface ChunkStats {
  // Uncompressed bytes given to write().
  bytesWritten: number;
  // Chunks cut.
  chunksTotal: number;
  // Chunks uploaded because the store did not have them.
  chunksUploaded: number;
  // Stored (compressed, header included) bytes uploaded.
  bytesUploaded: number;
  // Chunks not uploaded because the store already had them.
  chunksDeduplicated: number;
  // Uncompressed bytes of those deduplicated chunks.
  bytesDeduplicated: number;
  // Of the deduplicated chunks, those found unchanged since the previous generation by
  // their quick hash (no SHA-256 computed; see ChunkWriterOptions.quick).
  chunksUnchanged: number;
  // Chunks cut that changed only in part since the previous generation (quick hashes per
  // page): stored as slices of the previous generation's chunks for the unchanged pages and
  // new, smaller chunks for the changed ones (those count as uploaded or deduplicated; the
  // unchanged bytes count in bytesDeduplicated).
  chunksPatched: number;
}

// A ChunkWriter that reports its counters (what store/'s ChunkStore returns).
export interface CountingChunkWriter extends ChunkWriter {
  readonly stats: Readonly<ChunkStats>;
}
