import type { BenchResults, CheckpointFigure, FsFigure, RestoreFigure } from "../harness/results.js";
import { formatValue } from "./svg-bar-chart.js";

export const PROJECT = "spot-snapshots";

export interface TargetVerdict {
  goal: string;
  status: "met" | "missed" | "not measured yet";
  detail: string;
}

const ok = (figure: { median: number; runs: number } | undefined) =>
  figure !== undefined && figure.runs > 0 && Number.isFinite(figure.median);

// The goals, judged on the proxied profile (the one that stands for a network)
// from the figures of this run only.
export function judgeTargets(results: BenchResults): TargetVerdict[] {
  const ckpt = (target: string, workload: CheckpointFigure["workload"], mib: number) =>
    results.checkpoint.find(
      (f) => f.target === target && f.workload === workload && f.mib === mib && f.profile === "proxied",
    );
  const fsFig = (target: string, workload: FsFigure["workload"]) =>
    results.fs.find((f) => f.target === target && f.workload === workload && f.profile === "proxied");
  const restoreFig = (mode: string, mib: number): RestoreFigure | undefined =>
    results.restore.find(
      (f) => f.target === PROJECT && f.mode === mode && f.mib === mib && f.profile === "proxied",
    );
  const whyMissing = (kind: "fs" | "checkpoint", fallback: string) =>
    results.targets.find((t) => t.name === PROJECT && t.kind === kind)?.unavailable ?? fallback;
  const verdicts: TargetVerdict[] = [];
  const sizes = results.settings.checkpointMiB;

  const ratioGoal = (
    goal: string,
    pick: () => [number | undefined, number | undefined, string],
    pass: (ratio: number) => boolean,
    kind: "fs" | "checkpoint",
  ) => {
    // ratio = numerator / denominator, oriented so that bigger is better for this project.
    const [denominator, numerator, describe] = pick();
    if (denominator === undefined || numerator === undefined) {
      verdicts.push({ goal, status: "not measured yet", detail: whyMissing(kind, "no figure in this run") });
      return;
    }
    const ratio = numerator / denominator;
    verdicts.push({
      goal,
      status: pass(ratio) ? "met" : "missed",
      detail: `${describe}: ratio ${formatValue(ratio)}`,
    });
  };

  for (const mib of sizes) {
    ratioGoal(
      `First checkpoint (${mib} MiB) >= 2x faster than the naive path`,
      () => {
        const mine = ckpt(PROJECT, "checkpoint", mib)?.committedSeconds;
        const naive = ckpt("naive", "checkpoint", mib)?.committedSeconds;
        return [
          ok(mine) ? mine?.median : undefined,
          ok(naive) ? naive?.median : undefined,
          `committed in ${formatValue(mine?.median ?? Number.NaN)} s vs ${formatValue(naive?.median ?? Number.NaN)} s`,
        ];
      },
      (ratio) => ratio >= 2,
      "checkpoint",
    );
    ratioGoal(
      `Incremental checkpoint (${mib} MiB) >= 5x faster than the naive path`,
      () => {
        const mine = ckpt(PROJECT, "incremental", mib)?.committedSeconds;
        const naive = ckpt("naive", "incremental", mib)?.committedSeconds;
        return [
          ok(mine) ? mine?.median : undefined,
          ok(naive) ? naive?.median : undefined,
          `committed in ${formatValue(mine?.median ?? Number.NaN)} s vs ${formatValue(naive?.median ?? Number.NaN)} s`,
        ];
      },
      (ratio) => ratio >= 5,
      "checkpoint",
    );
    // Here the ratio is this project's over the floor (smaller is better), as the goal says.
    const goal = `Freeze time (${mib} MiB) <= 1.3x the tmpfs floor`;
    const mine = ckpt(PROJECT, "checkpoint", mib)?.freezeSeconds;
    const floor = ckpt("tmpfs-floor", "checkpoint", mib)?.freezeSeconds;
    if (!ok(mine) || !ok(floor) || mine === undefined || floor === undefined) {
      verdicts.push({
        goal,
        status: "not measured yet",
        detail: whyMissing("checkpoint", "no figure in this run"),
      });
    } else {
      const ratio = mine.median / floor.median;
      verdicts.push({
        goal,
        status: ratio <= 1.3 ? "met" : "missed",
        detail: `frozen ${formatValue(mine.median)} s vs floor ${formatValue(floor.median)} s: ${formatValue(ratio)}x the floor`,
      });
    }
  }

  const lazy = restoreFig("lazy", 4096);
  verdicts.push(
    ok(lazy?.runningSeconds)
      ? {
          goal: "Lazy restore of 4 GiB: task running again within 3 s",
          status: (lazy?.runningSeconds.median ?? Number.POSITIVE_INFINITY) <= 3 ? "met" : "missed",
          detail: `running after ${formatValue(lazy?.runningSeconds.median ?? Number.NaN)} s`,
        }
      : {
          goal: "Lazy restore of 4 GiB: task running again within 3 s",
          status: "not measured yet",
          detail: sizes.includes(4096)
            ? whyMissing("checkpoint", "no figure in this run")
            : "this run had no 4 GiB task",
        },
  );

  const mbps = (target: string, workload: FsFigure["workload"]) => {
    const figure = fsFig(target, workload)?.mbPerSec;
    return ok(figure) ? figure?.median : undefined;
  };
  ratioGoal(
    "Filesystem sequential read through the proxy >= 2x s3fs",
    () => [
      mbps("s3fs", "seq-read"),
      mbps(PROJECT, "seq-read"),
      `${formatValue(mbps(PROJECT, "seq-read") ?? Number.NaN)} MB/s vs s3fs ${formatValue(mbps("s3fs", "seq-read") ?? Number.NaN)} MB/s`,
    ],
    (ratio) => ratio >= 2,
    "fs",
  );
  ratioGoal(
    "Filesystem sequential read through the proxy >= 80% of the SDK limit",
    () => [
      mbps("sdk", "seq-read"),
      mbps(PROJECT, "seq-read"),
      `${formatValue(mbps(PROJECT, "seq-read") ?? Number.NaN)} MB/s vs SDK ${formatValue(mbps("sdk", "seq-read") ?? Number.NaN)} MB/s`,
    ],
    (ratio) => ratio >= 0.8,
    "fs",
  );
  ratioGoal(
    "Filesystem sequential write through the proxy not slower than s3fs",
    () => [
      mbps("s3fs", "seq-write"),
      mbps(PROJECT, "seq-write"),
      `${formatValue(mbps(PROJECT, "seq-write") ?? Number.NaN)} MB/s vs s3fs ${formatValue(mbps("s3fs", "seq-write") ?? Number.NaN)} MB/s`,
    ],
    (ratio) => ratio >= 1,
    "fs",
  );
  return verdicts;
}
