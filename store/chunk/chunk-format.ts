import { SnapshotError, SnapshotErrorCode } from "../errors.js";

// Every chunk object starts with this 16-byte header so that the encoding can evolve
// (another codec, a dictionary) without renaming chunks:
//   0..3  magic "SNPC"
//   4     format version (1)
//   5     codec: 0 = stored as is, 1 = zstd frame
//   6..7  reserved, 0
//   8..11 uncompressed size, u32 little-endian
//   12..15 reserved, 0
// The payload follows. A chunk's name is the SHA-256 of its uncompressed bytes.
export const CHUNK_HEADER_BYTES = 16;
export const CHUNK_FORMAT_VERSION = 1;
const MAGIC = 0x43504e53; // "SNPC" read as u32 little-endian

export const ChunkCodec = { None: 0, Zstd: 1 } as const;
export type ChunkCodecValue = (typeof ChunkCodec)[keyof typeof ChunkCodec];

export interface ChunkHeader {
  codec: ChunkCodecValue;
  size: number;
}

// Fills the first CHUNK_HEADER_BYTES of `object`.
export function writeChunkHeader(object: Buffer, header: ChunkHeader): void {
  object.fill(0, 0, CHUNK_HEADER_BYTES);
  object.writeUInt32LE(MAGIC, 0);
  object.writeUInt8(CHUNK_FORMAT_VERSION, 4);
  object.writeUInt8(header.codec, 5);
  object.writeUInt32LE(header.size, 8);
}

// Reads and checks the header of chunk `hash` (named in errors).
export function readChunkHeader(object: Uint8Array, hash: string): ChunkHeader {
  if (object.length < CHUNK_HEADER_BYTES) {
    throw new SnapshotError(
      SnapshotErrorCode.CorruptChunk,
      `Chunk ${hash} is damaged: ${object.length} bytes, shorter than its ${CHUNK_HEADER_BYTES}-byte header`,
      { hash },
    );
  }
  const view = Buffer.from(object.buffer, object.byteOffset, object.byteLength);
  if (view.readUInt32LE(0) !== MAGIC) {
    throw new SnapshotError(SnapshotErrorCode.CorruptChunk, `Chunk ${hash} is damaged: bad magic bytes`, {
      hash,
    });
  }
  const version = view.readUInt8(4);
  const codec = view.readUInt8(5);
  if (version !== CHUNK_FORMAT_VERSION || (codec !== ChunkCodec.None && codec !== ChunkCodec.Zstd)) {
    throw new SnapshotError(
      SnapshotErrorCode.ChunkFormatUnsupported,
      `Chunk ${hash} has format version ${version}, codec ${codec}; this build reads version ${CHUNK_FORMAT_VERSION}, codecs 0-1: upgrade snapctl`,
      { hash },
    );
  }
  return { codec: codec as ChunkCodecValue, size: view.readUInt32LE(8) };
}

// Where chunk `hash` lives under `prefix`: two hex digits of fan-out keep listings and
// S3 partitions balanced.
export function chunkKey(prefix: string, hash: string): string {
  return `${prefix}${hash.slice(0, 2)}/${hash}`;
}

// The hash named by a key under `prefix`, or undefined for anything else.
export function hashFromKey(prefix: string, key: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const match = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key.slice(prefix.length));
  return match?.[2]?.startsWith(match[1] ?? "") ? match[2] : undefined;
}
