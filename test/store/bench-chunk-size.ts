// Benchmark (not a test): how the chunk size trades deduplication against request count.
// For each chunk size, writes a 256 MiB synthetic memory image to a real s3rver, then
// versions of it where 10% of the pages changed in runs of different lengths, and prints
// the bytes uploaded, the PUT counts and the wall time.
// Run: npx tsx test/store/bench-chunk-size.ts [MiB=256] [latencyMs=0] [uploadConcurrency=8] [chunkKiB,...]
// A latency > 0 puts bench/proxy's shaping proxy (that delay per request, 80 MB/s per
// connection) between the store and s3rver, to see the per-request cost of small chunks.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { startShapingProxy } from "../../bench/proxy/index.js";
import { S3Server } from "../../cloud/index.js";
import { ChunkStore } from "../../store/index.js";
import { dirtyPages, makeMemoryImage } from "./memory-image.js";

const mib = Number(process.argv[2] ?? 256);
const latencyMs = Number(process.argv[3] ?? 0);
const uploadConcurrency = Number(process.argv[4] ?? 8);
const sizes = (process.argv[5] ?? "64,256,1024,4096").split(",").map((k) => Number(k) * 1024);
const patterns = [
  { name: "runs 1-16 pages", minRun: 1, maxRun: 16 },
  { name: "runs 16-256 pages", minRun: 16, maxRun: 256 },
  { name: "runs 256-2048 pages", minRun: 256, maxRun: 2048 },
];

const dir = await mkdtemp(join(tmpdir(), "bench-chunk-"));
const s3 = new S3Server({ directory: join(dir, "s3"), buckets: ["bench"] });
await s3.start();
const proxy = latencyMs > 0 ? await startShapingProxy({ target: s3.endpoint, latencyMs }) : undefined;
const client = new S3Client({
  endpoint: proxy?.endpoint ?? s3.endpoint,
  forcePathStyle: true,
  region: "us-east-1",
  credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
});
try {
  const base = makeMemoryImage(mib * 1024 * 1024, 1);
  const versions = patterns.map((p, i) => ({ ...p, image: dirtyPages(base, { ...p, seed: 10 + i }).image }));
  console.log(
    `image ${mib} MiB, half compressible, 10% of pages changed per version, ` +
      (proxy ? `${latencyMs} ms per request, 80 MB/s per connection` : "loopback s3rver") +
      `, ${uploadConcurrency} uploads in flight`,
  );
  console.log(
    `chunk\tfull MiB up\tfull PUTs\tfull s\t${patterns.map((p) => `${p.name}: %up/PUTs/s`).join("\t")}`,
  );
  for (const chunkSize of sizes) {
    const store = new ChunkStore({
      client,
      bucket: "bench",
      prefix: `c${chunkSize}/`,
      chunkSize,
      uploadConcurrency,
    });
    const put = async (image: Buffer) => {
      const started = performance.now();
      const writer = store.createWriter();
      // 128 KiB writes, as the FUSE driver delivers them.
      for (let o = 0; o < image.length; o += 128 * 1024)
        await writer.write(image.subarray(o, o + 128 * 1024));
      await writer.finish();
      return { ...writer.stats, seconds: (performance.now() - started) / 1000 };
    };
    const full = await put(base);
    const row = [
      `${chunkSize / 1024} KiB`,
      (full.bytesUploaded / 2 ** 20).toFixed(1),
      String(full.chunksUploaded),
      full.seconds.toFixed(2),
    ];
    for (const v of versions) {
      const inc = await put(v.image);
      row.push(
        `${((100 * inc.bytesUploaded) / full.bytesUploaded).toFixed(1)}% / ${inc.chunksUploaded} / ${inc.seconds.toFixed(2)}`,
      );
    }
    console.log(row.join("\t"));
    await store.close();
  }
} finally {
  client.destroy();
  await proxy?.close();
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
}
