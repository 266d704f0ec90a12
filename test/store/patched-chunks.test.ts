// Patched chunks (schema 3): a writer given the previous generation of a file compares
// quick hashes page by page; a chunk that changed in a few runs of pages is stored as
// slices of the previous generation's chunks plus new chunks for the changed runs only.
// Real s3rver; every read goes back to S3 through a fresh store.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile as writeLocal } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChunkedFile,
  ChunkedFileSchema,
  downloadImageDir,
  parseManifest,
  SnapshotRepository,
  serializeManifest,
  uploadImageDir,
} from "../../store/index.js";
import type { ChunkRef } from "../../store/types.js";
import { manifestFor, writeQuick } from "./manifest-fixture.js";
import { packedStore, type S3Fixture, startS3 } from "./s3-fixture.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4 * KiB;
const CHUNK = 64 * KiB;

let s3: S3Fixture;
let counter = 0;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.close();
});

const newStore = (prefix = `patched${counter++}/.snapshots/chunks/`) => packedStore(s3, prefix);
const write = writeQuick;

// Reads `file` through a new store on the same prefix (nothing cached), whole and in pieces
// that start and end inside slices.
async function readBack(prefix: string, file: ChunkedFile): Promise<Buffer> {
  const store = newStore(prefix);
  try {
    const reader = store.openReader(file);
    const whole = await reader.read(0, file.size);
    const parts: Buffer[] = [];
    for (let o = 0; o < file.size; o += 7 * KiB + 13) parts.push(await reader.read(o, 7 * KiB + 13));
    expect(Buffer.concat(parts).equals(whole)).toBe(true);
    await reader.close();
    return whole;
  } finally {
    await store.close();
  }
}

// The references covering piece `i` (CHUNK bytes) of `file`.
function piece(file: ChunkedFile, i: number): ChunkRef[] {
  const out: ChunkRef[] = [];
  let at = 0;
  for (const ref of file.chunks) {
    const length = ref.slice ? ref.slice[1] : ref.size;
    if (at >= i * CHUNK && at < (i + 1) * CHUNK) out.push(ref);
    at += length;
  }
  return out;
}

function flipPage(data: Buffer, page: number): void {
  randomBytes(PAGE).copy(data, page * PAGE);
}

describe("patched chunks", () => {
  it("uploads only the changed runs of pages and reads back byte for byte", async () => {
    const store = newStore();
    try {
      // 3 MiB and a partial last page; 49 pieces, the last one 5000 bytes.
      const v1 = randomBytes(3 * MiB + 5000);
      const first = await write(store, v1);
      expect(first.quick.quick.length).toBe(16 * Math.ceil(v1.length / PAGE));
      expect(first.stats.chunksPatched).toBe(0);

      const v2 = Buffer.from(v1);
      flipPage(v2, 2 * 16 + 5); // piece 2: one page
      flipPage(v2, 7 * 16 + 1); // piece 7: pages 1-2 and 9 (two runs)
      flipPage(v2, 7 * 16 + 2);
      flipPage(v2, 7 * 16 + 9);
      for (let p = 0; p < 16; p++) flipPage(v2, 9 * 16 + p); // piece 9: all of it
      for (const p of [0, 4, 8, 12]) flipPage(v2, 11 * 16 + p); // piece 11: four runs
      for (const p of [0, 2]) flipPage(v2, 13 * 16 + p); // piece 13: one gap page: one run
      v2.writeUInt8(v2.readUInt8(v2.length - 1) ^ 0xff, v2.length - 1); // the last, partial page
      const second = await write(store, v2, first.quick);

      expect(second.stats.chunksPatched).toBe(4); // pieces 2, 7, 13 and the last
      expect(second.stats.chunksUnchanged).toBe(49 - 6);
      // Piece 2: the previous chunk around one new page.
      const old2 = piece(first.file, 2)[0] as ChunkRef;
      expect(piece(second.file, 2).map((r) => [r.hash === old2.hash, r.size, r.slice])).toEqual([
        [true, CHUNK, [0, 5 * PAGE]],
        [false, PAGE, undefined],
        [true, CHUNK, [6 * PAGE, 10 * PAGE]],
      ]);
      expect(piece(second.file, 7)).toHaveLength(5);
      expect(piece(second.file, 9)).toHaveLength(1);
      expect(piece(second.file, 11)).toHaveLength(1);
      // Piece 13: pages 0-2 as one chunk (page 1, unchanged, goes again), then the rest.
      expect(piece(second.file, 13).map((r) => r.slice ?? r.size)).toEqual([3 * PAGE, [3 * PAGE, 13 * PAGE]]);
      // The last piece (5000 bytes): the first page kept, the partial one new.
      expect(piece(second.file, 48).map((r) => r.slice ?? r.size)).toEqual([[0, PAGE], 5000 - PAGE]);
      // New bytes: 1 + 3 + 16 + 16 + 3 pages and 904 bytes, random so stored about as is.
      const newBytes = (1 + 3 + 16 + 16 + 3) * PAGE + 904;
      expect(second.stats.bytesUploaded).toBeGreaterThanOrEqual(newBytes);
      expect(second.stats.bytesUploaded).toBeLessThan(newBytes + 20 * KiB);
      expect(second.stats.bytesDeduplicated + newBytes).toBe(v2.length);
      expect(ChunkedFileSchema.safeParse(second.file).success).toBe(true);
      expect((await readBack(store.prefix, second.file)).equals(v2)).toBe(true);

      // A third generation on the second's quick hashes: piece 2 changes again (patched:
      // five references now); the fourth changes it once more, and with more than four
      // references it is stored whole again, which bounds the references per piece.
      const v3 = Buffer.from(v2);
      flipPage(v3, 2 * 16 + 12);
      const third = await write(store, v3, second.quick);
      expect(piece(third.file, 2)).toHaveLength(5);
      expect(third.stats.chunksPatched).toBe(1);
      expect(third.stats.chunksUnchanged).toBe(48);
      expect((await readBack(store.prefix, third.file)).equals(v3)).toBe(true);
      const v4 = Buffer.from(v3);
      flipPage(v4, 2 * 16);
      const fourth = await write(store, v4, third.quick);
      expect(piece(fourth.file, 2)).toHaveLength(1);
      expect(piece(fourth.file, 2)[0]?.slice).toBeUndefined();
      expect(fourth.stats.chunksPatched).toBe(0);
      expect((await readBack(store.prefix, fourth.file)).equals(v4)).toBe(true);
      // Unchanged pieces keep their references, slices included.
      expect(piece(fourth.file, 7)).toEqual(piece(second.file, 7));
    } finally {
      await store.close();
    }
  });

  it("keeps generations readable through a chain of random changes", async () => {
    const store = newStore();
    try {
      let data = randomBytes(2 * MiB);
      let previous = await write(store, data);
      for (let generation = 2; generation <= 6; generation++) {
        data = Buffer.from(data);
        // 5% of the pages, in runs of 1-3 pages placed at random.
        for (let n = 0; n < 12; n++) {
          const start = Math.floor(Math.random() * (data.length / PAGE - 3));
          const pages = 1 + Math.floor(Math.random() * 3);
          for (let p = start; p < start + pages; p++) flipPage(data, p);
        }
        const next = await write(store, data, previous.quick);
        expect(next.stats.chunksUnchanged + next.stats.chunksPatched).toBeGreaterThan(0);
        expect((await readBack(store.prefix, next.file)).equals(data)).toBe(true);
        for (let i = 0; i < 32; i++) expect(piece(next.file, i).length).toBeLessThanOrEqual(10);
        previous = next;
      }
    } finally {
      await store.close();
    }
  });

  it("restores, verifies and survives GC of the generation whose chunks it slices", async () => {
    const store = newStore();
    const task = "t-patched";
    const repo = new SnapshotRepository({ store, root: store.prefix.replace(/chunks\/$/, ""), task });
    const dir = await mkdtemp(join(tmpdir(), "patched-"));
    try {
      // Two image files; pages-1.img holds the same page many times over (one chunk
      // referenced again and again, then sliced).
      const zeros = Buffer.alloc(2 * MiB);
      const random = randomBytes(MiB + 100);
      await writeLocal(join(dir, "pages-1.img"), zeros);
      await writeLocal(join(dir, "core-1.img"), random);
      const g1 = await uploadImageDir(store, dir, { quick: {} });
      await repo.commit(manifestFor(store, task, await repo.nextGeneration(), g1.images));
      const zeros2 = Buffer.from(zeros);
      for (const page of [3, 40, 41, 200, 511]) flipPage(zeros2, page);
      const random2 = Buffer.from(random);
      flipPage(random2, 100);
      await writeLocal(join(dir, "pages-1.img"), zeros2);
      await writeLocal(join(dir, "core-1.img"), random2);
      const g2 = await uploadImageDir(store, dir, { quick: { previous: g1.quickHashed ?? {} } });
      expect(g2.stats.chunksPatched).toBe(5);
      const m2 = manifestFor(store, task, await repo.nextGeneration(), g2.images);
      expect(m2.schemaVersion).toBe(3);
      expect(parseManifest(serializeManifest(m2), { task, generation: 2 })).toEqual(m2);
      await repo.commit(m2);

      // Generation 1's manifest goes; the chunks generation 2 slices stay.
      // Grace 0: every unreferenced chunk goes at once.
      const report = await repo.gc({ keep: 1, graceMs: 0 });
      expect(report.deletedGenerations).toEqual([1]);
      await repo.verify(m2, "full");
      await repo.verify(m2, "quick");
      const out = join(dir, "restored");
      await downloadImageDir(newStore(store.prefix), m2.images, out);
      expect((await readFile(join(out, "pages-1.img"))).equals(zeros2)).toBe(true);
      expect((await readFile(join(out, "core-1.img"))).equals(random2)).toBe(true);

      // A slice past its chunk's end is a corrupt manifest, not a short read.
      const bad = structuredClone(m2);
      const sliced = Object.values(bad.images)
        .flatMap((f) => f.chunks)
        .find((c) => c.slice);
      if (!sliced?.slice) throw new Error("no slice in generation 2");
      sliced.slice = [sliced.size - sliced.slice[1] + PAGE, sliced.slice[1]];
      expect(() => parseManifest(JSON.stringify(bad), { task, generation: 2 })).toThrow(
        expect.objectContaining({
          code: "SNAPSHOT_MANIFEST_CORRUPT",
          message: expect.stringContaining("a chunk's slice reaches past the chunk's end"),
        }),
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
