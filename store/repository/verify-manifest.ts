import { forEachBounded } from "../../common/for-each-bounded.js";
import type { ChunkStore } from "../chunk/chunk-store.js";
import { boundedOptions, SnapshotError, SnapshotErrorCode, type SnapshotErrorCodeValue } from "../errors.js";
import { type Manifest, manifestChunkHashes } from "../manifest/manifest-schema.js";

// "none": trust the manifest; "quick": HEAD every chunk object and every pack once, and
// compare stored sizes (a pack must reach past its last chunk);
// "full": download, decompress and hash every chunk.
export type VerifyMode = "none" | "quick" | "full";

// From this many packs on, quick verify lists the chunk prefix instead of HEADing each.
const LIST_FROM_PACKS = 32;

// Throws the first missing (SNAPSHOT_MISSING_CHUNK) or damaged (SNAPSHOT_CORRUPT_CHUNK)
// chunk of `manifest`, naming it and the generation.
export async function verifyManifest(
  store: ChunkStore,
  manifest: Manifest,
  options: { mode: VerifyMode; concurrency: number; signal?: AbortSignal },
): Promise<void> {
  if (options.mode === "none") return;
  const label = `task "${manifest.task.id}" generation ${manifest.generation}`;
  const chunks = manifestChunkHashes(manifest);
  // One HEAD per pack however many chunks it holds, all packs first and in parallel (a
  // chunk-by-chunk walk would wait on each pack in turn: 7 s for a 4 GiB task here).
  const packs = new Map<string, Promise<number | undefined>>();
  if (options.mode === "quick") {
    const ids = new Set<string>();
    for (const ref of chunks.values()) if (ref.pack !== undefined) ids.add(ref.pack);
    // Many packs: a listing of the chunk prefix gives their sizes 1,000 to a request (a
    // 4 GiB task has about 370 packs; HEADing them took s3rver 1.6 s here). The listing
    // stops once it has read four times as many objects as there are packs (a store
    // shared with much more), and whatever it did not show is HEADed.
    if (ids.size >= LIST_FROM_PACKS) {
      let seen = 0;
      for await (const object of store.listChunks(options.signal ? { signal: options.signal } : {})) {
        if (ids.has(object.hash)) packs.set(object.hash, Promise.resolve(object.size));
        if (++seen >= ids.size * 4) break;
      }
    }
    await forEachBounded(
      [...ids].filter((id) => !packs.has(id)),
      options.concurrency,
      async (id) => {
        const head = store.headChunk(id, options.signal);
        packs.set(id, head);
        await head;
      },
      boundedOptions(options.signal),
    );
  }
  await forEachBounded(
    chunks,
    options.concurrency,
    async ([hash, ref]) => {
      if (options.mode === "full") {
        try {
          await store.fetchChunk({ hash, ...ref }, options.signal);
        } catch (err) {
          if (err instanceof SnapshotError && err.hash === hash) {
            throw new SnapshotError(
              err.code as SnapshotErrorCodeValue,
              `Snapshot of ${label}: ${err.message}`,
              {
                cause: err,
                hash,
                generation: manifest.generation,
              },
            );
          }
          throw err;
        }
        return;
      }
      if (ref.pack !== undefined && ref.offset !== undefined) {
        let head = packs.get(ref.pack);
        if (!head) {
          head = store.headChunk(ref.pack, options.signal);
          packs.set(ref.pack, head);
        }
        const packBytes = await head;
        if (packBytes === undefined) {
          throw new SnapshotError(
            SnapshotErrorCode.MissingChunk,
            `Snapshot of ${label}: chunk ${hash} is missing: its pack s3://${store.bucket}/${store.keyOf(ref.pack)} is gone`,
            { hash, generation: manifest.generation },
          );
        }
        if (packBytes < ref.offset + ref.stored) {
          throw new SnapshotError(
            SnapshotErrorCode.CorruptChunk,
            `Snapshot of ${label}: chunk ${hash} is damaged: its pack ${ref.pack} has ${packBytes} bytes, the chunk ends at ${ref.offset + ref.stored}`,
            { hash, generation: manifest.generation },
          );
        }
        return;
      }
      const stored = await store.headChunk(hash, options.signal);
      if (stored === undefined) {
        throw new SnapshotError(
          SnapshotErrorCode.MissingChunk,
          `Snapshot of ${label}: chunk ${hash} is missing from s3://${store.bucket}/${store.keyOf(hash)}`,
          { hash, generation: manifest.generation },
        );
      }
      if (stored !== ref.stored) {
        throw new SnapshotError(
          SnapshotErrorCode.CorruptChunk,
          `Snapshot of ${label}: chunk ${hash} is damaged: ${stored} bytes stored, the manifest says ${ref.stored}`,
          { hash, generation: manifest.generation },
        );
      }
    },
    boundedOptions(options.signal),
  );
}
