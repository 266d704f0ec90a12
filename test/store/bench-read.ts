// Benchmark (not a test): how fast a ChunkReader serves what a restore asks for.
// Writes a 256 MiB synthetic memory image, then from a fresh store (empty cache) measures
// random 4 KiB reads (what `criu lazy-pages` does on page faults), the same reads again
// (cache hits: 200 chunks fit in the 64 MiB cache), and a sequential pass in 128 KiB reads (FUSE request size; read-ahead on).
// Run: npx tsx test/store/bench-read.ts [MiB=256] [latencyMs=0] [chunkKiB=256]
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { startShapingProxy } from "../../bench/proxy/index.js";
import { S3Server } from "../../cloud/index.js";
import { ChunkStore } from "../../store/index.js";
import { makeMemoryImage, prng } from "./memory-image.js";

const mib = Number(process.argv[2] ?? 256);
const latencyMs = Number(process.argv[3] ?? 0);
const chunkSize = Number(process.argv[4] ?? 256) * 1024;

const dir = await mkdtemp(join(tmpdir(), "bench-read-"));
const s3 = new S3Server({ directory: join(dir, "s3"), buckets: ["bench"] });
await s3.start();
const proxy = latencyMs > 0 ? await startShapingProxy({ target: s3.endpoint, latencyMs }) : undefined;
const client = new S3Client({
  endpoint: proxy?.endpoint ?? s3.endpoint,
  forcePathStyle: true,
  region: "us-east-1",
  credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
});
const percentile = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)] ?? 0;
const ms = (x: number) => x.toFixed(2);
try {
  const image = makeMemoryImage(mib * 1024 * 1024, 1);
  const writer = new ChunkStore({ client, bucket: "bench", prefix: "c/", chunkSize });
  const { file } = await writer.writeFrom([image]);
  await writer.close();

  const store = new ChunkStore({ client, bucket: "bench", prefix: "c/", chunkSize });
  const reader = store.openReader(file);
  const random = prng(3);
  const offsets = Array.from({ length: 200 }, () => Math.floor((random() * image.length) / 4096) * 4096);
  const timeReads = async () => {
    const times: number[] = [];
    for (const offset of offsets) {
      const t = performance.now();
      const got = await reader.read(offset, 4096);
      times.push(performance.now() - t);
      if (!got.equals(image.subarray(offset, offset + 4096))) throw new Error(`wrong bytes at ${offset}`);
    }
    return times;
  };
  const cold = await timeReads();
  const warm = await timeReads();
  const fresh = new ChunkStore({ client, bucket: "bench", prefix: "c/", chunkSize });
  const seqReader = fresh.openReader(file);
  const t = performance.now();
  for (let o = 0; o < file.size; o += 128 * 1024) await seqReader.read(o, 128 * 1024);
  const seconds = (performance.now() - t) / 1000;
  console.log(
    `${mib} MiB image, ${chunkSize / 1024} KiB chunks, ${proxy ? `${latencyMs} ms per request` : "loopback s3rver"}`,
  );
  console.log(
    `random 4 KiB reads, cold: mean ${ms(cold.reduce((a, b) => a + b) / cold.length)} ms, p50 ${ms(percentile(cold, 0.5))} ms, p99 ${ms(percentile(cold, 0.99))} ms`,
  );
  console.log(
    `random 4 KiB reads, cached: mean ${ms(warm.reduce((a, b) => a + b) / warm.length)} ms, p99 ${ms(percentile(warm, 0.99))} ms`,
  );
  console.log(
    `sequential 128 KiB reads: ${(file.size / 2 ** 20 / seconds).toFixed(0)} MiB/s (${seconds.toFixed(2)} s)`,
  );
  await store.close();
  await fresh.close();
} finally {
  client.destroy();
  await proxy?.close();
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
}
