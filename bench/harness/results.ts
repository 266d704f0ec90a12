import type { CheckpointWorkload } from "../checkpoint/checkpoint-workloads.js";
import type { FsWorkload } from "../fs/fs-workloads.js";
import type { Profile } from "./context.js";
import type { NetworkProfile } from "./environment.js";
import type { MachineInfo } from "./machine.js";
import type { Summary } from "./stats.js";

// One figure: a summary plus the raw samples it was made of.
export interface Measured extends Summary {
  samples: number[];
}

export interface TargetInfo {
  name: string;
  kind: "fs" | "checkpoint";
  settings: string;
  // Why it was not measured (not installed, not wired yet); absent when it ran.
  unavailable?: string;
}

export interface FsFigure {
  target: string;
  profile: Profile;
  workload: FsWorkload;
  seconds: Measured;
  // bytes / seconds per run, in MB/s (10^6).
  mbPerSec: Measured;
  bytes: number;
  errors: string[];
}

export interface CheckpointFigure {
  target: string;
  profile: Profile;
  mib: number;
  workload: Exclude<CheckpointWorkload, "restore">;
  freezeSeconds: Measured;
  committedSeconds: Measured;
  bytesUploaded: Measured;
  errors: string[];
}

export interface RestoreFigure {
  target: string;
  mode: string;
  profile: Profile;
  mib: number;
  runningSeconds: Measured;
  finishedSeconds: Measured;
  errors: string[];
}

// Everything one `bench/run.ts` writes; BENCHMARKS.md is generated from it alone.
export interface BenchResults {
  version: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: MachineInfo;
  settings: {
    quick: boolean;
    runs: number;
    network: NetworkProfile;
    fsSeqBytes: number;
    randomReads: number;
    smallFiles: number;
    checkpointMiB: number[];
    changePercent: number;
  };
  targets: TargetInfo[];
  fs: FsFigure[];
  checkpoint: CheckpointFigure[];
  restore: RestoreFigure[];
  // Set when figures of several runs were merged (--merge): every run that contributed.
  contributingRuns?: Array<{ command: string; startedAt: string; finishedAt: string }>;
}
