import { parseArgs } from "node:util";
import { CHECKPOINT_WORKLOADS, type CheckpointWorkload } from "../checkpoint/checkpoint-workloads.js";
import { BenchError } from "../errors.js";
import { FS_WORKLOADS, type FsWorkload } from "../fs/fs-workloads.js";
import type { Profile } from "./context.js";
import type { NetworkProfile } from "./environment.js";

export interface BenchOptions {
  runs: number;
  profiles: Profile[];
  fsWorkloads: FsWorkload[];
  checkpointWorkloads: CheckpointWorkload[];
  // Target names to run; empty = all.
  targets: string[];
  // Checkpoint task sizes (MiB). Issue: 1024 and 4096.
  checkpointMiB: number[];
  // Percentage of the task's memory changed before the incremental checkpoint. Issue: 10.
  changePercent: number;
  fsSeqBytes: number;
  randomReads: number;
  smallFiles: number;
  network: NetworkProfile;
  quick: boolean;
  // Where the timestamped and latest results go.
  outDir: string;
  // Scratch space (s3rver data, mounts, images); a temp dir by default.
  workDir?: string;
  report: boolean;
  reportOnly: boolean;
  // Merge this run's figures into <out>/latest.json instead of replacing it.
  merge: boolean;
}

export const USAGE = `usage: node --import tsx bench/run.ts [options]
  --quick                 small sizes (256 MiB everywhere, 200 small files, 100 random reads)
  --runs N                runs per figure (default 3; medians with min and max)
  --workloads LIST        fs, checkpoint (= checkpoint,incremental,restore), or any of
                          ${[...FS_WORKLOADS, ...CHECKPOINT_WORKLOADS].join(", ")} (default: all)
  --targets LIST          target names (default: all available)
  --profiles LIST         direct, proxied (default both)
  --checkpoint-mib LIST   task sizes in MiB (default 1024,4096; --quick 256)
  --change-percent N      memory changed before the incremental checkpoint (default 10)
  --fs-mib N              sequential file size in MiB (default 1024; --quick 256)
  --random-reads N        random reads of 4 KiB..1 MiB (default 300; --quick 100)
  --small-files N         small files written and read (default 1000; --quick 200)
  --latency-ms N          proxy first-byte latency per request (default 20)
  --connection-mbps N     proxy cap per connection, MB/s (default 80)
  --total-mbps N          proxy cap over all connections, MB/s (default none)
  --out DIR               results directory (default bench/results)
  --work-dir DIR          scratch directory (default a new temp dir, removed afterwards)
  --no-report             do not regenerate BENCHMARKS.md
  --report-only           only regenerate BENCHMARKS.md from <out>/latest.json
  --merge                 keep the figures of <out>/latest.json that this run does not
                          measure (same network profile and --runs required)`;

const list = (text: string | undefined) =>
  text
    ?.split(",")
    .map((item) => item.trim())
    .filter(Boolean);

function positive(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) {
    throw new BenchError("BENCH_BAD_OPTION", `--${name} must be a non-negative number, not "${text}"`);
  }
  return value;
}

// Parses the command line of bench/run.ts.
export function parseBenchOptions(argv: string[], defaultOutDir: string): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      runs: { type: "string" },
      workloads: { type: "string" },
      targets: { type: "string" },
      profiles: { type: "string" },
      "checkpoint-mib": { type: "string" },
      "change-percent": { type: "string" },
      "fs-mib": { type: "string" },
      "random-reads": { type: "string" },
      "small-files": { type: "string" },
      "latency-ms": { type: "string" },
      "connection-mbps": { type: "string" },
      "total-mbps": { type: "string" },
      out: { type: "string" },
      "work-dir": { type: "string" },
      "no-report": { type: "boolean", default: false },
      "report-only": { type: "boolean", default: false },
      merge: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const known = new Set<string>([...FS_WORKLOADS, ...CHECKPOINT_WORKLOADS]);
  const workloads = (list(values.workloads) ?? ["fs", "checkpoint"]).flatMap((name) => {
    if (name === "fs") return [...FS_WORKLOADS];
    if (name === "checkpoint") return [...CHECKPOINT_WORKLOADS];
    if (!known.has(name)) throw new BenchError("BENCH_BAD_OPTION", `Unknown workload "${name}"`);
    return [name];
  });
  const profiles = (list(values.profiles) ?? ["direct", "proxied"]) as Profile[];
  for (const profile of profiles) {
    if (profile !== "direct" && profile !== "proxied") {
      throw new BenchError("BENCH_BAD_OPTION", `Unknown profile "${profile}" (direct or proxied)`);
    }
  }
  const checkpointMiB = (list(values["checkpoint-mib"]) ?? (quick ? ["256"] : ["1024", "4096"])).map((text) =>
    positive("checkpoint-mib", text, 0),
  );
  const runs = positive("runs", values.runs, 3);
  if (runs < 1) throw new BenchError("BENCH_BAD_OPTION", "--runs must be at least 1");
  const totalMbps = positive("total-mbps", values["total-mbps"], 0);
  const checkpointWorkloads = workloads.filter((w): w is CheckpointWorkload =>
    (CHECKPOINT_WORKLOADS as readonly string[]).includes(w),
  );
  // Incremental and restore build on the first checkpoint of the same run.
  if (checkpointWorkloads.length > 0 && !checkpointWorkloads.includes("checkpoint")) {
    checkpointWorkloads.unshift("checkpoint");
  }
  return {
    runs,
    profiles,
    fsWorkloads: workloads.filter((w): w is FsWorkload => (FS_WORKLOADS as readonly string[]).includes(w)),
    checkpointWorkloads,
    targets: list(values.targets) ?? [],
    checkpointMiB,
    changePercent: positive("change-percent", values["change-percent"], 10),
    fsSeqBytes: positive("fs-mib", values["fs-mib"], quick ? 256 : 1024) * 1024 * 1024,
    randomReads: positive("random-reads", values["random-reads"], quick ? 100 : 300),
    smallFiles: positive("small-files", values["small-files"], quick ? 200 : 1000),
    network: {
      latencyMs: positive("latency-ms", values["latency-ms"], 20),
      perConnectionBytesPerSec: positive("connection-mbps", values["connection-mbps"], 80) * 1e6,
      totalBytesPerSec: totalMbps > 0 ? totalMbps * 1e6 : undefined,
    },
    quick,
    outDir: values.out ?? defaultOutDir,
    workDir: values["work-dir"],
    report: !values["no-report"],
    reportOnly: values["report-only"] ?? false,
    merge: values.merge ?? false,
  };
}
