// Quick hashes (XXH3-128 per page, seeded per store): a writer given the previous
// generation of a file skips the SHA-256 of chunks unchanged at the same place. What it
// writes must be exactly what a full hash of the same bytes gives (chunks changed in part
// are stored as patches: test/store/patched-chunks.test.ts).
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChunkStore } from "../../store/index.js";
import type { QuickHashedFile } from "../../store/types.js";
import { writeQuick } from "./manifest-fixture.js";
import { packedStore, type S3Fixture, startS3 } from "./s3-fixture.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

let s3: S3Fixture;
let counter = 0;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.close();
});

const newStore = () => packedStore(s3, `quick${counter++}/chunks/`);
const write = writeQuick;

async function readAll(store: ChunkStore, file: { size: number; chunks: QuickHashedFile["chunks"] }) {
  const reader = store.openReader(file);
  const data = await reader.read(0, file.size);
  await reader.close();
  return data;
}

describe("ChunkStore quick hashes", () => {
  it("reuses unchanged chunks without hashing them, and gives the same chunks as a full hash", async () => {
    const store = newStore();
    try {
      const v1 = randomBytes(5 * MiB + 1000);
      const first = await write(store, v1);
      expect(first.quick.quick.length).toBe(16 * Math.ceil(v1.length / 4096));
      expect(first.stats.chunksUnchanged).toBe(0);

      // Chunks 3 and 40 change, and the file grows: its old last chunk (1000 bytes) is
      // now a full chunk, so it cannot be compared.
      const v2 = Buffer.concat([v1, randomBytes(100 * KiB)]);
      for (const at of [3 * CHUNK + 5, 40 * CHUNK + CHUNK - 1]) v2.writeUInt8(v2.readUInt8(at) ^ 0xff, at);
      const second = await write(store, v2, first.quick);
      const comparable = first.file.chunks.length - 1;
      expect(second.stats.chunksUnchanged).toBe(comparable - 2);
      // The two changed chunks: one new page each, the rest slices of the old chunk.
      expect(second.stats.chunksPatched).toBe(2);
      expect(second.stats.chunksTotal).toBe(Math.ceil(v2.length / CHUNK));

      // The same bytes through a store that hashes everything: the same chunk hashes,
      // except for the two patched chunks (a new page at one end, a slice of the old
      // chunk for the rest: 2 references each instead of 1).
      const reference = newStore();
      try {
        const full = await write(reference, v2);
        const whole = (c: { hash: string; size: number; slice?: unknown }) => [c.hash, c.size, c.slice];
        expect(second.file.chunks.length).toBe(full.file.chunks.length + 2);
        expect(second.file.chunks.slice(0, 3).map(whole)).toEqual(full.file.chunks.slice(0, 3).map(whole));
        expect(second.file.chunks.slice(5, 41).map(whole)).toEqual(full.file.chunks.slice(4, 40).map(whole));
        expect(second.file.chunks.slice(43).map(whole)).toEqual(full.file.chunks.slice(41).map(whole));
      } finally {
        await reference.close();
      }
      expect((await readAll(store, second.file)).equals(v2)).toBe(true);
      // Its quick hashes serve the next generation in turn.
      const third = await write(store, v2, second.quick);
      expect(third.stats.chunksUnchanged).toBe(Math.ceil(v2.length / CHUNK));
      expect(third.stats.chunksUploaded).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("compares nothing across stores (the seed differs) and shrinking files stay correct", async () => {
    const a = newStore();
    const b = newStore();
    try {
      const v1 = randomBytes(2 * MiB);
      const fromA = await write(a, v1);
      // Same bytes, another store: no chunk is taken on its quick hash.
      const inB = await write(b, v1, fromA.quick);
      expect(inB.stats.chunksUnchanged).toBe(0);
      expect((await readAll(b, inB.file)).equals(v1)).toBe(true);
      // A shorter file, same store: the chunks it still has are unchanged.
      const v2 = v1.subarray(0, MiB + 10);
      const shorter = await write(a, v2, fromA.quick);
      expect(shorter.stats.chunksUnchanged).toBe(Math.floor(v2.length / CHUNK));
      expect(shorter.file.chunks.length).toBe(Math.ceil(v2.length / CHUNK));
      expect((await readAll(a, shorter.file)).equals(v2)).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
