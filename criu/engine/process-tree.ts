import { readdir, readFile, readlink } from "node:fs/promises";

// Every PID of the tree rooted at `root` (root first), from /proc/<pid>/task/*/children.
export async function processTree(root: number): Promise<number[]> {
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    out.push(pid);
    let threads: string[] = [];
    try {
      threads = await readdir(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of threads) {
      try {
        const children = (await readFile(`/proc/${pid}/task/${tid}/children`, "utf8")).trim();
        for (const c of children.split(/\s+/)) if (c) queue.push(Number(c));
      } catch {
        // thread or process gone
      }
    }
  }
  return out;
}

// Sends `signal` to every process of the tree (children first, so the namespace init
// outlives them and can record their exit code).
export async function signalTree(root: number, signal: NodeJS.Signals): Promise<void> {
  const pids = await processTree(root);
  for (const pid of pids.reverse()) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

// Paths of regular files under `dir` that some process of the tree has open for writing.
// Read from /proc (never through the files themselves, which may be on our own mount).
export async function openFilesForWriting(root: number, dir: string): Promise<string[]> {
  const found = new Set<string>();
  for (const pid of await processTree(root)) {
    let fds: string[] = [];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = await readlink(`/proc/${pid}/fd/${fd}`);
        if (!target.startsWith(`${dir}/`) || target.endsWith(" (deleted)")) continue;
        const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, "utf8");
        const flags = Number.parseInt(/flags:\s*([0-7]+)/.exec(info)?.[1] ?? "0", 8);
        // O_ACCMODE: 1 = O_WRONLY, 2 = O_RDWR.
        if ((flags & 3) !== 0) found.add(target);
      } catch {
        // fd closed while we looked
      }
    }
  }
  return [...found].sort();
}

// Waits until `pid` no longer exists (or is a zombie), polling /proc.
export async function waitGone(pid: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      if (/\) Z /.test(stat)) return true;
    } catch {
      return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}
