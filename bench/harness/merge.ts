import { BenchError } from "../errors.js";
import type { BenchResults } from "./results.js";

// Combines a new run into earlier results (--merge): figures of the new run replace those
// with the same target, profile, workload and size; the others are kept. Both runs must
// have used the same network profile and number of runs, or the tables would mix
// incomparable figures. The report lists every run that contributed.
export function mergeResults(base: BenchResults, next: BenchResults): BenchResults {
  if (
    JSON.stringify(base.settings.network) !== JSON.stringify(next.settings.network) ||
    base.settings.runs !== next.settings.runs
  ) {
    throw new BenchError(
      "BENCH_BAD_OPTION",
      "--merge needs the same network profile and --runs as bench/results/latest.json",
    );
  }
  const fsKey = (f: BenchResults["fs"][number]) => `${f.target}|${f.profile}|${f.workload}`;
  const ckKey = (f: BenchResults["checkpoint"][number]) => `${f.target}|${f.profile}|${f.workload}|${f.mib}`;
  const rsKey = (f: BenchResults["restore"][number]) => `${f.target}|${f.profile}|${f.mode}|${f.mib}`;
  const replace = <T>(old: T[], fresh: T[], key: (item: T) => string) => {
    const replaced = new Set(fresh.map(key));
    return [...old.filter((item) => !replaced.has(key(item))), ...fresh];
  };
  const targetKey = (t: BenchResults["targets"][number]) => `${t.kind}|${t.name}`;
  const fsSettingsChanged =
    next.fs.length > 0 &&
    (base.settings.fsSeqBytes !== next.settings.fsSeqBytes ||
      base.settings.smallFiles !== next.settings.smallFiles ||
      base.settings.randomReads !== next.settings.randomReads);
  if (fsSettingsChanged && base.fs.length > 0) {
    throw new BenchError(
      "BENCH_BAD_OPTION",
      "--merge of filesystem figures needs the same file sizes as latest.json",
    );
  }
  const runsOf = (r: BenchResults) =>
    r.contributingRuns ?? [{ command: r.command, startedAt: r.startedAt, finishedAt: r.finishedAt }];
  return {
    ...base,
    finishedAt: next.finishedAt,
    machine: next.machine,
    settings: {
      ...base.settings,
      checkpointMiB: [...new Set([...base.settings.checkpointMiB, ...next.settings.checkpointMiB])].sort(
        (a, b) => a - b,
      ),
    },
    targets: replace(base.targets, next.targets, targetKey),
    fs: replace(base.fs, next.fs, fsKey),
    checkpoint: replace(base.checkpoint, next.checkpoint, ckKey).sort((a, b) => a.mib - b.mib),
    restore: replace(base.restore, next.restore, rsKey).sort((a, b) => a.mib - b.mib),
    contributingRuns: [...runsOf(base), ...runsOf(next)],
  };
}
