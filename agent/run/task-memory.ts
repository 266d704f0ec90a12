import { readFile } from "node:fs/promises";

// Resident memory of a process tree in bytes (VmRSS of `pid` and its descendants), read
// from /proc; 0 when the tree is gone. Visits at most `maxProcesses` processes.
export async function treeResidentBytes(
  pid: number,
  options: { maxProcesses?: number } = {},
): Promise<number> {
  const limit = options.maxProcesses ?? 4096;
  const queue = [pid];
  let total = 0;
  for (let visited = 0; queue.length > 0 && visited < limit; visited++) {
    const current = queue.shift() as number;
    const status = await readFile(`/proc/${current}/status`, "utf8").catch(() => "");
    const kib = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
    if (kib) total += Number(kib) * 1024;
    const children = await readFile(`/proc/${current}/task/${current}/children`, "utf8").catch(() => "");
    for (const child of children.trim().split(/\s+/)) if (child) queue.push(Number(child));
  }
  return total;
}
