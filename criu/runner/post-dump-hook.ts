import { access, chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";

// A CRIU action script that holds `criu dump` at its "post-dump" stage: the images are
// complete and the tree is still frozen, but CRIU has not yet unlocked the network nor
// resumed the tasks. The engine does its own work at the freeze there (open files), then
// releases the hook. Needed with --leave-running: --leave-stopped would give the same
// freeze, but CRIU then leaves established TCP connections in repair mode and locked, so
// a task continued afterwards finds its connections dead ("Operation not permitted").
// If the engine dies meanwhile, the hook fails, and CRIU unlocks and resumes the task.
export interface PostDumpHook {
  // Arguments for `criu dump`.
  args: string[];
  // Resolves true once CRIU waits in the hook, false if `dump` settled first.
  frozen(dump: Promise<unknown>, signal?: AbortSignal): Promise<boolean>;
  // Lets CRIU go on: ok=true finishes the dump, ok=false makes it fail (task resumed).
  release(ok: boolean): Promise<void>;
}

export async function createPostDumpHook(dir: string): Promise<PostDumpHook> {
  const script = join(dir, "post-dump-hook.sh");
  const frozenMark = join(dir, "hook-frozen");
  const releaseMark = join(dir, "hook-release");
  await writeFile(
    script,
    [
      "#!/bin/sh",
      '[ "$CRTOOLS_SCRIPT_ACTION" = post-dump ] || exit 0',
      `: > '${frozenMark}'`,
      `while [ ! -s '${releaseMark}' ]; do`,
      // The engine is gone: fail, so that CRIU unlocks the network and resumes the task.
      `  kill -0 ${process.pid} 2>/dev/null || exit 1`,
      "  sleep 0.02",
      "done",
      `[ "$(cat '${releaseMark}')" = ok ]`,
      "",
    ].join("\n"),
  );
  await chmod(script, 0o755);
  const exists = (p: string) =>
    access(p).then(
      () => true,
      () => false,
    );
  return {
    args: ["--action-script", script],
    async frozen(dump, signal) {
      let settled = false;
      dump.then(
        () => {
          settled = true;
        },
        () => {
          settled = true;
        },
      );
      for (;;) {
        if (await exists(frozenMark)) return true;
        if (settled) return false;
        signal?.throwIfAborted();
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async release(ok) {
      await writeFile(releaseMark, ok ? "ok" : "fail");
    },
  };
}
