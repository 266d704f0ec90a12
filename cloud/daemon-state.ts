import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { snapctlHome } from "../common/home.js";
import type { LocalCloudEndpoints } from "./local-cloud.js";

export interface DaemonState {
  pid: number;
  startedAt: string;
  endpoints: LocalCloudEndpoints;
  logFile: string;
}

// Where `snapctl local up` records the running local cloud.
export function daemonStatePath(home = snapctlHome()): string {
  return join(home, "local-cloud.json");
}

export function daemonDirectory(home = snapctlHome()): string {
  return join(home, "local-cloud");
}

// The state of the running local cloud, or undefined when none runs (a state file whose
// process is gone is stale and ignored).
export async function readDaemonState(home = snapctlHome()): Promise<DaemonState | undefined> {
  let state: DaemonState;
  try {
    state = JSON.parse(await readFile(daemonStatePath(home), "utf8")) as DaemonState;
  } catch {
    return undefined;
  }
  return isAlive(state.pid) ? state : undefined;
}

export async function writeDaemonState(state: DaemonState, home = snapctlHome()): Promise<void> {
  const path = daemonStatePath(home);
  await writeFile(`${path}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
}

export async function removeDaemonState(home = snapctlHome()): Promise<void> {
  await rm(daemonStatePath(home), { force: true });
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
