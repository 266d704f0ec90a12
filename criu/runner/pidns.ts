import { readFile } from "node:fs/promises";
import { withoutFuseFds } from "./fuse-fds.js";

// The PID of the namespace init that `unshare --pid --fork` started: its only child.
// That process (a session leader by setsid) is the root CRIU dumps.
export async function namespaceInit(
  unsharePid: number,
  options: { timeoutMs?: number } = {},
): Promise<number> {
  const deadline = Date.now() + (options.timeoutMs ?? 5_000);
  for (;;) {
    try {
      const children = (await readFile(`/proc/${unsharePid}/task/${unsharePid}/children`, "utf8")).trim();
      const first = children.split(/\s+/)[0];
      if (first) return Number(first);
    } catch {
      // not there yet, or gone: retried until the deadline
    }
    if (Date.now() > deadline)
      throw new Error(`unshare (pid ${unsharePid}) started no namespace init in time`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The command prefix that starts a task in a fresh PID namespace as a session leader:
// restores then never collide with PIDs on the new machine, and CRIU can dump the
// whole session (a session leader outside the namespace would make the dump fail).
// With `killWithParent` (default) the task dies with whoever started it (unshare's
// --kill-child sets PDEATHSIG); CRIU keeps that signal, so a tree dumped this way must be
// restored without -d (CRIU staying its parent), or it is killed when CRIU exits.
// unshare is started without the mount's /dev/fuse descriptor (see withoutFuseFds); bash
// execs it, so the spawned PID is unshare's.
export function pidNamespacePrefix(options: { killWithParent?: boolean } = {}): string[] {
  return withoutFuseFds([
    "unshare",
    "--pid",
    "--fork",
    ...(options.killWithParent === false ? [] : ["--kill-child"]),
    "setsid",
  ]);
}
