import { z } from "zod";

// The newest manifest schema this build writes and reads. Raise it (and document the
// change in docs/snapshot-format.md) for any change an older reader would misread.
// 2: chunk references may point into pack objects (`pack`, `offset`); a reader of 1 would
// look for those chunks as objects of their own and find them missing.
// 3: chunk references may use a slice of their chunk (`slice`); a reader of 2 would read
// the whole chunk there. Written only by manifests that have a slice (manifestSchemaFor),
// so snapshots without one stay readable by readers of 2.
export const MANIFEST_SCHEMA_VERSION = 3;

const count = z.int().nonnegative();
const hash = z.string().regex(/^[0-9a-f]{64}$/, "a lowercase hex SHA-256");

export const ChunkRefSchema = z.object({
  hash,
  // Uncompressed bytes.
  size: count,
  // Bytes of the chunk object in S3 (header + payload).
  stored: count,
  // Schema 2: the pack object holding the chunk, and the chunk's offset in it.
  pack: hash.optional(),
  offset: count.optional(),
  // Schema 3: the file uses bytes [slice[0], slice[0] + slice[1]) of the chunk.
  slice: z.tuple([count, z.int().positive()]).optional(),
});

// A file stored as chunks; its chunk (or slice) sizes must add up to its size.
export const ChunkedFileSchema = z
  .object({ size: count, chunks: z.array(ChunkRefSchema) })
  .refine((f) => f.chunks.reduce((n, c) => n + (c.slice ? c.slice[1] : c.size), 0) === f.size, {
    message: "chunk sizes do not add up to the file size",
  })
  .refine((f) => f.chunks.every((c) => !c.slice || c.slice[0] + c.slice[1] <= c.size), {
    message: "a chunk's slice reaches past the chunk's end",
  })
  .refine((f) => f.chunks.every((c) => (c.pack === undefined) === (c.offset === undefined)), {
    message: "a chunk in a pack needs both pack and offset",
  });

// `criu cpuinfo dump` output: chunked like an image, or inline (base64) when small.
export const CpuinfoSchema = z.union([
  z.object({ file: ChunkedFileSchema }),
  z.object({ inline: z.base64() }),
]);

export const OpenFileSchema = z.object({
  // Path as the task sees it (under the driver's mount).
  path: z.string().min(1),
  bucket: z.string().min(1),
  key: z.string(),
  // Size and ETag of the object at the freeze.
  size: count,
  etag: z.string(),
  // Where a server-side copy taken at the freeze lives, when the content could still change.
  snapshotKey: z.string().optional(),
});

export const ManifestSchema = z.object({
  schemaVersion: z.union([z.literal(1), z.literal(2), z.literal(MANIFEST_SCHEMA_VERSION)]),
  generation: z.int().positive(),
  parentGeneration: z.int().positive().nullable(),
  createdAt: z.iso.datetime({ offset: true }),
  // full: every image file written from scratch (no chunk reuse known);
  // incremental-chunks: images chunked and deduplicated against the store;
  // predump: CRIU pre-dumps with --track-mem shortened the freeze (soft-dirty kernels).
  mode: z.enum(["full", "incremental-chunks", "predump"]),
  // Where the chunks live and how they were cut.
  chunkStore: z.object({
    bucket: z.string().min(1),
    prefix: z.string(),
    chunkSize: z.int().positive(),
  }),
  task: z.object({
    id: z.string().min(1),
    command: z.array(z.string()).min(1),
    cwd: z.string(),
    identity: z.object({ uid: count, gid: count }),
    // The task's accumulated run time at the freeze, in ms, counting the time it ran
    // before earlier restores. Optional: manifests written before it existed lack it.
    runtimeMs: count.optional(),
  }),
  host: z.object({
    criuVersion: z.string(),
    kernel: z.string(),
    arch: z.string(),
    cpuinfo: CpuinfoSchema.nullable(),
  }),
  // CRIU image file name (e.g. "pages-1.img") -> its chunks.
  images: z.record(z.string().min(1), ChunkedFileSchema),
  openFiles: z.array(OpenFileSchema),
  timings: z.object({ freezeMs: count, dumpMs: count, uploadMs: count, totalMs: count }),
  bytes: z.object({
    // Uncompressed bytes of all image files.
    logical: count,
    // Stored bytes uploaded by this generation (new chunks only).
    uploaded: count,
    // Uncompressed bytes not uploaded because the store already had the chunks.
    deduplicated: count,
  }),
});

export type Manifest = z.infer<typeof ManifestSchema>;
export type OpenFileState = z.infer<typeof OpenFileSchema>;
export type CpuinfoRef = z.infer<typeof CpuinfoSchema>;

// The schema version a manifest with these images needs: 3 with a slice anywhere, else 2
// (readable by older readers).
export function manifestSchemaFor(images: Record<string, { chunks: { slice?: unknown }[] }>): 2 | 3 {
  for (const file of Object.values(images)) if (file.chunks.some((c) => c.slice !== undefined)) return 3;
  return 2;
}

// Every distinct chunk hash a manifest references (images and the cpuinfo file).
export function manifestChunkHashes(
  manifest: Manifest,
): Map<string, { size: number; stored: number; pack?: string; offset?: number }> {
  const out = new Map<string, { size: number; stored: number; pack?: string; offset?: number }>();
  const files = Object.values(manifest.images);
  if (manifest.host.cpuinfo && "file" in manifest.host.cpuinfo) files.push(manifest.host.cpuinfo.file);
  for (const file of files) {
    for (const c of file.chunks) {
      const { hash: _, slice: __, ...ref } = c;
      out.set(c.hash, ref);
    }
  }
  return out;
}
