import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BenchError } from "../errors.js";
import { toolVersion } from "../harness/tools.js";
import { awsS3 } from "./aws-cli.js";
import type { CheckpointTarget } from "./checkpoint-target.js";
import { criuBinary, criuDump, criuRestore } from "./criu.js";

// What a user does without this project: `criu dump` to local disk, then
// `aws s3 cp --recursive` (default transfer settings); restore is the reverse.
export const naiveTarget: CheckpointTarget = {
  name: "naive",
  settings:
    "criu dump to local disk (uncompressed images), then aws s3 cp --recursive (CLI defaults); restore: aws s3 cp down, criu restore -d",
  restoreModes: ["eager"],
  async unavailable() {
    if (!(await toolVersion(criuBinary()))) return `CRIU is not runnable (${criuBinary()})`;
    if (!(await toolVersion("aws"))) return "the AWS CLI (aws) is not installed";
    return undefined;
  },
  async checkpoint(task, context, { key }) {
    const imagesDir = join(context.workDir, "naive", key);
    await rm(imagesDir, { recursive: true, force: true });
    await mkdir(imagesDir, { recursive: true });
    const started = performance.now();
    const dump = await criuDump({
      pid: task.pid,
      imagesDir,
      logFile: join(context.workDir, "naive", `${key}.dump.log`),
      signal: context.signal,
    });
    await awsS3(
      ["cp", "--recursive", imagesDir, `s3://${context.endpoint.bucket}/${key}/`],
      context.endpoint,
      {
        configDir: context.workDir,
        signal: context.signal,
      },
    );
    const committedSeconds = (performance.now() - started) / 1000;
    let bytes = 0;
    for (const name of await readdir(imagesDir)) bytes += (await stat(join(imagesDir, name))).size;
    return {
      freezeSeconds: (dump.stats?.frozenTimeUs ?? dump.seconds * 1e6) / 1e6,
      committedSeconds,
      bytesUploaded: bytes,
    };
  },
  async restore(context, { key, mode }) {
    if (mode !== "eager") throw new BenchError("BENCH_BAD_OPTION", `The naive path has no "${mode}" restore`);
    // A clean machine: nothing of the snapshot is local.
    await rm(join(context.workDir, "naive", key), { recursive: true, force: true });
    const imagesDir = join(context.workDir, "naive-restore", key);
    await rm(imagesDir, { recursive: true, force: true });
    await mkdir(imagesDir, { recursive: true });
    await awsS3(
      ["cp", "--recursive", `s3://${context.endpoint.bucket}/${key}/`, imagesDir],
      context.endpoint,
      {
        configDir: context.workDir,
        signal: context.signal,
      },
    );
    const pid = await criuRestore({
      imagesDir,
      logFile: join(context.workDir, "naive-restore", `${key}.restore.log`),
      pidFile: join(context.workDir, "naive-restore", `${key}.pid`),
      signal: context.signal,
    });
    return { pid, close: async () => {} };
  },
  async forget(context, key) {
    await rm(join(context.workDir, "naive", key), { recursive: true, force: true });
    await rm(join(context.workDir, "naive-restore", key), { recursive: true, force: true });
  },
};
