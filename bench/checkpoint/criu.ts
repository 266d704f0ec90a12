import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { repoRoot } from "../../common/entry.js";
import { run } from "../harness/tools.js";
import { type DumpStats, readDumpStats } from "./criu-stats.js";

// The CRIU binary: $SNAPBENCH_CRIU, else the bundle criu/bundle/install.sh makes, else PATH.
export function criuBinary(): string {
  const bundled = join(repoRoot, ".local", "criu", "criu");
  return process.env.SNAPBENCH_CRIU ?? (existsSync(bundled) ? bundled : "criu");
}

// `criu dump` of a process tree into `imagesDir`, leaving it running (so the same task can
// be checkpointed again); wall time and CRIU's own stats.
export async function criuDump(options: {
  pid: number;
  imagesDir: string;
  logFile: string;
  signal?: AbortSignal;
}): Promise<{ seconds: number; stats: DumpStats | undefined }> {
  await mkdir(options.imagesDir, { recursive: true });
  const started = performance.now();
  await run(
    criuBinary(),
    [
      "dump",
      "-t",
      String(options.pid),
      "-D",
      options.imagesDir,
      "--leave-running",
      "-v1",
      "--log-file",
      options.logFile,
    ],
    { signal: options.signal },
  );
  const seconds = (performance.now() - started) / 1000;
  return { seconds, stats: await readDumpStats(options.imagesDir) };
}

// `criu restore -d`: returns once the tree runs again, with its root's PID.
export async function criuRestore(options: {
  imagesDir: string;
  logFile: string;
  pidFile: string;
  signal?: AbortSignal;
}): Promise<number> {
  await run(
    criuBinary(),
    [
      "restore",
      "-d",
      "-D",
      options.imagesDir,
      "--pidfile",
      options.pidFile,
      "-v1",
      "--log-file",
      options.logFile,
    ],
    { signal: options.signal },
  );
  return Number((await readFile(options.pidFile, "utf8")).trim());
}
