import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchResults } from "../harness/results.js";
import { renderResults } from "./markdown.js";
import { type BarChart, renderBarChart } from "./svg-bar-chart.js";

const header = join(dirname(fileURLToPath(import.meta.url)), "header.md");

// The charts of a run: name -> chart.
function charts(results: BenchResults): Map<string, BarChart> {
  const out = new Map<string, BarChart>();
  const profiles = [
    ...new Set([...results.fs, ...results.checkpoint, ...results.restore].map((f) => f.profile)),
  ];
  for (const workload of [...new Set(results.fs.map((f) => f.workload))]) {
    const figures = results.fs.filter((f) => f.workload === workload);
    out.set(`fs-${workload}`, {
      title: `Filesystem ${workload} (higher is better)`,
      unit: "MB/s, median with min-max",
      series: profiles,
      groups: [...new Set(figures.map((f) => f.target))].map((target) => ({
        label: target,
        bars: figures
          .filter((f) => f.target === target)
          .map((f) => ({
            series: f.profile,
            value: f.mbPerSec.median,
            min: f.mbPerSec.min,
            max: f.mbPerSec.max,
          })),
      })),
    });
  }
  for (const mib of [...new Set(results.checkpoint.map((f) => f.mib))]) {
    const figures = results.checkpoint.filter((f) => f.mib === mib);
    const labels = [
      ...new Set(figures.map((f) => `${f.target} ${f.workload === "checkpoint" ? "first" : "incremental"}`)),
    ];
    out.set(`checkpoint-${mib}`, {
      title: `Checkpoint of a ${mib} MiB task: time until committed (lower is better)`,
      unit: "seconds, median with min-max",
      series: profiles,
      groups: labels.map((label) => ({
        label,
        bars: figures
          .filter((f) => `${f.target} ${f.workload === "checkpoint" ? "first" : "incremental"}` === label)
          .map((f) => ({
            series: f.profile,
            value: f.committedSeconds.median,
            min: f.committedSeconds.min,
            max: f.committedSeconds.max,
          })),
      })),
    });
  }
  for (const mib of [...new Set(results.restore.map((f) => f.mib))]) {
    const figures = results.restore.filter((f) => f.mib === mib);
    out.set(`restore-${mib}`, {
      title: `Restore of a ${mib} MiB task: time until running again (lower is better)`,
      unit: "seconds, median with min-max",
      series: profiles,
      groups: [...new Set(figures.map((f) => `${f.target} ${f.mode}`))].map((label) => ({
        label,
        bars: figures
          .filter((f) => `${f.target} ${f.mode}` === label)
          .map((f) => ({
            series: f.profile,
            value: f.runningSeconds.median,
            min: f.runningSeconds.min,
            max: f.runningSeconds.max,
          })),
      })),
    });
  }
  return out;
}

// Writes the SVG charts into `resultsDir` (replacing the previous ones) and regenerates
// `markdownPath` from the human-written header plus the figures of `results`.
export async function writeReport(
  results: BenchResults,
  resultsDir: string,
  markdownPath: string,
): Promise<void> {
  for (const name of await readdir(resultsDir)) {
    if (name.endsWith(".svg")) await rm(join(resultsDir, name));
  }
  const files = new Map<string, string>();
  for (const [name, chart] of charts(results)) {
    await writeFile(join(resultsDir, `${name}.svg`), renderBarChart(chart));
    files.set(name, relative(dirname(markdownPath), join(resultsDir, `${name}.svg`)));
  }
  const text = `${(await readFile(header, "utf8")).trimEnd()}\n\n${renderResults(results, files)}`;
  await writeFile(markdownPath, text);
}
