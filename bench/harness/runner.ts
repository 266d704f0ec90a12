import { setMaxListeners } from "node:events";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CheckpointTarget } from "../checkpoint/checkpoint-target.js";
import { type CheckpointCycle, runCheckpointCycle } from "../checkpoint/checkpoint-workloads.js";
import { buildHog } from "../checkpoint/hog.js";
import { checkpointTargets } from "../checkpoint/targets.js";
import type { FsTarget } from "../fs/fs-target.js";
import { runFsWorkload, seedFsObjects } from "../fs/fs-workloads.js";
import { fsTargets } from "../fs/targets.js";
import type { BenchContext, Profile } from "./context.js";
import { startEnvironment } from "./environment.js";
import { describeMachine } from "./machine.js";
import type { BenchOptions } from "./options.js";
import type {
  BenchResults,
  CheckpointFigure,
  FsFigure,
  Measured,
  RestoreFigure,
  TargetInfo,
} from "./results.js";
import { summarize } from "./stats.js";

const measured = (samples: number[]): Measured => ({ ...summarize(samples), samples });
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

// Runs every selected workload x target x profile `runs` times and returns the figures.
// Runs are interleaved (run 1 of every target, then run 2...) so drift hits all alike.
export async function runBenchmarks(
  options: BenchOptions,
  { log, signal, command }: { log: (message: string) => void; signal: AbortSignal; command: string },
): Promise<BenchResults> {
  setMaxListeners(1000, signal);
  const startedAt = new Date().toISOString();
  const machine = await describeMachine();
  const chosen = <T extends { name: string }>(list: readonly T[]) =>
    list.filter((target) => options.targets.length === 0 || options.targets.includes(target.name));
  const targetInfos: TargetInfo[] = [];
  const probe = async <T extends FsTarget | CheckpointTarget>(
    list: readonly T[],
    kind: TargetInfo["kind"],
  ) => {
    const usable: T[] = [];
    for (const target of chosen(list)) {
      const unavailable = await target.unavailable();
      targetInfos.push({
        name: target.name,
        kind,
        settings: target.settings,
        ...(unavailable ? { unavailable } : {}),
      });
      if (unavailable) log(`${kind} target ${target.name} skipped: ${unavailable}`);
      else usable.push(target);
    }
    return usable;
  };
  const fsUsable = options.fsWorkloads.length > 0 ? await probe(fsTargets, "fs") : [];
  const checkpointUsable =
    options.checkpointWorkloads.length > 0 ? await probe(checkpointTargets, "checkpoint") : [];

  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), "snapbench-")));
  const environment = await startEnvironment({ workDir, network: options.network });
  const fs: FsFigure[] = [];
  const checkpoint: CheckpointFigure[] = [];
  const restore: RestoreFigure[] = [];
  try {
    const contextFor = (profile: Profile, name: string): BenchContext => ({
      endpoint: environment.endpoints[profile],
      workDir: join(workDir, name),
      s3: environment.s3,
      signal,
      log,
    });
    if (fsUsable.length > 0) {
      log("seeding the objects the read workloads read");
      await seedFsObjects(environment.s3, environment.endpoints.direct.bucket, {
        seqBytes: options.fsSeqBytes,
        randomReads: options.randomReads,
        smallFiles: options.smallFiles,
      });
    }
    for (const profile of options.profiles) {
      for (const workload of options.fsWorkloads) {
        const figures = new Map<
          string,
          { seconds: number[]; mb: number[]; bytes: number; errors: string[] }
        >();
        for (let run = 0; run < options.runs; run++) {
          for (const target of fsUsable) {
            const figure = figures.get(target.name) ?? { seconds: [], mb: [], bytes: 0, errors: [] };
            figures.set(target.name, figure);
            const context = contextFor(profile, target.name);
            await mkdir(context.workDir, { recursive: true });
            try {
              const timing = await runFsWorkload(target, context, workload, fsSizes(options), run);
              figure.seconds.push(timing.seconds);
              figure.mb.push(timing.bytes / timing.seconds / 1e6);
              figure.bytes = timing.bytes;
              log(`fs ${profile} ${workload} ${target.name} run ${run}: ${timing.seconds.toFixed(3)} s`);
            } catch (error) {
              signal.throwIfAborted();
              figure.errors.push(message(error));
              log(`fs ${profile} ${workload} ${target.name} run ${run} FAILED: ${message(error)}`);
            }
          }
        }
        for (const [target, figure] of figures) {
          fs.push({
            target,
            profile,
            workload,
            seconds: measured(figure.seconds),
            mbPerSec: measured(figure.mb),
            bytes: figure.bytes,
            errors: figure.errors,
          });
        }
      }
    }
    if (checkpointUsable.length > 0) {
      const binary = await buildHog(join(workDir, "bin"), signal);
      for (const profile of options.profiles) {
        for (const mib of options.checkpointMiB) {
          const cycles = new Map<string, { cycles: CheckpointCycle[]; errors: string[] }>();
          for (let run = 0; run < options.runs; run++) {
            for (const target of checkpointUsable) {
              const entry = cycles.get(target.name) ?? { cycles: [], errors: [] };
              cycles.set(target.name, entry);
              const context = contextFor(profile, target.name);
              await mkdir(context.workDir, { recursive: true });
              try {
                entry.cycles.push(
                  await runCheckpointCycle(target, context, {
                    binary,
                    mib,
                    percent: options.changePercent,
                    workloads: options.checkpointWorkloads,
                    run,
                  }),
                );
              } catch (error) {
                signal.throwIfAborted();
                entry.errors.push(message(error));
                log(`checkpoint ${profile} ${mib} MiB ${target.name} run ${run} FAILED: ${message(error)}`);
              }
            }
          }
          for (const target of checkpointUsable) {
            const entry = cycles.get(target.name);
            if (!entry) continue;
            for (const workload of ["checkpoint", "incremental"] as const) {
              const results = entry.cycles.flatMap((cycle) => (cycle[workload] ? [cycle[workload]] : []));
              if (results.length === 0 && entry.errors.length === 0) continue;
              checkpoint.push({
                target: target.name,
                profile,
                mib,
                workload,
                freezeSeconds: measured(results.map((r) => r.freezeSeconds)),
                committedSeconds: measured(results.map((r) => r.committedSeconds)),
                bytesUploaded: measured(results.map((r) => r.bytesUploaded)),
                errors: entry.errors,
              });
            }
            if (!options.checkpointWorkloads.includes("restore")) continue;
            for (const mode of target.restoreModes) {
              const results = entry.cycles.flatMap((cycle) =>
                cycle.restore[mode] ? [cycle.restore[mode]] : [],
              );
              restore.push({
                target: target.name,
                mode,
                profile,
                mib,
                runningSeconds: measured(results.map((r) => r.runningSeconds)),
                finishedSeconds: measured(results.map((r) => r.finishedSeconds)),
                errors: entry.errors,
              });
            }
          }
        }
      }
    }
  } finally {
    await environment.close();
    if (!options.workDir) await rm(workDir, { recursive: true, force: true });
  }
  return {
    version: 1,
    startedAt,
    finishedAt: new Date().toISOString(),
    command,
    machine,
    settings: {
      quick: options.quick,
      runs: options.runs,
      network: options.network,
      fsSeqBytes: options.fsSeqBytes,
      randomReads: options.randomReads,
      smallFiles: options.smallFiles,
      checkpointMiB: options.checkpointMiB,
      changePercent: options.changePercent,
    },
    targets: targetInfos,
    fs,
    checkpoint,
    restore,
  };
}

function fsSizes(options: BenchOptions) {
  return { seqBytes: options.fsSeqBytes, randomReads: options.randomReads, smallFiles: options.smallFiles };
}
