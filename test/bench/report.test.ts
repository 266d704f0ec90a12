import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { mergeResults } from "../../bench/harness/merge.js";
import { parseBenchOptions } from "../../bench/harness/options.js";
import type { BenchResults, Measured } from "../../bench/harness/results.js";
import { summarize } from "../../bench/harness/stats.js";
import { judgeTargets } from "../../bench/report/issue-targets.js";
import { renderBarChart } from "../../bench/report/svg-bar-chart.js";
import { writeReport } from "../../bench/report/write-report.js";

const m = (...samples: number[]): Measured => ({ ...summarize(samples), samples });

function results(overrides: Partial<BenchResults> = {}): BenchResults {
  return {
    version: 1,
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:10:00.000Z",
    command: "node --import tsx bench/run.ts",
    machine: {
      os: "Test OS",
      kernel: "6.0",
      cpu: "CPU",
      cores: 2,
      memoryGiB: 24,
      node: "v20",
      tools: { criu: "4.1.1" },
    },
    settings: {
      quick: false,
      runs: 3,
      network: { latencyMs: 20, perConnectionBytesPerSec: 80e6 },
      fsSeqBytes: 1024 ** 3,
      randomReads: 300,
      smallFiles: 1000,
      checkpointMiB: [1024],
      changePercent: 10,
    },
    targets: [
      { name: "spot-snapshots", kind: "checkpoint", settings: "x", unavailable: "not wired" },
      { name: "s3fs", kind: "fs", settings: "defaults" },
    ],
    fs: [
      {
        target: "s3fs",
        profile: "proxied",
        workload: "seq-read",
        seconds: m(10, 11, 12),
        mbPerSec: m(100, 90, 110),
        bytes: 1,
        errors: [],
      },
      {
        target: "spot-snapshots",
        profile: "proxied",
        workload: "seq-read",
        seconds: m(4, 4, 4),
        mbPerSec: m(250, 260, 240),
        bytes: 1,
        errors: [],
      },
      {
        target: "sdk",
        profile: "proxied",
        workload: "seq-read",
        seconds: m(4, 4, 4),
        mbPerSec: m(400, 400, 400),
        bytes: 1,
        errors: [],
      },
    ],
    checkpoint: [
      {
        target: "naive",
        profile: "proxied",
        mib: 1024,
        workload: "checkpoint",
        freezeSeconds: m(1, 1, 1),
        committedSeconds: m(20, 21, 19),
        bytesUploaded: m(2 ** 30, 2 ** 30, 2 ** 30),
        errors: [],
      },
    ],
    restore: [],
    ...overrides,
  };
}

describe("benchmark report", () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it("summarizes runs as median, min and max", () => {
    expect(summarize([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, runs: 3 });
    expect(summarize([4, 1, 2, 3])).toMatchObject({ median: 2.5, min: 1, max: 4 });
    expect(summarize([]).runs).toBe(0);
  });

  it("judges the issue's goals only from figures it has", () => {
    const verdicts = judgeTargets(results());
    const byGoal = (text: string) => verdicts.find((v) => v.goal.includes(text));
    // 250 MB/s against s3fs's 100: more than 2x; against the SDK's 400: 62% < 80%.
    expect(byGoal("2x s3fs")?.status).toBe("met");
    expect(byGoal("80% of the SDK")?.status).toBe("missed");
    // The project's checkpoint is not measured: no verdict is invented, the reason is given.
    expect(byGoal("First checkpoint")).toMatchObject({ status: "not measured yet", detail: "not wired" });
    expect(byGoal("Lazy restore")?.status).toBe("not measured yet");
    expect(byGoal("write")?.status).toBe("not measured yet");
  });

  it("judges the freeze as this project's over the floor (at most 1.3x)", () => {
    const figure = (target: string, freeze: number) => ({
      target,
      profile: "proxied" as const,
      mib: 1024,
      workload: "checkpoint" as const,
      freezeSeconds: m(freeze, freeze, freeze),
      committedSeconds: m(5, 5, 5),
      bytesUploaded: m(1, 1, 1),
      errors: [],
    });
    const freeze = (mine: number) =>
      judgeTargets(results({ checkpoint: [figure("spot-snapshots", mine), figure("tmpfs-floor", 2)] })).find(
        (v) => v.goal.startsWith("Freeze time"),
      );
    expect(freeze(2.4)).toMatchObject({
      status: "met",
      detail: "frozen 2.40 s vs floor 2.00 s: 1.20x the floor",
    });
    expect(freeze(3)).toMatchObject({ status: "missed", detail: expect.stringContaining("1.50x the floor") });
  });

  it("renders one bar per measured figure and marks missing ones", () => {
    const svg = renderBarChart({
      title: "T <1>",
      unit: "MB/s",
      series: ["direct", "proxied"],
      groups: [{ label: "s3fs", bars: [{ series: "direct", value: 10, min: 9, max: 11 }] }],
    });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("T &lt;1&gt;");
    // Bars are 12 px high (legend squares 10): one measured bar.
    expect(svg.match(/height="12"/g)?.length).toBe(1);
    expect(svg).toContain("not measured");
  });

  it("writes BENCHMARKS.md and the charts from the results alone", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bench-report-"));
    dirs.push(dir);
    const markdown = join(dir, "BENCHMARKS.md");
    await writeReport(results(), dir, markdown);
    const text = await readFile(markdown, "utf8");
    expect(text).toContain("## Results");
    expect(text).toContain("| OS | Test OS, Linux 6.0 |");
    expect(text).toContain(
      "| 1024 MiB | proxied | naive | first | 1.00 (1.00–1.00) | 20.0 (19.0–21.0) | 1024 MiB |",
    );
    expect(text).toContain("![fs-seq-read](fs-seq-read.svg)");
    expect(text).not.toContain("NaN");
    expect((await readdir(dir)).filter((name) => name.endsWith(".svg")).sort()).toEqual([
      "checkpoint-1024.svg",
      "fs-seq-read.svg",
    ]);
  });

  it("documents every error code the harness can throw", async () => {
    const source = await readFile(new URL("../../bench/errors.ts", import.meta.url), "utf8");
    const header = await readFile(new URL("../../bench/report/header.md", import.meta.url), "utf8");
    const codes = [...source.matchAll(/"(BENCH_[A-Z_]+)"/g)].map((match) => match[1]);
    expect(codes.length).toBeGreaterThan(3);
    for (const code of codes) expect(header).toContain(`\`${code}\``);
  });
});

describe("merging runs", () => {
  it("replaces the figures a later run measured again and keeps the others", () => {
    const base = results();
    const later = results({
      startedAt: "2026-01-02T00:00:00.000Z",
      command: "later",
      fs: [],
      checkpoint: [
        { ...(base.checkpoint[0] as BenchResults["checkpoint"][number]), mib: 4096, committedSeconds: m(80) },
      ],
    });
    later.settings.checkpointMiB = [4096];
    const merged = mergeResults(base, later);
    expect(merged.fs).toHaveLength(3);
    expect(merged.checkpoint.map((f) => f.mib)).toEqual([1024, 4096]);
    expect(merged.settings.checkpointMiB).toEqual([1024, 4096]);
    expect(merged.contributingRuns?.map((r) => r.command)).toEqual([
      "node --import tsx bench/run.ts",
      "later",
    ]);
  });

  it("refuses to mix network profiles", () => {
    const other = results();
    other.settings.network = { latencyMs: 50, perConnectionBytesPerSec: 80e6 };
    expect(() => mergeResults(results(), other)).toThrow(
      expect.objectContaining({ code: "BENCH_BAD_OPTION" }),
    );
  });
});

describe("benchmark options", () => {
  it("has the issue's sizes by default and small ones with --quick", () => {
    const full = parseBenchOptions([], "/out");
    expect(full.checkpointMiB).toEqual([1024, 4096]);
    expect(full.fsSeqBytes).toBe(1024 ** 3);
    expect(full.runs).toBe(3);
    expect(full.profiles).toEqual(["direct", "proxied"]);
    expect(full.network).toMatchObject({ latencyMs: 20, perConnectionBytesPerSec: 80e6 });
    const quick = parseBenchOptions(["--quick", "--workloads", "restore"], "/out");
    expect(quick.checkpointMiB).toEqual([256]);
    expect(quick.fsWorkloads).toEqual([]);
    // A restore needs the checkpoint of the same run.
    expect(quick.checkpointWorkloads).toEqual(["checkpoint", "restore"]);
  });

  it("rejects unknown workloads and bad numbers with stable codes", () => {
    expect(() => parseBenchOptions(["--workloads", "nope"], "/out")).toThrow(
      expect.objectContaining({ code: "BENCH_BAD_OPTION" }),
    );
    expect(() => parseBenchOptions(["--runs", "x"], "/out")).toThrow(
      expect.objectContaining({ code: "BENCH_BAD_OPTION" }),
    );
  });
});
