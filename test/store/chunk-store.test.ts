import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startShapingProxy } from "../../bench/proxy/index.js";
import type { ChunkedFile } from "../../store/index.js";
import { ChunkStore, SnapshotError } from "../../store/index.js";
import { dirtyPages, makeMemoryImage, prng, sha256 } from "./memory-image.js";
import { type S3Fixture, startS3 } from "./s3-fixture.js";

let s3: S3Fixture;
let prefixCounter = 0;

beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.close();
});

function newStore(options: Partial<ConstructorParameters<typeof ChunkStore>[0]> = {}): ChunkStore {
  return new ChunkStore({
    client: s3.client,
    bucket: s3.bucket,
    prefix: `t${prefixCounter++}/chunks/`,
    ...options,
  });
}

// Writes `data` in pieces of `piece` bytes and returns the chunk list.
async function writeAll(store: ChunkStore, data: Buffer, piece = 128 * 1024) {
  const writer = store.createWriter();
  for (let o = 0; o < data.length; o += piece) await writer.write(data.subarray(o, o + piece));
  const file = await writer.finish();
  return { file, stats: writer.stats };
}

async function readAll(store: ChunkStore, file: ChunkedFile, piece = 1024 * 1024): Promise<Buffer> {
  const reader = store.openReader(file);
  const parts: Buffer[] = [];
  for (let o = 0; o < file.size; o += piece) parts.push(await reader.read(o, piece));
  await reader.close();
  return Buffer.concat(parts);
}

describe("ChunkStore round trip", () => {
  const chunkSize = 64 * 1024;
  for (const size of [0, 1, chunkSize, chunkSize + 1, 3 * chunkSize - 7]) {
    it(`is byte-identical for ${size} bytes`, async () => {
      const store = newStore({ chunkSize });
      try {
        const data = randomBytes(size);
        const { file } = await writeAll(store, data, 10_000);
        expect(file.size).toBe(size);
        expect(file.chunks.length).toBe(Math.ceil(size / chunkSize));
        expect(file.chunks.reduce((n, c) => n + c.size, 0)).toBe(size);
        const back = await readAll(store, file);
        expect(back.equals(data)).toBe(true);
        const reader = store.openReader(file);
        expect((await reader.read(size, 10)).length).toBe(0);
        expect(
          (await reader.read(Math.max(0, size - 1), 10)).equals(data.subarray(Math.max(0, size - 1))),
        ).toBe(true);
      } finally {
        await store.close();
      }
    });
  }

  // Compressible files under 4 KiB decompress into a slice of Node's shared buffer pool
  // in the codec worker: a regression test for chunks read back shifted by the slice's offset.
  for (const size of [100, 3000, 4095, 5000]) {
    it(`is byte-identical for a compressible ${size}-byte file (small decompressed chunks)`, async () => {
      const store = newStore({ chunkSize });
      try {
        const data = Buffer.from("CRIU image header\n".repeat(Math.ceil(size / 18)).slice(0, size));
        const { file } = await writeAll(store, data);
        expect(file.chunks[0]?.stored).toBeLessThan(size);
        // A fresh store reads from S3 (no cache of the written bytes), several times over.
        const fresh = new ChunkStore({ client: s3.client, bucket: s3.bucket, prefix: store.prefix });
        try {
          for (let i = 0; i < 3; i++) expect((await readAll(fresh, file)).equals(data)).toBe(true);
        } finally {
          await fresh.close();
        }
      } finally {
        await store.close();
      }
    });
  }

  it("is byte-identical for 300 MiB of mixed compressible and random data, at random offsets too", async () => {
    const store = newStore();
    try {
      const data = Buffer.concat([makeMemoryImage(200 * 1024 * 1024, 7), randomBytes(100 * 1024 * 1024)]);
      const { file, stats } = await writeAll(store, data, 100_003);
      expect(stats.bytesWritten).toBe(data.length);
      expect(stats.chunksTotal).toBe(file.chunks.length);
      expect(stats.chunksUploaded + stats.chunksDeduplicated).toBe(stats.chunksTotal);
      // The compressible half must actually shrink.
      expect(stats.bytesUploaded).toBeLessThan(data.length * 0.75);
      const back = await readAll(store, file, 1_000_000);
      expect(sha256(back)).toBe(sha256(data));
      // Random small reads across chunk boundaries, as lazy-pages does.
      const reader = store.openReader(file);
      const random = prng(5);
      for (let i = 0; i < 200; i++) {
        const offset = Math.floor(random() * data.length);
        const length = 1 + Math.floor(random() * 300_000);
        const got = await reader.read(offset, length);
        expect(got.equals(data.subarray(offset, offset + length))).toBe(true);
      }
    } finally {
      await store.close();
    }
  });
});

describe("ChunkStore deduplication", () => {
  it("uploads at most 20% of the first snapshot after 10% of a 256 MiB memory image changed", async () => {
    const store = newStore();
    try {
      const first = makeMemoryImage(256 * 1024 * 1024, 1);
      const a = await writeAll(store, first);
      const { image: second, pages } = dirtyPages(first, { fraction: 0.1, minRun: 16, maxRun: 256, seed: 3 });
      expect(pages).toBeGreaterThanOrEqual((first.length / 4096) * 0.1);
      // A fresh store on the same prefix: the known-chunks set comes from the S3 listing.
      const store2 = new ChunkStore({ client: s3.client, bucket: s3.bucket, prefix: store.prefix });
      try {
        const b = await writeAll(store2, second);
        console.log(
          `dedup: first snapshot uploaded ${a.stats.bytesUploaded} bytes (${a.stats.chunksUploaded} chunks), ` +
            `second uploaded ${b.stats.bytesUploaded} bytes (${b.stats.chunksUploaded} chunks, ` +
            `${b.stats.chunksDeduplicated} deduplicated) = ${((100 * b.stats.bytesUploaded) / a.stats.bytesUploaded).toFixed(1)}%`,
        );
        expect(b.stats.bytesUploaded).toBeGreaterThan(0);
        expect(b.stats.bytesUploaded).toBeLessThanOrEqual(a.stats.bytesUploaded * 0.2);
        expect(sha256(await readAll(store2, b.file))).toBe(sha256(second));
      } finally {
        await store2.close();
      }
    } finally {
      await store.close();
    }
  });
});

describe("ChunkStore damage", () => {
  it("names a damaged chunk (SNAPSHOT_CORRUPT_CHUNK) and a missing one (SNAPSHOT_MISSING_CHUNK)", async () => {
    const store = newStore({ chunkSize: 64 * 1024 });
    try {
      const data = randomBytes(200 * 1024);
      const { file } = await writeAll(store, data);
      const [c0, c1] = file.chunks as [(typeof file.chunks)[0], (typeof file.chunks)[0]];
      // Damage chunk 0: keep its header, flip payload bytes.
      const got = await s3.client.send(
        new GetObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(c0.hash) }),
      );
      const bytes = Buffer.from(
        await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
      bytes[100] = (bytes[100] as number) ^ 0xff;
      await s3.client.send(
        new PutObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(c0.hash), Body: bytes }),
      );
      await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(c1.hash) }));
      const fresh = new ChunkStore({ client: s3.client, bucket: s3.bucket, prefix: store.prefix });
      try {
        const reader = fresh.openReader(file);
        const corrupt = await reader.read(0, 10).catch((e: unknown) => e);
        expect(corrupt).toBeInstanceOf(SnapshotError);
        expect((corrupt as SnapshotError).code).toBe("SNAPSHOT_CORRUPT_CHUNK");
        expect((corrupt as SnapshotError).message).toContain(c0.hash);
        const missing = await reader.read(64 * 1024, 10).catch((e: unknown) => e);
        expect((missing as SnapshotError).code).toBe("SNAPSHOT_MISSING_CHUNK");
        expect((missing as SnapshotError).message).toContain(c1.hash);
        // Undamaged chunks still read.
        expect((await reader.read(128 * 1024, 1024)).equals(data.subarray(128 * 1024, 129 * 1024))).toBe(
          true,
        );
      } finally {
        await fresh.close();
      }
    } finally {
      await store.close();
    }
  });

  it("refuses writes after finish and stops on abort", async () => {
    const store = newStore({ chunkSize: 64 * 1024 });
    try {
      const writer = store.createWriter();
      await writer.write(randomBytes(100));
      await writer.finish();
      await expect(writer.write(randomBytes(1))).rejects.toMatchObject({ code: "SNAPSHOT_CLOSED" });
      const controller = new AbortController();
      const w2 = store.createWriter({ signal: controller.signal });
      await w2.write(randomBytes(70 * 1024));
      controller.abort(new Error("spot notice"));
      await expect(w2.finish()).rejects.toMatchObject({ code: "SNAPSHOT_ABORTED" });
    } finally {
      await store.close();
    }
  });
});

describe("ChunkStore memory bound and streams", () => {
  it("keeps at most maxBufferedBytes in flight while uploads lag (write() waits)", async () => {
    // 30 ms per request in front of s3rver, so that uploads fall behind the writer.
    const proxy = await startShapingProxy({ target: s3.server.endpoint, latencyMs: 30 });
    const client = new S3Client({
      endpoint: proxy.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    const chunkSize = 64 * 1024;
    const maxBufferedBytes = 4 * chunkSize;
    const store = new ChunkStore({
      client,
      bucket: s3.bucket,
      prefix: `t${prefixCounter++}/chunks/`,
      chunkSize,
      maxBufferedBytes,
      uploadConcurrency: 2,
    });
    try {
      const data = randomBytes(64 * chunkSize);
      const writer = store.createWriter();
      let peak = 0;
      for (let o = 0; o < data.length; o += 16 * 1024) {
        await writer.write(data.subarray(o, o + 16 * 1024));
        const s = writer.stats;
        // Chunks cut but not yet uploaded, counted from the public counters.
        const inFlight = (s.chunksTotal - s.chunksUploaded - s.chunksDeduplicated) * chunkSize;
        peak = Math.max(peak, inFlight);
        expect(inFlight).toBeLessThanOrEqual(maxBufferedBytes);
        expect(writer.bufferedBytes).toBeLessThanOrEqual(maxBufferedBytes);
      }
      // The bound was reached, so write() really had to wait.
      expect(peak).toBe(maxBufferedBytes);
      const file = await writer.finish();
      expect((await readAll(store, file)).equals(data)).toBe(true);
    } finally {
      await store.close();
      client.destroy();
      await proxy.close();
    }
  });

  it("writes from a stream and streams a file back", async () => {
    const store = newStore({ chunkSize: 64 * 1024 });
    try {
      const data = randomBytes(1_000_000);
      const { file, stats } = await store.writeFrom(
        Readable.from([data.subarray(0, 333), data.subarray(333)]),
      );
      expect(stats.bytesWritten).toBe(data.length);
      const parts: Buffer[] = [];
      for await (const part of store.openReader(file).stream()) parts.push(part);
      expect(Buffer.concat(parts).equals(data)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it("stops a read whose signal fires, leaving the store usable", async () => {
    const store = newStore({ chunkSize: 64 * 1024 });
    try {
      const data = randomBytes(300 * 1024);
      const { file } = await writeAll(store, data);
      const controller = new AbortController();
      controller.abort(new Error("restore cancelled"));
      const reader = store.openReader(file);
      await expect(reader.read(0, 1000, { signal: controller.signal })).rejects.toMatchObject({
        code: "SNAPSHOT_ABORTED",
      });
      expect((await reader.read(0, 1000)).equals(data.subarray(0, 1000))).toBe(true);
    } finally {
      await store.close();
    }
  });
});
