import { summarizeTask, type TaskRecord, type TaskSummary } from "../registry/index.js";

// What `snapctl status` and `snapctl ls` print, as text; --json prints the summaries.

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const COLUMNS = ["ID", "NAME", "STATE", "ATTEMPTS", "SURVIVED", "SNAPSHOTS", "STORED", "SAVED"] as const;

export function formatTaskTable(tasks: TaskRecord[]): string {
  const rows = tasks.map((t) => {
    const s = summarizeTask(t);
    return [
      s.id,
      s.name,
      s.state,
      String(s.attempts),
      `${s.interruptionsSurvived}/${s.interruptions}`,
      String(s.snapshotsTaken),
      formatBytes(s.bytesStored),
      formatMs(s.savedMs),
    ];
  });
  const all = [[...COLUMNS], ...rows];
  const widths = COLUMNS.map((_, i) => Math.max(...all.map((r) => (r[i] as string).length)));
  return `${all
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] as number))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

export function formatTaskStatus(task: TaskRecord): string {
  const s: TaskSummary = summarizeTask(task);
  const lines = [
    `task ${s.id} (${s.name})`,
    `  state:                  ${s.state}${s.reason ? ` (${s.reason})` : ""}`,
    `  command:                ${task.command.join(" ")}`,
    `  attempts:               ${s.attempts}`,
    `  interruptions survived: ${s.interruptionsSurvived} of ${s.interruptions} (${task.restores} restored, ${task.reruns} re-run)`,
    `  snapshots taken:        ${s.snapshotsTaken}${s.lastSnapshotAt ? `, last at ${new Date(s.lastSnapshotAt).toISOString()}` : ""}`,
    `  bytes stored:           ${formatBytes(s.bytesStored)}`,
    `  compute time:           ${formatMs(s.computeMs)}`,
    `  compute time saved:     ${formatMs(s.savedMs)} (vs re-running from scratch)`,
  ];
  if (s.instanceId) lines.push(`  instance:               ${s.instanceId} in ${s.zone} (${s.market})`);
  if (task.exitCode !== undefined) lines.push(`  exit code:              ${task.exitCode}`);
  if (task.error) lines.push(`  error:                  ${task.error}`);
  return `${lines.join("\n")}\n`;
}
