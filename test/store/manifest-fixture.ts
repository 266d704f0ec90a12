// Builds snapshot generations for repository and GC tests: writes image files through a
// real ChunkStore and commits a manifest naming them.
import {
  type ChunkedFile,
  type ChunkStore,
  type Manifest,
  manifestSchemaFor,
  type QuickHashedFile,
  type SnapshotRepository,
} from "../../store/index.js";

export function manifestFor(
  store: ChunkStore,
  task: string,
  generation: number,
  images: Record<string, ChunkedFile>,
): Manifest {
  const logical = Object.values(images).reduce((n, f) => n + f.size, 0);
  return {
    schemaVersion: manifestSchemaFor(images),
    generation,
    parentGeneration: generation > 1 ? generation - 1 : null,
    createdAt: new Date().toISOString(),
    mode: generation > 1 ? "incremental-chunks" : "full",
    chunkStore: { bucket: store.bucket, prefix: store.prefix, chunkSize: store.chunkSize },
    task: { id: task, command: ["python3", "train.py"], cwd: "/work", identity: { uid: 1000, gid: 1000 } },
    host: {
      criuVersion: "4.1.1",
      kernel: "6.18.44",
      arch: "x86_64",
      cpuinfo: { inline: Buffer.from("cpuinfo-image").toString("base64") },
    },
    images,
    openFiles: [{ path: "/mnt/s3/data/out.log", bucket: "data", key: "out.log", size: 10, etag: '"abc"' }],
    timings: { freezeMs: 10, dumpMs: 100, uploadMs: 50, totalMs: 160 },
    bytes: { logical, uploaded: 0, deduplicated: 0 },
  };
}

export async function writeFile(store: ChunkStore, data: Buffer): Promise<ChunkedFile> {
  const writer = store.createWriter();
  for (let o = 0; o < data.length; o += 128 * 1024) await writer.write(data.subarray(o, o + 128 * 1024));
  return writer.finish();
}

// Writes `data` in 300 KiB writes with quick hashes, compared with `previous` (the same
// file's last write by this store): the file, its quick hashes for the next write, counters.
export async function writeQuick(store: ChunkStore, data: Buffer, previous?: QuickHashedFile) {
  const writer = store.createWriter({ quick: previous ? { previous } : {} });
  for (let o = 0; o < data.length; o += 300 * 1024) await writer.write(data.subarray(o, o + 300 * 1024));
  const file = await writer.finish();
  return { file, quick: writer.quickHashed as QuickHashedFile, stats: { ...writer.stats } };
}

// Writes `files` and commits them as the next generation; returns the manifest.
export async function commitGeneration(
  repo: SnapshotRepository,
  files: Record<string, Buffer>,
): Promise<Manifest> {
  const images: Record<string, ChunkedFile> = {};
  for (const [name, data] of Object.entries(files)) images[name] = await writeFile(repo.store, data);
  const manifest = manifestFor(repo.store, repo.task, await repo.nextGeneration(), images);
  await repo.commit(manifest);
  return manifest;
}

export async function readFile(store: ChunkStore, file: ChunkedFile): Promise<Buffer> {
  const reader = store.openReader(file);
  try {
    return await reader.read(0, file.size);
  } finally {
    await reader.close();
  }
}
