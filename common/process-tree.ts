import { readdir, readFile } from "node:fs/promises";

// Every live descendant of `root`, from /proc: processes that left its process group
// (setsid, PID namespaces) are still its descendants while it lives.
export async function descendants(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    // The command name (field 2) may hold spaces and parentheses: parse after the last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!Number.isFinite(ppid)) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const found: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop() as number) ?? []) {
      found.push(child);
      stack.push(child);
    }
  }
  return found;
}

// SIGKILL to `pid`'s process group and to every descendant, as a cloud that reclaims the
// machine would end them all at once. Processes already gone are skipped.
export async function killTree(pid: number): Promise<void> {
  const victims = await descendants(pid);
  for (const target of [-pid, pid, ...victims]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}
