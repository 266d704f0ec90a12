// Probe behind the upload figures of docs/snapshot-format.md: uploadImageDir of an N MiB
// image shaped like bench/checkpoint/hog.c's memory (half text pages, half random), then of
// the same image after 10% of its pages changed in runs of 10 out of every 100, through the
// benchmark proxy, with the snapshot store's settings; prints both times, bytes and load.
// Usage: N=4096 node --import tsx bench/probes/incremental-upload.ts [--no-quick] [--download]
//   --no-quick: a second store that learns the first generation (what a restored engine
//   does) instead of the same store with quick hashes.
//   --download: then downloadImageDir of the second generation from a fresh store into
//   /dev/shm (what an eager restore does before `criu restore`), timed, with the load.
import { randomFillSync } from "node:crypto";
import { mkdir, open, rm } from "node:fs/promises";
import { Agent } from "node:http";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { createSnapshotStore } from "../../criu/engine/layout.js";
import { downloadImageDir, uploadImageDir } from "../../store/images/image-dir.js";
import { startEnvironment } from "../harness/environment.js";
import { cpuTicks, machineTimes, printCpu } from "./proc-cpu.js";

const MiB = 1 << 20;
const mib = Number(process.env.N ?? 1024);
const quick = !process.argv.includes("--no-quick");
const download = process.argv.includes("--download");
const work = `/tmp/incremental-probe-${process.pid}`;
const images = `/dev/shm/incremental-probe-${process.pid}`;
await mkdir(work, { recursive: true });
await mkdir(images, { recursive: true });
const pagesFile = join(images, "pages-1.img");
const pages = mib * 256;

async function writeFirst(): Promise<void> {
  const line = Buffer.from("spot-snapshot benchmark: compressible memory, page ");
  const text = Buffer.alloc(4096);
  for (let i = 0; i < text.length; i++) text[i] = line[i % line.length] as number;
  const fh = await open(pagesFile, "w");
  const buf = Buffer.alloc(16 * MiB);
  for (let off = 0; off < mib * MiB; off += buf.length) {
    for (let q = 0; q < buf.length / 4096; q++) {
      const p = off / 4096 + q;
      if (p >= pages / 2) randomFillSync(buf, q * 4096, 4096);
      else {
        text.copy(buf, q * 4096);
        buf.writeUInt32LE(p, q * 4096);
      }
    }
    await fh.write(buf, 0, buf.length, off);
  }
  await fh.close();
}

// Rewrites the pages p with (p + 37) % 100 < 10 with random bytes, as hog.c's generation 1.
async function changeTenPercent(): Promise<void> {
  const fh = await open(pagesFile, "r+");
  const page = Buffer.alloc(4096);
  for (let p = 0; p < pages; p++) {
    if ((p + 37) % 100 >= 10) continue;
    randomFillSync(page);
    await fh.write(page, 0, page.length, p * 4096);
  }
  await fh.close();
}

const env = await startEnvironment({
  workDir: work,
  network: { latencyMs: 20, perConnectionBytesPerSec: 80e6 },
});
try {
  const ep = env.endpoints.proxied;
  const client = new S3Client({
    endpoint: ep.url,
    forcePathStyle: true,
    region: ep.region,
    credentials: { accessKeyId: ep.accessKeyId, secretAccessKey: ep.secretAccessKey },
    maxAttempts: 1,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 64 }) },
  });
  await writeFirst();
  const first = createSnapshotStore({ client, bucket: ep.bucket, workPrefix: "w" });
  let started = performance.now();
  const gen1 = await uploadImageDir(first, images, quick ? { quick: {} } : {});
  console.log(
    `gen1 ${((performance.now() - started) / 1000).toFixed(2)} s, ${gen1.stats.bytesUploaded} B uploaded`,
  );
  await changeTenPercent();
  const second = quick ? first : createSnapshotStore({ client, bucket: ep.bucket, workPrefix: "w" });
  if (!quick) {
    await first.close();
    second.learn(Object.values(gen1.images));
  }
  const before = cpuTicks();
  const stat0 = machineTimes();
  started = performance.now();
  const gen2 = await uploadImageDir(
    second,
    images,
    quick ? { quick: { previous: gen1.quickHashed ?? {} } } : {},
  );
  console.log(
    `gen2 ${((performance.now() - started) / 1000).toFixed(2)} s, ${gen2.stats.bytesUploaded} B uploaded, ${gen2.stats.chunksUnchanged} chunks unchanged`,
  );
  printCpu(before, stat0);
  await second.close();
  if (download) {
    const fresh = createSnapshotStore({ client, bucket: ep.bucket, workPrefix: "w" });
    const target = `${images}-download`;
    const cpu0 = cpuTicks();
    const machine0 = machineTimes();
    started = performance.now();
    try {
      await downloadImageDir(fresh, gen2.images, target);
      console.log(`download ${((performance.now() - started) / 1000).toFixed(2)} s`);
      printCpu(cpu0, machine0);
    } finally {
      await fresh.close();
      await rm(target, { recursive: true, force: true });
    }
  }
} finally {
  await env.close();
  await rm(work, { recursive: true, force: true });
  await rm(images, { recursive: true, force: true });
}
