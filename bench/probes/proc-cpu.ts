import { readdirSync, readFileSync } from "node:fs";

// CPU ticks (user + system, 1/100 s) of every process, by pid, with its command line.
export function cpuTicks(): Map<string, { ticks: number; cmd: string }> {
  const out = new Map<string, { ticks: number; cmd: string }>();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      out.set(pid, { ticks: Number(f[11]) + Number(f[12]), cmd });
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

// CPU time by kind (user, nice, system, idle, iowait, ...) from /proc/stat's first line.
export function machineTimes(): number[] {
  return (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").split(/\s+/).slice(1).map(Number);
}

// Prints how busy the machine was and the processes that used the most CPU in between.
export function printCpu(before: ReturnType<typeof cpuTicks>, stat0: number[]): void {
  const stat1 = machineTimes();
  const d = stat1.map((v, i) => v - (stat0[i] ?? 0));
  const total = d.reduce((a, b) => a + b, 0);
  const idle = (d[3] ?? 0) + (d[4] ?? 0);
  console.log(`  machine busy ${(100 - (idle / total) * 100).toFixed(0)}%`);
  const diffs = [...cpuTicks()]
    .map(([pid, v]) => ({ pid, ticks: v.ticks - (before.get(pid)?.ticks ?? 0), cmd: v.cmd }))
    .filter((x) => x.ticks > 5)
    .sort((a, b) => b.ticks - a.ticks);
  for (const x of diffs.slice(0, 6))
    console.log(`  ${x.pid} ${(x.ticks / 100).toFixed(2)} cpu-s ${x.cmd.slice(0, 90)}`);
}
