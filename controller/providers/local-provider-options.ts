// The local provider (local-provider.ts): an "instance" is a new agent process on this
// machine, with its own cache directory under `baseDir`, and its own IMDS emulator
// (instance id, zone). When an interruption's deadline passes, the old instance is killed
// (SIGKILL) and its cache wiped, as the cloud would.
export interface LocalProviderOptions {
  // Root of the instances' directories: <baseDir>/<instance-id>/{cache,mnt}.
  baseDir: string;
  // Zones handed out in turn, skipping the one to avoid. Default ["local-1a", "local-1b"].
  zones?: string[];
  // Reported by each instance's IMDS emulator. Default "m5.large".
  instanceType?: string;
  // How to start the agent: the entry script (see common/entry.ts nodeEntry()).
  agentEntry?: string;
  // Environment for every agent process (S3 endpoint, credentials, Redis URL).
  env?: Record<string, string>;
}
