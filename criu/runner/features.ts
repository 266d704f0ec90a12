import { criuLogTail, runCriu } from "./run-criu.js";

export interface CriuFeatures {
  // "4.1.1"
  version: string;
  // `criu check` says "Looks good."
  checkOk: boolean;
  // What `criu check` printed when it is not good.
  checkMessage: string;
  // Kernel soft-dirty tracking: pre-dumps and --track-mem work.
  memDirtyTrack: boolean;
  // userfaultfd: lazy restores (--lazy-pages) work.
  uffd: boolean;
  // Non-cooperative userfaultfd events (fork, remap) during lazy restores.
  uffdNoncoop: boolean;
}

// Asks CRIU on this kernel which features work. Results are facts from `criu check`,
// never guesses; memoized per process because the kernel does not change under us.
let cached: Promise<CriuFeatures> | undefined;

export function detectCriuFeatures(
  options: { signal?: AbortSignal; fresh?: boolean } = {},
): Promise<CriuFeatures> {
  if (!cached || options.fresh) {
    cached = probe(options.signal);
    cached.catch(() => {
      cached = undefined;
    });
  }
  return cached;
}

async function probe(signal?: AbortSignal): Promise<CriuFeatures> {
  const version = await runCriu(["--version"], { signal });
  const check = await runCriu(["check"], { signal, reject: false });
  const feature = async (name: string) =>
    (await runCriu(["check", "--feature", name], { signal, reject: false })).exitCode === 0;
  const [memDirtyTrack, uffd, uffdNoncoop] = await Promise.all([
    feature("mem_dirty_track"),
    feature("uffd"),
    feature("uffd-noncoop"),
  ]);
  const text = `${check.stdout}\n${check.stderr}`;
  return {
    version: /Version:\s*(\S+)/.exec(version.stdout)?.[1] ?? version.stdout.trim(),
    checkOk: check.exitCode === 0 && text.includes("Looks good"),
    checkMessage: criuLogTail(text, { errors: /$^/, count: Number.POSITIVE_INFINITY }),
    memDirtyTrack,
    uffd,
    uffdNoncoop,
  };
}

// Why checkpoints are not `criu pre-dump --track-mem` rounds followed by a dump of only
// the pages dirtied since: the engine's checkpoints are full dumps whose unchanged chunks
// are deduplicated ("incremental-chunks"), and it logs this reason with each one.
export function predumpStatus(features: CriuFeatures): string {
  return features.memDirtyTrack
    ? "not used: the engine has no pre-dump path yet (incremental chunks instead)"
    : "unavailable: the kernel has no soft-dirty tracking (criu check --feature mem_dirty_track fails)";
}
