// The benchmark harness (issue 7): node --import tsx bench/run.ts [--quick] [--help]
// Runs workloads x targets x network profiles, writes bench/results/<timestamp>.json and
// latest.json, and regenerates BENCHMARKS.md from them.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { repoRoot } from "../common/entry.js";
import { mergeResults } from "./harness/merge.js";
import { parseBenchOptions } from "./harness/options.js";
import type { BenchResults } from "./harness/results.js";
import { runBenchmarks } from "./harness/runner.js";
import { writeReport } from "./report/write-report.js";

const options = parseBenchOptions(process.argv.slice(2), join(repoRoot, "bench", "results"));
const markdown = join(repoRoot, "BENCHMARKS.md");
await mkdir(options.outDir, { recursive: true });
const latest = join(options.outDir, "latest.json");

if (options.reportOnly) {
  const results = JSON.parse(await readFile(latest, "utf8")) as BenchResults;
  await writeReport(results, options.outDir, markdown);
  process.stdout.write(`BENCHMARKS.md regenerated from ${latest}\n`);
  process.exit(0);
}

const controller = new AbortController();
const stop = () => controller.abort(new Error("interrupted"));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
const log = (message: string) =>
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

const command = ["node --import tsx bench/run.ts", ...process.argv.slice(2)].join(" ");
const fresh = await runBenchmarks(options, { log, signal: controller.signal, command });
const stamped = join(options.outDir, `${fresh.startedAt.replace(/[:.]/g, "-")}.json`);
await writeFile(stamped, `${JSON.stringify(fresh, null, 2)}\n`);
const results = options.merge
  ? mergeResults(JSON.parse(await readFile(latest, "utf8")) as BenchResults, fresh)
  : fresh;
await writeFile(latest, `${JSON.stringify(results, null, 2)}\n`);
log(`results written to ${stamped} and ${latest}`);
if (options.report) {
  await writeReport(results, options.outDir, markdown);
  log(`${markdown} regenerated`);
}
