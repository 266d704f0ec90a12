import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChunkStore, downloadImageDir, SnapshotError, uploadImageDir } from "../../store/index.js";
import { makeMemoryImage } from "./memory-image.js";
import { type S3Fixture, startS3 } from "./s3-fixture.js";

let s3: S3Fixture;
let work: string;

beforeAll(async () => {
  s3 = await startS3();
  work = await mkdtemp(join(tmpdir(), "store-images-"));
});
afterAll(async () => {
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

describe("image directories", () => {
  it("uploads a CRIU-like images directory and writes it back identical, deduplicating the second time", async () => {
    const src = join(work, "dump1");
    await mkdir(join(src, "subdir"), { recursive: true });
    const files: Record<string, Buffer> = {
      "pages-1.img": makeMemoryImage(8 * 1024 * 1024, 4),
      "pagemap-1.img": randomBytes(3000),
      "core-1.img": randomBytes(1),
      "empty.img": Buffer.alloc(0),
    };
    for (const [name, data] of Object.entries(files)) await writeFile(join(src, name), data);
    const store = new ChunkStore({ client: s3.client, bucket: s3.bucket, prefix: "img/chunks/" });
    try {
      const first = await uploadImageDir(store, src);
      expect(Object.keys(first.images).sort()).toEqual(Object.keys(files).sort());
      expect(first.stats.bytesWritten).toBe(Object.values(files).reduce((n, f) => n + f.length, 0));
      const again = await uploadImageDir(store, src);
      expect(again.stats.chunksUploaded).toBe(0);
      expect(again.images).toEqual(first.images);
      const dst = join(work, "restore1");
      await downloadImageDir(store, first.images, dst);
      for (const [name, data] of Object.entries(files))
        expect((await readFile(join(dst, name))).equals(data)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it("writes back files whose chunks are more than one writev can take (4 KiB chunks in packs), with repeats", async () => {
    const src = join(work, "dump-small-chunks");
    await mkdir(src, { recursive: true });
    // 6 MiB of 4 KiB chunks: a 4 MiB run of a pack is 1,024 pieces and more (Linux's
    // IOV_MAX), and the zero pages repeat one chunk at many places of two files.
    const pages = makeMemoryImage(6 * 1024 * 1024, 7);
    for (let o = 0; o < pages.length; o += 40 * 4096) pages.fill(0, o, o + 3 * 4096);
    const files: Record<string, Buffer> = {
      "pages-1.img": pages,
      "pages-2.img": Buffer.concat([randomBytes(5000), pages.subarray(0, 2 * 1024 * 1024)]),
    };
    for (const [name, data] of Object.entries(files)) await writeFile(join(src, name), data);
    const options = { client: s3.client, bucket: s3.bucket, prefix: "img-small/chunks/", chunkSize: 4096 };
    const store = new ChunkStore({ ...options, packSize: 8 * 1024 * 1024 });
    try {
      const { images } = await uploadImageDir(store, src);
      const dst = join(work, "restore-small-chunks");
      const fresh = new ChunkStore(options);
      try {
        await downloadImageDir(fresh, images, dst);
      } finally {
        await fresh.close();
      }
      for (const [name, data] of Object.entries(files))
        expect((await readFile(join(dst, name))).equals(data)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it("refuses a chunk from a newer chunk format (SNAPSHOT_CHUNK_FORMAT_UNSUPPORTED)", async () => {
    const store = new ChunkStore({
      client: s3.client,
      bucket: s3.bucket,
      prefix: "fmt/chunks/",
      chunkSize: 64 * 1024,
    });
    try {
      const { file } = await store.writeFrom([randomBytes(1000)]);
      const ref = file.chunks[0] as { hash: string };
      const got = await s3.client.send(
        new GetObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(ref.hash) }),
      );
      const bytes = Buffer.from(
        await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
      bytes[4] = 2; // format version 2
      await s3.client.send(
        new PutObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(ref.hash), Body: bytes }),
      );
      const fresh = new ChunkStore({ client: s3.client, bucket: s3.bucket, prefix: "fmt/chunks/" });
      try {
        const err = await fresh
          .openReader(file)
          .read(0, 10)
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SnapshotError);
        expect((err as SnapshotError).code).toBe("SNAPSHOT_CHUNK_FORMAT_UNSUPPORTED");
        expect((err as SnapshotError).message).toContain("format version 2");
      } finally {
        await fresh.close();
      }
    } finally {
      await store.close();
    }
  });
});
