import { readdir, readFile } from "node:fs/promises";

// Guards the whole run: after every test file has finished, no FUSE mount and no server
// or CRIU process that a test started may remain. A leak fails the run, naming it.
async function fuseMounts(): Promise<string[]> {
  const mounts = await readFile("/proc/self/mounts", "utf8");
  return mounts
    .split("\n")
    .filter((l) => /\sfuse(\.[\w-]+)?\s/.test(l))
    .map((l) => l.split(" ")[1]!);
}

// Processes of this run: they inherit the run's marker from the environment (so tests of
// another run on the same machine are not mistaken for leaks).
const marker = `SNAP_TEST_RUN=${process.pid}-${Date.now()}`;

async function ourProcesses(): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const environ = await readFile(`/proc/${entry}/environ`, "utf8");
      if (!environ.split("\0").includes(marker)) continue;
      const cmd = (await readFile(`/proc/${entry}/cmdline`, "utf8")).replaceAll("\0", " ").trim();
      // vitest's own workers carry the marker too and end on their own.
      if (!cmd.includes("vitest")) found.set(Number(entry), cmd);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

export default async function setup(): Promise<() => Promise<void>> {
  const [key, value] = marker.split("=") as [string, string];
  process.env[key] = value;
  const mountsBefore = new Set(await fuseMounts());
  return async () => {
    // Children killed at the end of the last file may take a moment to go.
    let leakedMounts: string[] = [];
    let leakedProcesses: string[] = [];
    for (let i = 0; i < 50; i++) {
      // Mounts cannot be tied to a run: on a developer machine another run's mount may be
      // live, so only CI (one run per machine) fails on new ones; elsewhere they are listed.
      const newMounts = (await fuseMounts()).filter((m) => !mountsBefore.has(m));
      leakedMounts = process.env.CI ? newMounts : [];
      if (!process.env.CI && newMounts.length && i === 49) {
        console.warn(
          `FUSE mounts that appeared during this run (maybe another run's): ${newMounts.join(", ")}`,
        );
      }
      leakedProcesses = [...(await ourProcesses())].map(([pid, cmd]) => `${pid}: ${cmd}`);
      if (leakedMounts.length === 0 && leakedProcesses.length === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    // vitest only prints errors thrown here; the exit code must say it too.
    process.exitCode = 1;
    throw new Error(
      `Tests left things behind:\n${[...leakedMounts.map((m) => `mount ${m}`), ...leakedProcesses].join("\n")}`,
    );
  };
}
