import { localCloudEnv, readDaemonState } from "../cloud/index.js";

// While a local cloud runs (`snapctl local up`), snapctl commands use its endpoints for
// whatever the environment does not set already; SNAPCTL_LOCAL_CLOUD=0 turns this off.
// Returns which variables were filled in.
export async function applyLocalCloudEnv(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  if (env.SNAPCTL_LOCAL_CLOUD === "0") return [];
  const state = await readDaemonState();
  if (!state) return [];
  const filled: string[] = [];
  for (const [key, value] of Object.entries(localCloudEnv(state.endpoints))) {
    if (env[key] === undefined) {
      env[key] = value;
      filled.push(key);
    }
  }
  return filled;
}
