import type { Arch, Market } from "../registry/task-record.js";

// What a provider needs to launch an instance for a task.
export interface LaunchRequest {
  task: { id: string; name?: string };
  // 1 for the first instance of the task, then one more per launch (restores, re-runs).
  attempt: number;
  // A zone to stay away from if possible (the one just reclaimed); used as a last resort.
  zonePreference: { avoid?: string };
  market: Market;
  // Only instance types of this architecture are used (a restore needs the snapshot's).
  arch: Arch;
  // The agent's argv, run by the instance at boot: see agentCommand().
  userDataCommand: string[];
  // Extra environment for the agent (exported in the user data script).
  userDataEnv?: Record<string, string>;
  signal?: AbortSignal;
}

export interface LaunchedInstance {
  instanceId: string;
  zone: string;
  instanceType: string;
  market: Market;
  arch: Arch;
}

export type InstanceState = "pending" | "running" | "stopping" | "stopped" | "shutting-down" | "terminated";

export interface InstanceDescription extends LaunchedInstance {
  state: InstanceState;
  // The task and attempt the instance was launched for, from its tags.
  taskId?: string;
  attempt?: number;
}

export interface ProviderCallOptions {
  signal?: AbortSignal;
}

// Launches and terminates the instances tasks run on. Errors are ProviderErrors; those
// marked `retryable` may succeed later (capacity, throttling).
export interface Provider {
  readonly kind: "ec2" | "local";
  launch(request: LaunchRequest): Promise<LaunchedInstance>;
  // Idempotent: terminating an instance that is already gone succeeds.
  terminate(instanceId: string, options?: ProviderCallOptions): Promise<void>;
  // undefined when the instance does not exist (any more).
  describe?(instanceId: string, options?: ProviderCallOptions): Promise<InstanceDescription | undefined>;
  // Live (not terminated) instances launched for a task: how a restarted controller finds
  // an instance launched before it crashed.
  findTaskInstances?(taskId: string, options?: ProviderCallOptions): Promise<InstanceDescription[]>;
}
