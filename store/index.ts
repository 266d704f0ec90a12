// Public entry of the snapshot store: content-addressed chunks and manifests in S3.

export type { ChunkReaderImpl as StoreChunkReader, ChunkReaderOptions } from "./chunk/chunk-reader.js";
export {
  ChunkStore,
  type ChunkStoreOptions,
  DEFAULT_CHUNK_SIZE,
  type StagedChunk,
  spanRuns,
} from "./chunk/chunk-store.js";
export type { ChunkWriterImpl as StoreChunkWriter, ChunkWriterOptions } from "./chunk/chunk-writer.js";
export { SnapshotError, SnapshotErrorCode, type SnapshotErrorCodeValue } from "./errors.js";
export { downloadImageDir, type ImageDirOptions, uploadImageDir } from "./images/image-dir.js";
export {
  ChunkedFileSchema,
  type CpuinfoRef,
  MANIFEST_SCHEMA_VERSION,
  type Manifest,
  ManifestSchema,
  manifestChunkHashes,
  manifestSchemaFor,
  type OpenFileState,
} from "./manifest/manifest-schema.js";
export { type ManifestContext, parseManifest, serializeManifest } from "./manifest/parse-manifest.js";
export type { GcOptions, GcReport } from "./repository/collect-garbage.js";
export {
  type OpOptions,
  type SkippedGeneration,
  SnapshotRepository,
  type SnapshotRepositoryOptions,
  type UsableSnapshot,
} from "./repository/snapshot-repository.js";
export type { VerifyMode } from "./repository/verify-manifest.js";
export { type ListedObject, listObjects } from "./s3/s3-util.js";
export type {
  ChunkedFile,
  ChunkOpOptions,
  ChunkReader,
  ChunkRef,
  ChunkStoreLike,
  ChunkWriter,
  QuickHashedFile,
} from "./types.js";
