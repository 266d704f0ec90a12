import { createHash } from "node:crypto";
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { decompress } from "zstd-napi";
import { type ChunkStore, SnapshotError, SnapshotErrorCode } from "../../store/index.js";
import type { ChunkedFile, ChunkRef } from "../../store/types.js";

// Chunks below this are fetched and decoded here rather than by the store's reader:
// store/'s codec worker returns decompressed chunks under 4 KiB from Node's shared buffer
// pool without their byte offset, so they read back shifted (see docs/snapshot-engine.md).
const SMALL_CHUNK = 4096;

// Writes a snapshot's image files into `dir`, every chunk verified against its hash;
// `concurrency` files at once (each reader's read-ahead bounds its own memory).
export async function downloadImages(
  store: ChunkStore,
  images: Record<string, ChunkedFile>,
  dir: string,
  options: { concurrency?: number; signal?: AbortSignal } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const queue = Object.entries(images);
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [name, file] = next;
      if (name.includes("/") || name === "." || name === "..") {
        throw new SnapshotError(
          SnapshotErrorCode.ManifestCorrupt,
          `Image file name "${name}" is not a plain file name`,
        );
      }
      await downloadOne(store, file, join(dir, name), options.signal);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 4 }, worker));
}

async function downloadOne(
  store: ChunkStore,
  file: ChunkedFile,
  path: string,
  signal?: AbortSignal,
): Promise<void> {
  const handle = await open(path, "w");
  const reader = store.openReader(file);
  try {
    let offset = 0;
    for (const chunk of file.chunks) {
      const data =
        chunk.size < SMALL_CHUNK
          ? await fetchSmallChunk(store, chunk, signal)
          : await reader.read(offset, chunk.size, { signal });
      await handle.write(data, 0, data.length, offset);
      offset += chunk.size;
    }
  } finally {
    await reader.close();
    await handle.close();
  }
}

// One chunk object: 16-byte header ("SNPC", version 1, codec 0 raw / 1 zstd, u32 size),
// then the payload (docs/snapshot-format.md), verified against its SHA-256.
async function fetchSmallChunk(store: ChunkStore, ref: ChunkRef, signal?: AbortSignal): Promise<Buffer> {
  const key = store.keyOf(ref.hash);
  let object: Buffer;
  try {
    const r = await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }), {
      abortSignal: signal,
    });
    object = Buffer.from((await r.Body?.transformToByteArray()) ?? new Uint8Array());
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) {
      throw new SnapshotError(
        SnapshotErrorCode.MissingChunk,
        `Chunk ${ref.hash} is missing from s3://${store.bucket}/${key}`,
        {
          cause: err,
          hash: ref.hash,
        },
      );
    }
    throw new SnapshotError(
      SnapshotErrorCode.S3Failed,
      `Reading chunk s3://${store.bucket}/${key}: ${(err as Error).message}`,
      {
        cause: err,
        retryable: true,
      },
    );
  }
  let data: Buffer | undefined;
  if (object.length >= 16 && object.subarray(0, 4).toString("latin1") === "SNPC" && object[4] === 1) {
    const payload = object.subarray(16);
    try {
      data = object[5] === 1 ? decompress(payload) : object[5] === 0 ? payload : undefined;
    } catch {
      data = undefined;
    }
  }
  if (!data || data.length !== ref.size || createHash("sha256").update(data).digest("hex") !== ref.hash) {
    throw new SnapshotError(
      SnapshotErrorCode.CorruptChunk,
      `Chunk ${ref.hash} (s3://${store.bucket}/${key}) failed its checksum`,
      {
        hash: ref.hash,
      },
    );
  }
  return data;
}
