import type { BenchResults, Measured } from "../harness/results.js";
import { judgeTargets } from "./issue-targets.js";
import { formatValue } from "./svg-bar-chart.js";

const MIB = 1024 * 1024;
const cell = (m: Measured | undefined, scale = 1) =>
  m && m.runs > 0 && Number.isFinite(m.median)
    ? `${formatValue(m.median * scale)} (${formatValue(m.min * scale)}–${formatValue(m.max * scale)})`
    : "—";
const bytes = (m: Measured | undefined) =>
  m && m.runs > 0 ? (m.median === 0 ? "0" : `${formatValue(m.median / MIB)} MiB`) : "—";
const errorNote = (errors: string[]) => (errors.length > 0 ? ` ⚠ ${errors.length} failed run(s)` : "");

// The generated part of BENCHMARKS.md: machine, settings, goals, tables, charts.
export function renderResults(results: BenchResults, charts: Map<string, string>): string {
  const lines: string[] = [];
  const { machine, settings } = results;
  const push = (...more: string[]) => lines.push(...more);
  push("## Results", "");
  push(
    `Run of ${results.startedAt.replace("T", " ").replace(/\..*/, "")} UTC to ${results.finishedAt.replace("T", " ").replace(/\..*/, "")} UTC` +
      `${settings.quick ? " (**quick mode**: small sizes, not the issue's 1 and 4 GiB)" : ""}, command \`${results.command}\`.`,
    "",
    ...(results.contributingRuns
      ? [
          "The figures come from these runs (later runs replaced the figures they measured again):",
          "",
          ...results.contributingRuns.map(
            (r) => `- ${r.startedAt.replace("T", " ").replace(/\..*/, "")} UTC: \`${r.command}\``,
          ),
          "",
        ]
      : []),
    "| Machine | |",
    "| --- | --- |",
    `| OS | ${machine.os}, Linux ${machine.kernel} |`,
    `| CPU | ${machine.cpu}, ${machine.cores} cores${machine.virtualization ? ` (${machine.virtualization})` : ""} |`,
    `| Memory | ${machine.memoryGiB} GiB |`,
    `| Node | ${machine.node} |`,
    ...Object.entries(machine.tools).map(([name, version]) => `| ${name} | ${version} |`),
    "",
    `Network profile through the proxy: ${settings.network.latencyMs} ms per request, ` +
      `${formatValue(settings.network.perConnectionBytesPerSec / 1e6)} MB/s per connection, ` +
      `${settings.network.totalBytesPerSec ? `${formatValue(settings.network.totalBytesPerSec / 1e6)} MB/s in total` : "no total cap"}. ` +
      `Each figure: median (min–max) of ${settings.runs} run(s). Filesystem: ${settings.fsSeqBytes / MIB} MiB file, ` +
      `${settings.randomReads} random reads, ${settings.smallFiles} small files. Tasks: ${settings.checkpointMiB.join(" and ")} MiB, ` +
      `${settings.changePercent}% changed before the incremental checkpoint.`,
    "",
  );

  push(
    "### Goals of issue 7",
    "",
    "Judged on the proxied profile.",
    "",
    "| Goal | Status | Measured |",
    "| --- | --- | --- |",
  );
  for (const verdict of judgeTargets(results)) {
    const mark =
      verdict.status === "met" ? "✅ met" : verdict.status === "missed" ? "❌ missed" : "⏳ not measured yet";
    push(`| ${verdict.goal} | ${mark} | ${verdict.detail} |`);
  }
  push("");

  const skipped = results.targets.filter((t) => t.unavailable);
  if (skipped.length > 0) {
    push("Targets not measured in this run:", "");
    for (const target of skipped) push(`- ${target.kind} target **${target.name}**: ${target.unavailable}`);
    push("");
  }

  if (results.checkpoint.length > 0) {
    push("### Checkpoint and incremental checkpoint", "");
    push("| Task | Profile | Target | Checkpoint | Freeze (s) | Committed (s) | Uploaded |");
    push("| --- | --- | --- | --- | --- | --- | --- |");
    for (const f of results.checkpoint) {
      push(
        `| ${f.mib} MiB | ${f.profile} | ${f.target} | ${f.workload === "checkpoint" ? "first" : "incremental"} | ${cell(f.freezeSeconds)} | ${cell(f.committedSeconds)}${errorNote(f.errors)} | ${bytes(f.bytesUploaded)} |`,
      );
    }
    push("");
    for (const [name, svg] of charts) if (name.startsWith("checkpoint-")) push(`![${name}](${svg})`, "");
  }

  if (results.restore.length > 0) {
    push("### Restore on a clean machine", "");
    push(
      "| Task | Profile | Target | Mode | Running again (s) | Finished (s) |",
      "| --- | --- | --- | --- | --- | --- |",
    );
    for (const f of results.restore) {
      push(
        `| ${f.mib} MiB | ${f.profile} | ${f.target} | ${f.mode} | ${cell(f.runningSeconds)}${errorNote(f.errors)} | ${cell(f.finishedSeconds)} |`,
      );
    }
    push("");
    for (const [name, svg] of charts) if (name.startsWith("restore-")) push(`![${name}](${svg})`, "");
  }

  if (results.fs.length > 0) {
    push("### Filesystem", "");
    push(
      "Throughput in MB/s (10^6 bytes per second); for small files also files per second.",
      "",
      "| Workload | Profile | Target | MB/s | Seconds | Files/s |",
      "| --- | --- | --- | --- | --- | --- |",
    );
    for (const f of results.fs) {
      const small = f.workload.startsWith("small");
      const filesPerSec = small
        ? cell(
            { ...f.seconds, median: 1 / f.seconds.median, min: 1 / f.seconds.max, max: 1 / f.seconds.min },
            settings.smallFiles,
          )
        : "";
      push(
        `| ${f.workload} | ${f.profile} | ${f.target} | ${cell(f.mbPerSec)}${errorNote(f.errors)} | ${cell(f.seconds)} | ${filesPerSec} |`,
      );
    }
    push("");
    const limits = results.fs.filter((f) => f.target === "sdk");
    if (limits.length > 0) {
      push(
        "Relative to the SDK limit of the same workload and profile (median throughput / the SDK's):",
        "",
        "| Workload | Profile | Target | % of the SDK limit |",
        "| --- | --- | --- | --- |",
      );
      for (const f of results.fs) {
        const limit = limits.find((l) => l.workload === f.workload && l.profile === f.profile);
        if (f.target === "sdk" || !limit || !(limit.mbPerSec.median > 0) || !(f.mbPerSec.runs > 0)) continue;
        push(
          `| ${f.workload} | ${f.profile} | ${f.target} | ${formatValue((100 * f.mbPerSec.median) / limit.mbPerSec.median)}% |`,
        );
      }
      push("");
    }
    for (const [name, svg] of charts) if (name.startsWith("fs-")) push(`![${name}](${svg})`, "");
  }

  push("### Target settings", "");
  for (const target of results.targets) push(`- ${target.kind} **${target.name}**: ${target.settings}`);
  push("");
  return lines.join("\n");
}
