// Probe behind the read figures of docs/driver.md: sequential `dd` of a 1 GiB object
// through this project's mount (bench/fs/snapfs, driver defaults), through the benchmark
// proxy (20 ms, 80 MB/s per connection), a fresh mount and dropped page cache per run;
// prints each run, the machine's load and the median. Root (FUSE, drop_caches) needed.
// Usage: node --import tsx bench/probes/seq-read.ts [runs=3] [--prof] [--sdk]
//   --prof: CPU profiles of the mount process in /tmp/prof
//   --sdk: the benchmark's "sdk" target instead of a mount (8 x 8 MiB ranged GETs from this
//   process, no filesystem): what the limit costs the machine, s3rver and the proxy first.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { seedFsObjects } from "../fs/fs-workloads.js";
import { sdkTarget } from "../fs/sdk-target.js";
import { startEnvironment } from "../harness/environment.js";
import { cpuTicks, machineTimes, printCpu } from "./proc-cpu.js";

const runs = Number(process.argv[2] ?? 3);
const prof = process.argv.includes("--prof");
const sdk = process.argv.includes("--sdk");
const work = await mkdtemp("/tmp/seq-read-probe-");
const env = await startEnvironment({
  workDir: work,
  network: { latencyMs: 20, perConnectionBytesPerSec: 80e6 },
});
try {
  const ep = env.endpoints.proxied;
  await seedFsObjects(env.s3, ep.bucket, { seqBytes: 1024 * 1048576, randomReads: 0, smallFiles: 0 });
  const times: number[] = [];
  // Drops the page cache, times `read` with the machine's CPU by process, prints the run.
  const measure = async (r: number, label: string, read: () => Promise<unknown>) => {
    await execa("sh", ["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]);
    const before = cpuTicks();
    const stat0 = machineTimes();
    const started = performance.now();
    await read();
    const seconds = (performance.now() - started) / 1000;
    times.push(seconds);
    printCpu(before, stat0);
    console.log(`run ${r}: ${seconds.toFixed(2)} s ${(1073.741824 / seconds).toFixed(0)} MB/s${label}`);
  };
  for (let r = 0; r < runs && sdk; r++) {
    const session = await sdkTarget.open({
      endpoint: ep,
      workDir: work,
      s3: env.s3,
      signal: new AbortController().signal,
      log: () => {},
    });
    await measure(r, " (sdk)", () => session.seqRead("seed-seq"));
    await session.close();
  }
  for (let r = 0; r < runs && !sdk; r++) {
    const mnt = join(work, `mnt${r}`);
    await mkdir(mnt, { recursive: true });
    const flags = prof ? ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"] : [];
    const args = [
      ...flags,
      "--import",
      "tsx",
      "bench/fs/snapfs/main.ts",
      mnt,
      ep.url,
      ep.bucket,
      join(work, `cache${r}`),
    ];
    const child = execa("node", args, {
      env: {
        AWS_ACCESS_KEY_ID: ep.accessKeyId,
        AWS_SECRET_ACCESS_KEY: ep.secretAccessKey,
        AWS_REGION: ep.region,
      },
      stdio: ["ignore", "inherit", "inherit"],
      reject: false,
    });
    const file = join(mnt, "s3", ep.bucket, "seed-seq");
    for (let i = 0; i < 200 && !existsSync(file); i++) await new Promise((done) => setTimeout(done, 100));
    await measure(r, "", () => execa("dd", [`if=${file}`, "of=/dev/null", "bs=1M"]));
    child.kill("SIGTERM");
    await child;
  }
  times.sort((a, b) => a - b);
  console.log(`median ${times[Math.floor(times.length / 2)]?.toFixed(2)} s`);
} finally {
  await env.close();
  await rm(work, { recursive: true, force: true });
}
