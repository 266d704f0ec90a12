import { spawn } from "node:child_process";
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { nodeEntry } from "../common/entry.js";
import { snapctlHome } from "../common/home.js";
import { type DaemonState, isAlive, readDaemonState, removeDaemonState } from "./daemon-state.js";
import { CloudError } from "./errors.js";

// Starts the local cloud as a detached background process, or returns the running one.
export async function startLocalCloudDaemon(
  options: { home?: string; timeoutMs?: number } = {},
): Promise<{ state: DaemonState; started: boolean }> {
  const home = options.home ?? snapctlHome();
  const running = await readDaemonState(home);
  if (running) return { state: running, started: false };
  await mkdir(home, { recursive: true });
  const logFile = join(home, "local-cloud.log");
  const log = await open(logFile, "a");
  const { command, args } = nodeEntry("cloud/daemon");
  const child = spawn(command, [...args, home, logFile], {
    detached: true,
    stdio: ["ignore", "ignore", log.fd],
    env: process.env,
  });
  child.unref();
  await log.close();
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    const state = await readDaemonState(home);
    if (state && state.pid === child.pid) return { state, started: true };
    if (child.exitCode !== null || !isAlive(child.pid!)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (child.pid && isAlive(child.pid)) process.kill(child.pid, "SIGTERM");
  throw new CloudError("CLOUD_START_FAILED", `The local cloud did not start; its log is ${logFile}`);
}

// Stops the running local cloud (SIGTERM, then SIGKILL after `graceMs`). Returns the
// stopped state, or undefined when none was running.
export async function stopLocalCloudDaemon(
  options: { home?: string; graceMs?: number } = {},
): Promise<DaemonState | undefined> {
  const home = options.home ?? snapctlHome();
  const state = await readDaemonState(home);
  if (!state) {
    await removeDaemonState(home);
    return undefined;
  }
  process.kill(state.pid, "SIGTERM");
  const deadline = Date.now() + (options.graceMs ?? 15_000);
  while (isAlive(state.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  // The daemon leads its own process group (detached): SIGKILL the group so its
  // s3rver and redis-server children go too.
  if (isAlive(state.pid)) process.kill(-state.pid, "SIGKILL");
  await removeDaemonState(home);
  return state;
}
